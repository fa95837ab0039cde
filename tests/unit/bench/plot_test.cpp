#include "bench/vfio_bench/plot.hpp"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace vfe::bench {
namespace {

// The tags of `svg` are balanced and properly nested (what an XML reader needs of them).
::testing::AssertionResult well_nested(const std::string& svg) {
  std::vector<std::string> open;
  for (std::size_t at = svg.find('<'); at != std::string::npos; at = svg.find('<', at + 1)) {
    const std::size_t end = svg.find('>', at);
    if (end == std::string::npos) {
      return ::testing::AssertionFailure() << "a tag at " << at << " never closes";
    }
    const std::string tag = svg.substr(at + 1, end - at - 1);
    const std::string name = tag.substr(tag[0] == '/' ? 1 : 0, tag.find_first_of(" />", 1) - (tag[0] == '/' ? 1 : 0));
    if (tag[0] == '?' || tag.back() == '/') {
      continue;  // the XML declaration, or an empty element
    }
    if (tag[0] != '/') {
      open.push_back(name);
    } else if (open.empty() || open.back() != name) {
      return ::testing::AssertionFailure() << "</" << name << "> closes " << (open.empty() ? "nothing" : open.back());
    } else {
      open.pop_back();
    }
  }
  return open.empty() ? ::testing::AssertionSuccess() : ::testing::AssertionFailure() << open.back() << " is not closed";
}

// The points of the polyline of `cls` for job `job`, or nothing when there is none.
std::vector<std::pair<double, double>> points_of(const std::string& svg, const std::string& cls, int job) {
  const std::string key = "class=\"" + cls + "\" data-job=\"" + std::to_string(job) + "\"";
  const std::size_t at = svg.find(key);
  if (at == std::string::npos) {
    return {};
  }
  const std::size_t begin = svg.find("points=\"", at) + 8;
  std::istringstream in(svg.substr(begin, svg.find('"', begin) - begin));
  std::vector<std::pair<double, double>> out;
  double x = 0, y = 0;
  char comma = 0;
  while (in >> x >> comma >> y) {
    out.emplace_back(x, y);
  }
  return out;
}

Report two_jobs() {
  Report r;
  r.mode = "nvme";
  Job a;
  a.name = "first <&> job";
  for (std::uint64_t v = 100; v <= 100000; v += 37) {
    a.latency.record(v);
  }
  a.timeline = {{0.1, 900}, {0.2, 1000}, {0.3, 1100}, {0.4, 1000}, {0.5, 950}};
  Job b;
  b.name = "second";
  for (std::uint64_t v = 1; v <= 50; ++v) {
    b.latency.record(v * 1000);
  }
  r.jobs = {a, b};
  return r;
}

TEST(Plot, AnSvgWithALatencyDistributionAndARateLinePerJob) {
  const Report r = two_jobs();
  const std::string svg = to_svg(r);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0U);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_TRUE(well_nested(svg));
  for (int job = 0; job < 2; ++job) {
    const auto cdf = points_of(svg, "latency", job);
    EXPECT_EQ(cdf.size(), r.jobs[static_cast<std::size_t>(job)].latency.nonempty_buckets().size()) << job;
    ASSERT_GE(cdf.size(), 2U);
    EXPECT_LT(cdf.back().second, cdf.front().second) << "the line rises to 100 %";
    for (std::size_t i = 1; i < cdf.size(); ++i) {
      EXPECT_GE(cdf[i].first, cdf[i - 1].first) << "latency grows along the line";
      EXPECT_LE(cdf[i].second, cdf[i - 1].second) << "the share at or below grows (SVG y grows downwards)";
    }
  }
  EXPECT_EQ(points_of(svg, "rate", 0).size(), 5U);
  EXPECT_TRUE(points_of(svg, "rate", 1).empty()) << "a job without a timeline has no rate line";
  EXPECT_NE(svg.find("first &lt;&amp;&gt; job"), std::string::npos);
  EXPECT_EQ(svg.find("<&>"), std::string::npos);
}

TEST(Plot, ARunWithoutATimelineSaysSo) {
  Report r = two_jobs();
  r.jobs[0].timeline.clear();
  const std::string svg = to_svg(r);
  EXPECT_TRUE(well_nested(svg));
  EXPECT_NE(svg.find("no timeline"), std::string::npos);
  EXPECT_TRUE(points_of(svg, "rate", 0).empty());
}

TEST(Plot, AnEmptyReportIsStillAPicture) {
  Report r;
  r.mode = "loopback";
  const std::string svg = to_svg(r);
  EXPECT_TRUE(well_nested(svg));
  EXPECT_EQ(svg.find("polyline"), std::string::npos);
}

}  // namespace
}  // namespace vfe::bench
