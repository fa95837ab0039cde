#pragma once
/// \file
/// `Histogram`: a latency histogram of fixed size, whatever the run length.

#include <array>
#include <cstdint>
#include <vector>

namespace vfe::bench {

/// Log-linear buckets (as in HdrHistogram): values below 2 x kSub are counted exactly; above, each
/// power-of-two range [2^k, 2^(k+1)) is split into kSub equal buckets, so a percentile is off by at
/// most 1/kSub (about 3 %) of its value. 1,920 counters (15 KiB) cover the whole 64-bit range.
/// One writer at a time; combine per-thread histograms with `merge`.
class Histogram {
 public:
  static constexpr unsigned kSubBits = 5;
  static constexpr std::uint64_t kSub = 1ULL << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  void record(std::uint64_t value) noexcept {
    ++counts_[bucket_of(value)];
    ++count_;
    sum_ += value;
    min_ = value < min_ ? value : min_;
    max_ = value > max_ ? value : max_;
  }
  void merge(const Histogram& other) noexcept;

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
  [[nodiscard]] double mean() const noexcept;
  /// The smallest value v such that at least `p` percent of the samples are <= v, as the upper
  /// edge of v's bucket (never above max()); 0 when empty. p in [0, 100].
  [[nodiscard]] std::uint64_t percentile(double p) const noexcept;

  struct Bucket {
    std::uint64_t low;   ///< smallest value counted here
    std::uint64_t high;  ///< largest value counted here
    std::uint64_t count;
  };
  /// The buckets that counted something, in value order (their counts sum to count()).
  [[nodiscard]] std::vector<Bucket> nonempty_buckets() const;

  [[nodiscard]] static constexpr std::size_t bucket_of(std::uint64_t v) noexcept {
    if (v < kSub) {
      return static_cast<std::size_t>(v);
    }
    const unsigned msb = 63U - static_cast<unsigned>(__builtin_clzll(v));
    const unsigned shift = msb - kSubBits;
    return static_cast<std::size_t>((shift + 1) * kSub + ((v >> shift) - kSub));
  }
  [[nodiscard]] static constexpr std::uint64_t bucket_low(std::size_t i) noexcept {
    if (i < kSub) {
      return i;
    }
    const std::size_t shift = i / kSub - 1;
    return (kSub + i % kSub) << shift;
  }
  [[nodiscard]] static constexpr std::uint64_t bucket_high(std::size_t i) noexcept {
    const std::size_t shift = i < kSub ? 0 : i / kSub - 1;
    return bucket_low(i) + ((1ULL << shift) - 1);
  }

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = ~0ULL;
  std::uint64_t max_ = 0;
};

}  // namespace vfe::bench
