#include "bench/vfio_bench/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace vfe::bench {

std::uint64_t Report::errors() const noexcept {
  std::uint64_t n = 0;
  for (const Job& j : jobs) {
    n += j.errors;
  }
  return n;
}

std::string format_ns(double ns) {
  if (ns < 1e3) {
    return fmt::format("{:.0f} ns", ns);
  }
  if (ns < 1e6) {
    return fmt::format("{:.2f} us", ns / 1e3);
  }
  if (ns < 1e9) {
    return fmt::format("{:.2f} ms", ns / 1e6);
  }
  return fmt::format("{:.2f} s", ns / 1e9);
}

std::string percentile_name(double p) { return fmt::format("p{}", p); }

Result<std::vector<double>> parse_percentiles(const std::string& text) {
  std::vector<double> out;
  std::size_t begin = 0;
  while (begin <= text.size()) {
    const std::size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    double p = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), p);
    if (item.empty() || ec != std::errc{} || ptr != item.data() + item.size() || !(p > 0 && p <= 100)) {
      return Error::invalid("--percentiles", fmt::format("'{}' in '{}' is not a percentile above 0 and at most 100 "
                                                          "(give a list such as 50,99,99.99)", item, text));
    }
    out.push_back(p);
    begin = end + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > 32) {
    return Error::invalid("--percentiles", fmt::format("{} percentiles; at most 32", out.size()));
  }
  return out;
}

namespace {

std::string job_text(const Job& j, const std::vector<double>& percentiles) {
  std::string out = fmt::format("{}\n  {} ops in {:.3f} s: {:.0f} ops/s", j.name, j.ops, j.seconds, j.ops_per_second());
  if (j.bytes != 0) {
    out += fmt::format(", {:.1f} MiB/s", j.mib_per_second());
  }
  if (j.ops != 0) {
    out += fmt::format(", CPU {} per op", format_ns(j.cpu_seconds * 1e9 / static_cast<double>(j.ops)));
  }
  out += fmt::format(", {} error(s)\n", j.errors);
  const Histogram& h = j.latency;
  if (h.count() != 0) {
    out += fmt::format("  latency: mean {}", format_ns(h.mean()));
    for (const double p : percentiles) {
      out += fmt::format(", {} {}", percentile_name(p), format_ns(static_cast<double>(h.percentile(p))));
    }
    out += fmt::format(", max {}\n", format_ns(static_cast<double>(h.max())));
  }
  for (const auto& [key, value] : j.extra.items()) {
    out += fmt::format("  {}: {}\n", key, value.is_number_float() ? fmt::format("{:.3f}", value.get<double>()) : value.dump());
  }
  if (!j.first_error.empty()) {
    out += fmt::format("  first error: {}\n", j.first_error);
  }
  return out;
}

nlohmann::json latency_json(const Histogram& h, const std::vector<double>& percentiles) {
  nlohmann::json buckets = nlohmann::json::array();
  for (const auto& b : h.nonempty_buckets()) {
    buckets.push_back({b.low, b.high, b.count});
  }
  nlohmann::json pct = nlohmann::json::object();
  for (const double p : percentiles) {
    pct[percentile_name(p)] = h.percentile(p);
  }
  return {{"unit", "ns"},     {"count", h.count()}, {"mean", h.mean()}, {"min", h.min()},
          {"max", h.max()},   {"percentiles", pct}, {"buckets", buckets}};
}

nlohmann::json timeline_json(const std::vector<Job::RatePoint>& timeline) {
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : timeline) {
    points.push_back({p.seconds, p.ops_per_second});
  }
  return points;
}

}  // namespace

std::string to_text(const Report& report) {
  std::string out;
  for (const Job& j : report.jobs) {
    out += job_text(j, report.percentiles);
  }
  for (const std::string& n : report.notes) {
    out += n + "\n";
  }
  return out;
}

nlohmann::json to_json(const Report& report) {
  nlohmann::json jobs = nlohmann::json::array();
  for (const Job& j : report.jobs) {
    jobs.push_back({{"name", j.name},
                    {"params", j.params},
                    {"seconds", j.seconds},
                    {"ops", j.ops},
                    {"bytes", j.bytes},
                    {"errors", j.errors},
                    {"ops_per_second", j.ops_per_second()},
                    {"mib_per_second", j.mib_per_second()},
                    {"cpu_seconds", j.cpu_seconds},
                    {"cpu_ns_per_op", j.ops != 0 ? j.cpu_seconds * 1e9 / static_cast<double>(j.ops) : 0.0},
                    {"latency", latency_json(j.latency, report.percentiles)},
                    {"timeline", timeline_json(j.timeline)},
                    {"extra", j.extra},
                    {"first_error", j.first_error}});
  }
  return {{"tool", "vfio-bench"}, {"mode", report.mode}, {"jobs", jobs}, {"errors", report.errors()},
          {"comparison", report.comparison}, {"notes", report.notes}};
}

}  // namespace vfe::bench
