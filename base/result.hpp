#pragma once
/// \file
/// `Result<T>`: a value or an `Error`, in the style of C++23 std::expected (which g++ 12 lacks in
/// C++20 mode). Setup paths return it; no exception crosses the library boundary.

#include <type_traits>
#include <utility>
#include <variant>

#include "base/error.hpp"

namespace vfe {

namespace detail {
/// Prints "Result::value() on an Error: <message>" to stderr and aborts. Out of line, so that
/// the check costs its callers a compare and a branch that is never taken.
[[noreturn]] void die_value_of_error(const Error& error) noexcept;
/// Prints "Result::error() on a value" to stderr and aborts.
[[noreturn]] void die_error_of_value() noexcept;
}  // namespace detail

/// Holds either a `T` or an `Error`. Implicitly constructible from either, so a function can
/// `return value;` or `return Error::invalid(...);`. Reading the wrong alternative is a bug, and
/// defined in every build: `value()`, `*` and `->` on an Error print that error to stderr and
/// abort the process, as does `error()` on a value (std::expected leaves both undefined). Check
/// first (`if (!r)`, VFE_TRY, VFE_TRY_ASSIGN) wherever an Error is possible.
template <class T>
class [[nodiscard]] Result {
 public:
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Error>, "Result<Error> is ambiguous");

  Result(const T& value) : v_(std::in_place_index<0>, value) {}  // NOLINT: implicit by design
  Result(T&& value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  template <class... Args>
  explicit Result(std::in_place_t, Args&&... args)
      : v_(std::in_place_index<0>, std::forward<Args>(args)...) {}

  [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  [[nodiscard]] T& value() & { return check_value(), *std::get_if<0>(&v_); }
  [[nodiscard]] const T& value() const& { return check_value(), *std::get_if<0>(&v_); }
  [[nodiscard]] T&& value() && { return check_value(), std::move(*std::get_if<0>(&v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  [[nodiscard]] const Error& error() const& { return check_error(), *std::get_if<1>(&v_); }
  [[nodiscard]] Error&& error() && { return check_error(), std::move(*std::get_if<1>(&v_)); }

 private:
  void check_value() const noexcept {
    if (!has_value()) [[unlikely]] {
      detail::die_value_of_error(*std::get_if<1>(&v_));
    }
  }
  void check_error() const noexcept {
    if (has_value()) [[unlikely]] {
      detail::die_error_of_value();
    }
  }

  std::variant<T, Error> v_;
};

/// A result with no value: success, or an `Error`. `value()` on an Error and `error()` on a
/// success abort with a message, as for `Result<T>`.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT: implicit by design

  [[nodiscard]] bool has_value() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const noexcept {
    if (failed_) [[unlikely]] {
      detail::die_value_of_error(error_);
    }
  }

  [[nodiscard]] const Error& error() const& { return check_error(), error_; }
  [[nodiscard]] Error&& error() && { return check_error(), std::move(error_); }

 private:
  void check_error() const noexcept {
    if (!failed_) [[unlikely]] {
      detail::die_error_of_value();
    }
  }

  Error error_;
  bool failed_ = false;
};

/// Success of a `Result<void>`: `return ok();`.
inline Result<void> ok() { return {}; }

}  // namespace vfe

#define VFE_CONCAT_INNER_(a, b) a##b
#define VFE_CONCAT_(a, b) VFE_CONCAT_INNER_(a, b)

/// Evaluates `expr` (a Result); on error, returns that error from the enclosing function.
#define VFE_TRY(expr)                                      \
  do {                                                     \
    if (auto vfe_try_r_ = (expr); !vfe_try_r_) {           \
      return std::move(vfe_try_r_).error();                \
    }                                                      \
  } while (0)

/// `VFE_TRY_ASSIGN(auto fd, open_fd(...));` declares or assigns the value of a Result, or returns
/// its error from the enclosing function.
#define VFE_TRY_ASSIGN(lhs, expr) VFE_TRY_ASSIGN_IMPL_(VFE_CONCAT_(vfe_try_r_, __LINE__), lhs, expr)
#define VFE_TRY_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                         \
  if (!tmp) {                                \
    return std::move(tmp).error();           \
  }                                          \
  lhs = std::move(tmp).value()
