#include <sys/resource.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "bench/vfio_bench/jobs.hpp"

namespace vfe::bench {

Result<std::uint64_t> parse_size(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])) || errno != 0) {
    return Error::invalid("parse size", "'" + text + "' is not a size; use e.g. 4096, 4k, 2M, 1G");
  }
  unsigned shift = 0;
  const std::string unit(end);
  if (unit == "k" || unit == "K" || unit == "KiB") {
    shift = 10;
  } else if (unit == "m" || unit == "M" || unit == "MiB") {
    shift = 20;
  } else if (unit == "g" || unit == "G" || unit == "GiB") {
    shift = 30;
  } else if (!unit.empty()) {
    return Error::invalid("parse size", "'" + text + "': unknown unit '" + unit + "' (k, M or G)");
  }
  if (n > (~0ULL >> shift)) {
    return Error::invalid("parse size", "'" + text + "' is too large");
  }
  return static_cast<std::uint64_t>(n) << shift;
}

Result<std::optional<vfio::IommuMode>> iommu_mode_of(const CommonOptions& common) {
  if (common.mode.empty() || common.mode == "auto") {
    return std::optional<vfio::IommuMode>{};
  }
  VFE_TRY_ASSIGN(const vfio::IommuMode m, vfio::parse_iommu_mode(common.mode));
  return std::optional<vfio::IommuMode>{m};
}

engine::CompletionMode completion_of(const std::string& name) {
  return engine::parse_completion_mode(name).value_or(engine::CompletionMode::polling);
}

engine::WorkerMode worker_mode_of(const std::string& name) { return engine::worker_mode_for(completion_of(name)); }

double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

}  // namespace vfe::bench
