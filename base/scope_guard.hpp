#pragma once
/// \file
/// `ScopeGuard`: undo partial work on an early return, unless dismissed.

#include <type_traits>
#include <utility>

namespace vfe {

/// Runs `fn` when the guard goes out of scope, unless `dismiss()` was called. This is how
/// all-or-nothing setup is written: arm a guard after each step that needs undoing, dismiss them
/// all once the whole setup succeeded. `fn` must not throw (destructors never throw here).
template <class Fn>
class [[nodiscard]] ScopeGuard {
 public:
  static_assert(std::is_nothrow_invocable_v<Fn&>, "a ScopeGuard's action must be noexcept");

  explicit ScopeGuard(Fn fn) noexcept(std::is_nothrow_move_constructible_v<Fn>)
      : fn_(std::move(fn)) {}
  ~ScopeGuard() {
    if (armed_) {
      fn_();
    }
  }
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  ScopeGuard(ScopeGuard&&) = delete;
  ScopeGuard& operator=(ScopeGuard&&) = delete;

  /// The work succeeded: do not run the action.
  void dismiss() noexcept { armed_ = false; }

 private:
  Fn fn_;
  bool armed_ = true;
};

}  // namespace vfe
