#pragma once
/// \file
/// `SequenceTracker`: tells in-order, late and duplicated arrivals of numbered frames apart.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vfe::e1000e {

/// Follows sequence numbers 0, 1, 2, ... as they arrive. A number past the next expected one
/// leaves the skipped numbers as gaps; a later arrival is late when it fills a gap and a
/// duplicate otherwise. Memory is bounded: at most `max_gaps` gaps are remembered (the rest are
/// counted in `untracked`, and their late arrival would read as a duplicate). Not thread-safe;
/// `accept` is noexcept and does not allocate.
class SequenceTracker {
 public:
  enum class Arrival {
    in_order,   ///< the next expected number, or one past it (the numbers between become gaps)
    late,       ///< a number that was skipped earlier: the frame was reordered
    duplicate,  ///< a number seen before
  };

  explicit SequenceTracker(std::size_t max_gaps = 4096);

  [[nodiscard]] Arrival accept(std::uint64_t seq) noexcept;

  /// The next number expected in order (every number below it arrived or is a gap).
  [[nodiscard]] std::uint64_t expected() const noexcept { return expected_; }
  /// Skipped numbers still missing.
  [[nodiscard]] std::size_t gaps() const noexcept { return gaps_.size(); }
  /// Skipped numbers the gap list had no room for.
  [[nodiscard]] std::uint64_t untracked() const noexcept { return untracked_; }

 private:
  std::vector<std::uint64_t> gaps_;  // capacity reserved up front
  std::size_t max_gaps_;
  std::uint64_t expected_ = 0;
  std::uint64_t untracked_ = 0;
};

}  // namespace vfe::e1000e
