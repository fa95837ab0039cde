#include "bench/vfio_bench/report.hpp"

#include <fmt/format.h>

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

namespace {

constexpr double kPercentiles[] = {50, 90, 99, 99.9};

std::string job_text(const Job& j) {
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
    out += fmt::format("  latency: mean {}, p50 {}, p90 {}, p99 {}, p99.9 {}, max {}\n", format_ns(h.mean()),
                       format_ns(static_cast<double>(h.percentile(50))), format_ns(static_cast<double>(h.percentile(90))),
                       format_ns(static_cast<double>(h.percentile(99))),
                       format_ns(static_cast<double>(h.percentile(99.9))), format_ns(static_cast<double>(h.max())));
  }
  for (const auto& [key, value] : j.extra.items()) {
    out += fmt::format("  {}: {}\n", key, value.is_number_float() ? fmt::format("{:.3f}", value.get<double>()) : value.dump());
  }
  if (!j.first_error.empty()) {
    out += fmt::format("  first error: {}\n", j.first_error);
  }
  return out;
}

nlohmann::json latency_json(const Histogram& h) {
  nlohmann::json buckets = nlohmann::json::array();
  for (const auto& b : h.nonempty_buckets()) {
    buckets.push_back({b.low, b.high, b.count});
  }
  nlohmann::json pct = nlohmann::json::object();
  for (const double p : kPercentiles) {
    pct[fmt::format("p{}", p)] = h.percentile(p);
  }
  return {{"unit", "ns"},     {"count", h.count()}, {"mean", h.mean()}, {"min", h.min()},
          {"max", h.max()},   {"percentiles", pct}, {"buckets", buckets}};
}

}  // namespace

std::string to_text(const Report& report) {
  std::string out;
  for (const Job& j : report.jobs) {
    out += job_text(j);
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
                    {"latency", latency_json(j.latency)},
                    {"extra", j.extra},
                    {"first_error", j.first_error}});
  }
  return {{"tool", "vfio-bench"}, {"mode", report.mode}, {"jobs", jobs}, {"errors", report.errors()},
          {"comparison", report.comparison}, {"notes", report.notes}};
}

}  // namespace vfe::bench
