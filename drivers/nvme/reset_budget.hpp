#pragma once
/// \file
/// `ResetBudget`: how many controller resets a time window allows before recovery gives up.

#include <chrono>
#include <cstdint>
#include <deque>

namespace vfe::nvme {

/// At most `max` resets within any `window`: `spend(now)` is true and counts one while fewer
/// than `max` began within the window before `now`, false (and counts nothing) otherwise. A
/// controller that keeps faulting then fails for good instead of resetting forever. Not
/// thread-safe (the controller's watchdog owns it).
class ResetBudget {
 public:
  using Clock = std::chrono::steady_clock;

  ResetBudget() = default;
  ResetBudget(std::uint32_t max, std::chrono::milliseconds window) : max_(max), window_(window) {}

  [[nodiscard]] bool spend(Clock::time_point now) {
    while (!recent_.empty() && now - recent_.front() >= window_) {
      recent_.pop_front();
    }
    if (recent_.size() >= max_) {
      return false;
    }
    recent_.push_back(now);
    return true;
  }

 private:
  std::uint32_t max_ = 0;
  std::chrono::milliseconds window_{0};
  std::deque<Clock::time_point> recent_;  // when the resets within the window began, oldest first
};

}  // namespace vfe::nvme
