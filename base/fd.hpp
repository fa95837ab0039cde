#pragma once
/// \file
/// `Fd`: a move-only owner of a file descriptor.

#include <utility>

namespace vfe {

/// Owns one file descriptor and closes it on destruction. Move-only; a moved-from Fd is empty
/// (-1). Not thread-safe as an object: one owner at a time, as with any value type.
class Fd {
 public:
  Fd() noexcept = default;
  /// Takes ownership of `fd` (which may be -1 for "none").
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() { reset(); }

  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset(other.release());
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  /// The descriptor, still owned by this object; -1 when empty.
  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  /// Gives up ownership without closing; the caller now owns the returned descriptor.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

  /// Closes the owned descriptor (if any) and takes ownership of `fd`. A failing close is logged,
  /// never retried: on Linux the descriptor is gone even when close() reports EINTR.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

}  // namespace vfe
