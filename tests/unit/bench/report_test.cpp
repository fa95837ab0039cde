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

TEST(Report, FormatsNanoseconds) {
  EXPECT_EQ(format_ns(845), "845 ns");
  EXPECT_EQ(format_ns(12'300), "12.30 us");
  EXPECT_EQ(format_ns(1'200'000), "1.20 ms");
  EXPECT_EQ(format_ns(3e9), "3.00 s");
}

}  // namespace
}  // namespace vfe::bench
