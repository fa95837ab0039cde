#include "bench/vfio_bench/access_pattern.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "tests/unit/support/assert_ok.hpp"

namespace vfe::bench {
namespace {

std::vector<std::uint64_t> picks(const Distribution& d, std::uint64_t slots, std::uint64_t seed, std::size_t n) {
  SlotPicker p(d, slots, seed);
  std::vector<std::uint64_t> out(n);
  for (auto& v : out) {
    v = p.next();
  }
  return out;
}

TEST(Rng, SameSeedSameSequenceOtherSeedAnother) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
  }
  EXPECT_TRUE(differs);
  // SplitMix64's published first output for seed 0 (Vigna's reference implementation).
  EXPECT_EQ(Rng(0).next(), 0xe220a8397b1dcdafULL);
}

TEST(SlotPicker, SameSeedGivesTheSameLbaSequenceInEveryDistribution) {
  for (const char* text : {"random", "zipf:1.2", "zipf:0.8", "zoned:90/10"}) {
    VFE_ASSERT_OK_AND_ASSIGN(const Distribution d, parse_distribution(text));
    const auto first = picks(d, 100000, 7, 5000);
    EXPECT_EQ(first, picks(d, 100000, 7, 5000)) << text;
    EXPECT_NE(first, picks(d, 100000, 8, 5000)) << text;
    for (const std::uint64_t v : first) {
      ASSERT_LT(v, 100000U) << text;
    }
  }
}

// Chi-square of n picks over `slots` against the zipf law k^-theta / sum_j j^-theta. With fixed
// seeds the result is deterministic; the bound is the chi-square distribution's mean plus six of
// its standard deviations, so a right sampler is far inside it and a wrong law (even a small
// bias at the head, which dominates the counts) far outside.
double zipf_chi_square(double theta, std::uint64_t slots, std::size_t n) {
  Distribution d;
  d.kind = Distribution::Kind::zipf;
  d.theta = theta;
  std::vector<double> count(slots);
  for (const std::uint64_t v : picks(d, slots, 11, n)) {
    count[v] += 1;
  }
  double norm = 0;
  for (std::uint64_t k = 1; k <= slots; ++k) {
    norm += std::pow(static_cast<double>(k), -theta);
  }
  double chi2 = 0;
  for (std::uint64_t k = 1; k <= slots; ++k) {
    const double expect = static_cast<double>(n) * std::pow(static_cast<double>(k), -theta) / norm;
    chi2 += (count[k - 1] - expect) * (count[k - 1] - expect) / expect;
  }
  return chi2;
}

TEST(SlotPicker, ZipfFollowsTheFormula) {
  constexpr std::uint64_t kSlots = 200;
  const double bound = (kSlots - 1) + 6 * std::sqrt(2.0 * (kSlots - 1));
  for (const double theta : {0.5, 0.99, 1.0, 1.2, 2.0}) {
    EXPECT_LT(zipf_chi_square(theta, kSlots, 400000), bound) << "theta " << theta;
  }
}

TEST(SlotPicker, ZipfHeadMatchesTheFormulaOverALargeRegion) {
  // Over a million slots, theta 1.2: rank 1 takes 1 / zeta-like sum of the picks.
  Distribution d;
  d.kind = Distribution::Kind::zipf;
  d.theta = 1.2;
  constexpr std::uint64_t kSlots = 1'000'000;
  constexpr std::size_t kN = 1'000'000;
  double norm = 0;
  for (std::uint64_t k = 1; k <= kSlots; ++k) {
    norm += std::pow(static_cast<double>(k), -d.theta);
  }
  std::vector<double> head(4);
  for (const std::uint64_t v : picks(d, kSlots, 3, kN)) {
    if (v < head.size()) {
      head[v] += 1;
    }
  }
  for (std::size_t k = 1; k <= head.size(); ++k) {
    const double p = std::pow(static_cast<double>(k), -d.theta) / norm;
    const double sd = std::sqrt(kN * p * (1 - p));
    EXPECT_NEAR(head[k - 1], kN * p, 5 * sd) << "rank " << k;
  }
}

TEST(SlotPicker, ZonedSendsItsShareToTheHotZone) {
  VFE_ASSERT_OK_AND_ASSIGN(const Distribution d, parse_distribution("zoned:90/10"));
  constexpr std::size_t kN = 200000;
  std::size_t hot = 0;
  for (const std::uint64_t v : picks(d, 1000, 5, kN)) {
    hot += v < 100 ? 1 : 0;
  }
  const double sd = std::sqrt(kN * 0.9 * 0.1);
  EXPECT_NEAR(static_cast<double>(hot), 0.9 * kN, 5 * sd);
}

TEST(ParseDistribution, AcceptsFiosWordsAndRefusesTheRest) {
  VFE_ASSERT_OK_AND_ASSIGN(const Distribution z, parse_distribution("zipf:1.2"));
  EXPECT_EQ(z.kind, Distribution::Kind::zipf);
  EXPECT_DOUBLE_EQ(z.theta, 1.2);
  EXPECT_EQ(to_string(z), "zipf:1.2");
  VFE_ASSERT_OK_AND_ASSIGN(const Distribution h, parse_distribution("zoned:80/20"));
  EXPECT_DOUBLE_EQ(h.hot_io, 0.8);
  EXPECT_DOUBLE_EQ(h.hot_space, 0.2);
  EXPECT_EQ(to_string(h), "zoned:80/20");
  for (const char* bad : {"zipf", "zipf:", "zipf:0", "zipf:-1", "zipf:1.2x", "zoned:90", "zoned:101/10",
                          "zoned:90/0", "pareto:0.5", ""}) {
    const auto r = parse_distribution(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message().find("zipf:THETA"), std::string::npos) << r.error().message();
  }
}

TEST(RateLimiter, LetsTheRateThroughAndNoMore) {
  RateLimiter r(1000.0, 1);  // one per millisecond, no burst
  std::uint64_t taken = 0;
  for (std::uint64_t t = 0; t < 1'000'000'000; t += 10'000) {  // a second in 10 us steps
    taken += r.try_take(t) ? 1 : 0;
  }
  EXPECT_GE(taken, 999U);
  EXPECT_LE(taken, 1001U);
}

TEST(RateLimiter, BurstIsBankedDuringAPauseAndCapped) {
  RateLimiter r(1000.0, 8);
  std::uint64_t now = 0;
  int first = 0;
  while (r.try_take(now)) {
    ++first;
  }
  EXPECT_EQ(first, 8);  // starts full
  now += 1'000'000'000;  // a long pause banks at most the burst
  int after_pause = 0;
  while (r.try_take(now)) {
    ++after_pause;
  }
  EXPECT_EQ(after_pause, 8);
  EXPECT_FALSE(r.try_take(now + 999'000));
  EXPECT_TRUE(r.try_take(now + 1'000'000));
}

TEST(RateLimiter, ATimeGoingBackwardsGrantsNothing) {
  RateLimiter r(1000.0, 1);
  EXPECT_TRUE(r.try_take(5'000'000));
  EXPECT_FALSE(r.try_take(1'000'000));  // earlier than the last: no credit
  EXPECT_FALSE(r.try_take(5'500'000));
  EXPECT_TRUE(r.try_take(6'000'000));
}

}  // namespace
}  // namespace vfe::bench
