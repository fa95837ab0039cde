#include "bench/vfio_bench/histogram.hpp"

#include <cmath>

namespace vfe::bench {

void Histogram::merge(const Histogram& other) noexcept {
  for (std::size_t i = 0; i < kBuckets; ++i) {
    counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = other.min_ < min_ ? other.min_ : min_;
  max_ = other.max_ > max_ ? other.max_ : max_;
}

double Histogram::mean() const noexcept {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
}

std::uint64_t Histogram::percentile(double p) const noexcept {
  if (count_ == 0) {
    return 0;
  }
  // The rank of the sample asked for, 1-based: p = 50 of 10 samples is the 5th.
  // Multiply first, and forgive rounding: 99.9 % of 1000 samples is rank 999, not 1000.
  const double exact = p * static_cast<double>(count_) / 100.0;
  std::uint64_t rank = static_cast<std::uint64_t>(std::ceil(exact - 1e-9));
  rank = rank == 0 ? 1 : (rank > count_ ? count_ : rank);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const std::uint64_t high = bucket_high(i);
      return high < max_ ? high : max_;
    }
  }
  return max_;
}

std::vector<Histogram::Bucket> Histogram::nonempty_buckets() const {
  std::vector<Bucket> out;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    if (counts_[i] != 0) {
      out.push_back({bucket_low(i), bucket_high(i), counts_[i]});
    }
  }
  return out;
}

}  // namespace vfe::bench
