#pragma once
/// \file
/// What a vfio-bench run measured, and how it is printed: a summary for people, JSON for machines.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "bench/vfio_bench/histogram.hpp"

namespace vfe::bench {

/// One measured job: a mode on a device (or on nothing, for loopback), possibly one of several
/// in a run (sizes of a dma run, batch sizes of the io_uring peers).
struct Job {
  std::string name;              ///< "nvme 0000:00:02.0 randread", "dma map 2 MiB", ...
  nlohmann::json params = nlohmann::json::object();  ///< the options that shaped it
  double seconds = 0;            ///< wall-clock time measured
  std::uint64_t ops = 0;         ///< operations completed (I/Os, reads, interrupts, maps)
  std::uint64_t bytes = 0;       ///< bytes moved (0 where nothing moves)
  std::uint64_t errors = 0;      ///< operations that failed
  double cpu_seconds = 0;        ///< user + system CPU time of the process while it ran
  Histogram latency;             ///< per-operation latency in nanoseconds
  nlohmann::json extra = nlohmann::json::object();  ///< mode-specific figures (mmio_writes_per_io, ...)
  std::string first_error;       ///< what the first failure said
  /// Operations per second over the run, one point per sampling interval (modes that sample:
  /// nvme). `seconds` is the interval's end, from the start of counting.
  struct RatePoint {
    double seconds;
    double ops_per_second;
  };
  std::vector<RatePoint> timeline;

  [[nodiscard]] double ops_per_second() const noexcept { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
  [[nodiscard]] double mib_per_second() const noexcept {
    return seconds > 0 ? static_cast<double>(bytes) / seconds / (1 << 20) : 0;
  }
};

/// A whole run: its jobs and lines that compare them with peers measured in the same run.
struct Report {
  std::string mode;
  std::vector<Job> jobs;
  std::vector<std::string> notes;  ///< comparisons and remarks, printed after the jobs
  nlohmann::json comparison = nlohmann::json::object();
  /// The latency percentiles printed and put in the JSON ("p50", "p99.99", ...).
  std::vector<double> percentiles = kDefaultPercentiles;
  static inline const std::vector<double> kDefaultPercentiles = {50, 90, 99, 99.9};

  [[nodiscard]] std::uint64_t errors() const noexcept;
};

/// The summary: per job, the rate, throughput, latency mean, the report's percentiles and max,
/// CPU per op.
[[nodiscard]] std::string to_text(const Report& report);
/// The same as JSON (schema: docs/VFIO-BENCH.md, "JSON"), histogram buckets included.
[[nodiscard]] nlohmann::json to_json(const Report& report);
/// Parses "50,99,99.99" (each above 0 and at most 100, at most 32 of them) for --percentiles.
[[nodiscard]] Result<std::vector<double>> parse_percentiles(const std::string& text);
/// "p50", "p99.9": a percentile's name in the JSON and the summary.
[[nodiscard]] std::string percentile_name(double p);
/// "12.3 us", "845 ns", "1.20 ms": a nanosecond count for people.
[[nodiscard]] std::string format_ns(double ns);

}  // namespace vfe::bench
