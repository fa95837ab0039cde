#include "bench/vfio_bench/histogram.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>
#include <algorithm>

namespace vfe::bench {
namespace {

TEST(Histogram, BucketsTileTheWholeRangeWithoutGapsOrOverlap) {
  for (std::size_t i = 0; i + 1 < Histogram::kBuckets; ++i) {
    ASSERT_LE(Histogram::bucket_low(i), Histogram::bucket_high(i)) << i;
    ASSERT_EQ(Histogram::bucket_high(i) + 1, Histogram::bucket_low(i + 1)) << i;
  }
  EXPECT_EQ(Histogram::bucket_low(0), 0U);
  EXPECT_EQ(Histogram::bucket_high(Histogram::kBuckets - 1), ~0ULL);
  for (std::uint64_t v : {0ULL, 1ULL, 31ULL, 32ULL, 63ULL, 64ULL, 1000ULL, 123456789ULL, ~0ULL}) {
    const std::size_t b = Histogram::bucket_of(v);
    EXPECT_LE(Histogram::bucket_low(b), v);
    EXPECT_GE(Histogram::bucket_high(b), v);
  }
}

TEST(Histogram, SmallValuesAreExactAndLargeOnesWithinThreePercent) {
  for (std::uint64_t v = 0; v < 64; ++v) {
    EXPECT_EQ(Histogram::bucket_low(Histogram::bucket_of(v)), v);
    EXPECT_EQ(Histogram::bucket_high(Histogram::bucket_of(v)), v);
  }
  for (std::uint64_t v = 64; v < (1ULL << 40); v = v * 3 + 7) {
    const std::size_t b = Histogram::bucket_of(v);
    const double width = static_cast<double>(Histogram::bucket_high(b) - Histogram::bucket_low(b) + 1);
    EXPECT_LE(width / static_cast<double>(v), 1.0 / 32 + 1e-12) << v;
  }
}

TEST(Histogram, PercentilesMeanMinMaxMatchASortedCopy) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(9.0, 1.0);
  Histogram h;
  std::vector<std::uint64_t> all;
  for (int i = 0; i < 100'000; ++i) {
    const auto v = static_cast<std::uint64_t>(dist(rng));
    h.record(v);
    all.push_back(v);
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(h.count(), all.size());
  EXPECT_EQ(h.min(), all.front());
  EXPECT_EQ(h.max(), all.back());
  double sum = 0;
  for (auto v : all) {
    sum += static_cast<double>(v);
  }
  EXPECT_DOUBLE_EQ(h.mean(), sum / static_cast<double>(all.size()));
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9}) {
    const auto exact = all[static_cast<std::size_t>(std::ceil(p / 100 * static_cast<double>(all.size()))) - 1];
    const auto got = h.percentile(p);
    EXPECT_GE(got, exact) << "p" << p;
    EXPECT_LE(static_cast<double>(got), static_cast<double>(exact) * (1 + 1.0 / 32) + 1) << "p" << p;
  }
  EXPECT_EQ(h.percentile(100), all.back());
}

TEST(Histogram, PercentileRanksDoNotRoundUpPastTheSampleAsked) {
  Histogram h;
  for (int i = 0; i < 999; ++i) {
    h.record(10);
  }
  h.record(100'000);
  EXPECT_EQ(h.percentile(99.9), 10U) << "99.9 % of 1000 samples is the 999th";
  EXPECT_EQ(h.percentile(100), 100'000U);
  EXPECT_EQ(h.percentile(50), 10U);
}

TEST(Histogram, EmptyAndMergedHistograms) {
  Histogram a, b;
  EXPECT_EQ(a.count(), 0U);
  EXPECT_EQ(a.min(), 0U);
  EXPECT_EQ(a.percentile(50), 0U);
  EXPECT_TRUE(a.nonempty_buckets().empty());
  a.record(10);
  a.record(1000);
  b.record(5);
  b.record(1'000'000);
  a.merge(b);
  EXPECT_EQ(a.count(), 4U);
  EXPECT_EQ(a.min(), 5U);
  EXPECT_EQ(a.max(), 1'000'000U);
  std::uint64_t in_buckets = 0;
  for (const auto& bucket : a.nonempty_buckets()) {
    in_buckets += bucket.count;
  }
  EXPECT_EQ(in_buckets, 4U);
}

}  // namespace
}  // namespace vfe::bench
