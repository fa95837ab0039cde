#include "bench/vfio_bench/report.hpp"

#include <gtest/gtest.h>

#include "bench/vfio_bench/jobs.hpp"

namespace vfe::bench {
namespace {

TEST(ParseSize, UnitsAndErrors) {
  EXPECT_EQ(parse_size("512").value(), 512U);
  EXPECT_EQ(parse_size("4k").value(), 4096U);
  EXPECT_EQ(parse_size("2M").value(), 2U << 20);
  EXPECT_EQ(parse_size("1G").value(), 1ULL << 30);
  EXPECT_EQ(parse_size("3KiB").value(), 3072U);
  for (const char* bad : {"", "k", "-4k", "4x", "4 k", "99999999999999999999", "17179869184G"}) {
    EXPECT_FALSE(parse_size(bad)) << bad;
  }
}

TEST(Report, JsonCarriesCountsRatesAndTheHistogram) {
  Report r;
  r.mode = "test";
  Job j;
  j.name = "job";
  j.seconds = 2;
  j.ops = 1000;
  j.bytes = 4096 * 1000;
  j.errors = 1;
  j.first_error = "boom";
  for (int i = 0; i < 1000; ++i) {
    j.latency.record(static_cast<std::uint64_t>(100 + i));
  }
  r.jobs.push_back(j);
  const auto doc = to_json(r);
  EXPECT_EQ(doc["mode"], "test");
  EXPECT_EQ(doc["errors"], 1);
  const auto& job = doc["jobs"][0];
  EXPECT_DOUBLE_EQ(job["ops_per_second"].get<double>(), 500.0);
  EXPECT_DOUBLE_EQ(job["mib_per_second"].get<double>(), 4096.0 * 1000 / 2 / (1 << 20));
  EXPECT_EQ(job["latency"]["count"], 1000);
  std::uint64_t sum = 0;
  for (const auto& b : job["latency"]["buckets"]) {
    sum += b[2].get<std::uint64_t>();
  }
  EXPECT_EQ(sum, 1000U);
  EXPECT_EQ(job["first_error"], "boom");
  const std::string text = to_text(r);
  EXPECT_NE(text.find("500 ops/s"), std::string::npos) << text;
  EXPECT_NE(text.find("1 error(s)"), std::string::npos) << text;
  EXPECT_NE(text.find("p99.9"), std::string::npos) << text;
}

TEST(Report, ChosenPercentilesAreTheOnesReported) {
  Report r;
  r.mode = "test";
  Job j;
  j.name = "job";
  j.seconds = 1;
  for (std::uint64_t v = 1; v <= 10000; ++v) {
    j.latency.record(v);
    ++j.ops;
  }
  r.jobs.push_back(j);
  auto chosen = parse_percentiles("99.99,50,99.99,25");
  ASSERT_TRUE(chosen) << chosen.error().message();
  EXPECT_EQ(*chosen, (std::vector<double>{25, 50, 99.99})) << "sorted, duplicates gone";
  r.percentiles = *chosen;
  const auto pct = to_json(r)["jobs"][0]["latency"]["percentiles"];
  ASSERT_EQ(pct.size(), 3U);
  // The histogram is exact below 64 and within 3 % above: p25 of 1..10000 is 2500 +- 3 %.
  EXPECT_NEAR(pct["p25"].get<double>(), 2500, 2500 * 0.035);
  EXPECT_NEAR(pct["p50"].get<double>(), 5000, 5000 * 0.035);
  EXPECT_NEAR(pct["p99.99"].get<double>(), 9999, 9999 * 0.035);
  EXPECT_FALSE(pct.contains("p90"));
  const std::string text = to_text(r);
  EXPECT_NE(text.find("p99.99 "), std::string::npos) << text;
  EXPECT_EQ(text.find("p90"), std::string::npos) << text;
  for (const char* bad : {"", "0", "101", "50,", "50,,99", "fifty", "-1", "nan", "inf"}) {
    const auto r2 = parse_percentiles(bad);
    ASSERT_FALSE(r2) << bad;
    EXPECT_NE(r2.error().message().find("50,99,99.99"), std::string::npos) << r2.error().message();
  }
}

TEST(Report, TimelineGoesIntoTheJson) {
  Report r;
  Job j;
  j.timeline = {{0.1, 1000}, {0.2, 1500}};
  r.jobs.push_back(j);
  const auto tl = to_json(r)["jobs"][0]["timeline"];
  ASSERT_EQ(tl.size(), 2U);
  EXPECT_DOUBLE_EQ(tl[1][0].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(tl[1][1].get<double>(), 1500);
}

TEST(Report, FormatsNanoseconds) {
  EXPECT_EQ(format_ns(845), "845 ns");
  EXPECT_EQ(format_ns(12'300), "12.30 us");
  EXPECT_EQ(format_ns(1'200'000), "1.20 ms");
  EXPECT_EQ(format_ns(3e9), "3.00 s");
}

}  // namespace
}  // namespace vfe::bench
