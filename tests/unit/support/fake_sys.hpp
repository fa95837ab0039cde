#pragma once
/// \file
/// `FakeSys`: a scripted stand-in for the kernel seam (`vfe::vfio::Sys`) in host unit tests.

#include <sys/resource.h>
#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "vfio/sys.hpp"

namespace vfe::test {

/// Sets errno and returns -1: what a failing system call does. For ioctl and pread handlers.
inline int fail(int err) noexcept {
  errno = err;
  return -1;
}

/// A kernel seam a test scripts call by call. Every descriptor it hands out (from `open`,
/// `eventfd` and `new_fd`) is a real eventfd, so the library can close it with close(2); the fake
/// remembers which path each stands for. Memory from `mmap` is real anonymous memory. Anything
/// not scripted fails the way the kernel would (an unknown ioctl: ENOTTY), so a test can't pass
/// on a call it did not expect. Not thread-safe: one test thread.
class FakeSys final : public vfio::Sys {
 public:
  using PtrHandler = std::function<int(int fd, void* arg)>;
  using ValHandler = std::function<int(int fd, unsigned long arg)>;
  using PreadHandler = std::function<ssize_t(void* buf, std::size_t count, off_t offset)>;

  /// One recorded ioctl: the descriptor, the path it was opened as, the request number.
  struct Ioctl {
    int fd;
    std::string path;
    unsigned long request;
  };
  /// One recorded pread (write false) or pwrite (write true).
  struct Access {
    bool write;
    std::string path;
    off_t offset;
    std::size_t count;
  };
  /// One live mapping made by `mmap`.
  struct Mapping {
    void* addr;
    std::size_t length;
    int prot;
    int fd;
    off_t offset;
  };

  FakeSys() = default;
  FakeSys(const FakeSys&) = delete;
  FakeSys& operator=(const FakeSys&) = delete;
  /// Frees mappings the library left behind (a test checks `mappings()` to catch that).
  ~FakeSys() override;

  // --- scripting ---------------------------------------------------------------------------
  /// `open(path)` fails with `err` from now on (0: succeeds again).
  void fail_open(const std::string& path, int err) {
    if (err == 0) {
      open_errors_.erase(path);
    } else {
      open_errors_[path] = err;
    }
  }
  /// Handles every `ioctl_ptr(fd, request, arg)`; replaces an earlier handler for `request`.
  void on_ptr(unsigned long request, PtrHandler h) { ptr_handlers_[request] = std::move(h); }
  /// Handles every `ioctl_val(fd, request, arg)`.
  void on_val(unsigned long request, ValHandler h) { val_handlers_[request] = std::move(h); }
  /// Answers every pread of the file opened as `path` (instead of its backing bytes).
  void on_pread(const std::string& path, PreadHandler h) { pread_handlers_[path] = std::move(h); }
  /// Backs [base, base + size) of the file opened as `path` with zeroed bytes for pread and
  /// pwrite, and returns them (the reference stays valid for the fake's lifetime). Accesses that
  /// no backing covers fail with EINVAL, as vfio-pci does outside a region.
  std::vector<std::uint8_t>& back(const std::string& path, off_t base, std::size_t size);
  /// A fresh placeholder descriptor standing for `path`, for handlers that return one
  /// (VFIO_GROUP_GET_DEVICE_FD). The caller owns it.
  int new_fd(const std::string& path);

  int mmap_errno = 0;          ///< when non-zero, mmap fails with it...
  std::size_t mmap_ok = 0;     ///< ...after this many successful calls
  int mlock_errno = 0;         ///< when non-zero, mlock fails with it
  int eventfd_errno = 0;       ///< when non-zero, eventfd fails with it...
  std::size_t eventfd_ok = 0;  ///< ...after this many successful calls
  int getrlimit_errno = 0;     ///< when non-zero, getrlimit fails with it
  rlimit rlimit_value{RLIM_INFINITY, RLIM_INFINITY};  ///< what getrlimit reports
  bool cap_ipc_lock = false;   ///< what can_lock_beyond_limit reports

  // --- what happened -----------------------------------------------------------------------
  /// Every path passed to `open`, in order, failed ones included.
  [[nodiscard]] const std::vector<std::string>& opened() const noexcept { return opened_; }
  [[nodiscard]] std::size_t open_count(const std::string& path) const;
  /// The path a descriptor from this fake stands for ("" if it is not one of ours).
  [[nodiscard]] std::string path_of(int fd) const;
  [[nodiscard]] const std::vector<Ioctl>& ioctls() const noexcept { return ioctls_; }
  /// How many ioctls with this request number were made.
  [[nodiscard]] std::size_t count(unsigned long request) const;
  [[nodiscard]] const std::vector<Access>& accesses() const noexcept { return accesses_; }
  [[nodiscard]] const std::vector<Mapping>& mappings() const noexcept { return mappings_; }
  /// Every munmap call, (address, length), including ones that matched no mapping.
  [[nodiscard]] const std::vector<std::pair<void*, std::size_t>>& munmaps() const noexcept {
    return munmaps_;
  }
  [[nodiscard]] const std::vector<std::pair<const void*, std::size_t>>& mlocks() const noexcept {
    return mlocks_;
  }
  [[nodiscard]] const std::vector<std::pair<const void*, std::size_t>>& munlocks() const noexcept {
    return munlocks_;
  }
  /// True when no open, ioctl, pread/pwrite or mmap was made at all.
  [[nodiscard]] bool untouched() const noexcept;

  // --- vfio::Sys ---------------------------------------------------------------------------
  int open(const char* path, int flags) noexcept override;
  int ioctl_ptr(int fd, unsigned long request, void* arg) noexcept override;
  int ioctl_val(int fd, unsigned long request, unsigned long arg) noexcept override;
  ssize_t pread(int fd, void* buf, std::size_t count, off_t offset) noexcept override;
  ssize_t pwrite(int fd, const void* buf, std::size_t count, off_t offset) noexcept override;
  void* mmap(void* addr, std::size_t length, int prot, int flags, int fd,
             off_t offset) noexcept override;
  int munmap(void* addr, std::size_t length) noexcept override;
  int mlock(const void* addr, std::size_t length) noexcept override;
  int munlock(const void* addr, std::size_t length) noexcept override;
  int eventfd(unsigned initval, int flags) noexcept override;
  int getrlimit(int resource, struct rlimit* out) noexcept override;
  bool can_lock_beyond_limit() noexcept override { return cap_ipc_lock; }

 private:
  // The backing bytes that hold [offset, offset + count) of `path`, or nullptr.
  std::uint8_t* backing(const std::string& path, off_t offset, std::size_t count);

  std::map<std::string, int> open_errors_;
  std::map<unsigned long, PtrHandler> ptr_handlers_;
  std::map<unsigned long, ValHandler> val_handlers_;
  std::map<std::string, PreadHandler> pread_handlers_;
  // path -> base offset -> backing bytes
  std::map<std::string, std::map<off_t, std::vector<std::uint8_t>>> files_;
  std::map<int, std::string> fd_paths_;
  std::size_t mmaps_made_ = 0;
  std::size_t eventfds_made_ = 0;

  std::vector<std::string> opened_;
  std::vector<Ioctl> ioctls_;
  std::vector<Access> accesses_;
  std::vector<Mapping> mappings_;
  std::vector<std::pair<void*, std::size_t>> munmaps_;
  std::vector<std::pair<const void*, std::size_t>> mlocks_;
  std::vector<std::pair<const void*, std::size_t>> munlocks_;
};

}  // namespace vfe::test
