#include "drivers/e1000e/sequence_tracker.hpp"

#include <algorithm>

namespace vfe::e1000e {

SequenceTracker::SequenceTracker(std::size_t max_gaps) : max_gaps_(max_gaps) { gaps_.reserve(max_gaps); }

SequenceTracker::Arrival SequenceTracker::accept(std::uint64_t seq) noexcept {
  if (seq >= expected_) {
    const std::uint64_t skipped = seq - expected_;
    const std::uint64_t room = max_gaps_ - gaps_.size();
    for (std::uint64_t s = expected_; s < expected_ + std::min(skipped, room); ++s) {
      gaps_.push_back(s);
    }
    untracked_ += skipped > room ? skipped - room : 0;
    expected_ = seq + 1;
    return Arrival::in_order;
  }
  const auto it = std::find(gaps_.begin(), gaps_.end(), seq);
  if (it == gaps_.end()) {
    return Arrival::duplicate;
  }
  *it = gaps_.back();  // order does not matter
  gaps_.pop_back();
  return Arrival::late;
}

}  // namespace vfe::e1000e
