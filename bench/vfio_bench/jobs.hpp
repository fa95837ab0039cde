#pragma once
/// \file
/// The vfio-bench modes. Each runs its jobs and returns a Report; a setup failure is an Error,
/// a failed operation during the run is counted in the job (and makes vfio-bench exit non-zero).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "bench/vfio_bench/report.hpp"
#include "engine/queue_pair.hpp"
#include "engine/worker.hpp"
#include "vfio/iommu_mode.hpp"

namespace vfe::bench {

/// What every mode shares.
struct CommonOptions {
  double seconds = 5;        ///< how long each job runs (when `ops` is 0)
  std::uint64_t ops = 0;     ///< stop after this many operations instead (0: by time)
  bool progress = false;     ///< a progress line on stderr once a second
  std::string mode = "";     ///< IOMMU mode for VFIO devices ("" or auto: the default)
};

struct LoopbackOptions {
  std::uint32_t qd = 32;              ///< requests in flight
  std::string completion = "poll";    ///< poll, irq or adaptive
  unsigned latency_sample = 64;       ///< time one request in this many (timing costs ~20 ns)
};
[[nodiscard]] Result<Report> run_loopback(const CommonOptions& common, const LoopbackOptions& options);

struct NvmeOptions {
  std::vector<std::string> bdfs;      ///< one or several controllers
  std::string rw = "randread";        ///< read, write, randread, randwrite, randrw (and rw)
  unsigned rwmixread = 50;            ///< percent reads in randrw / rw
  std::uint64_t bs = 4096;            ///< bytes per I/O
  std::uint32_t qd = 32;              ///< I/Os in flight per worker
  unsigned workers = 1;               ///< worker threads (queues) per controller, on its node
  std::string completion = "poll";    ///< poll, irq or adaptive
  std::vector<std::uint32_t> nsids = {1};  ///< namespaces, each its own job (and queues) per controller
  std::uint64_t offset = 0;           ///< first byte of the region tested
  std::uint64_t size = 0;             ///< bytes of it (0: to the namespace end)
  bool shadow_doorbells = true;       ///< ControllerOptions::shadow_doorbells
  bool mask_interrupts = true;        ///< ControllerOptions::mask_interrupts_while_polling
  bool verify = false;                ///< writes carry the --seed pattern, reads are checked (TBB)
  std::uint64_t seed = 1;             ///< offsets, the mix and the --verify pattern; the k-th worker of the run uses seed + k
  std::string distribution = "random";  ///< fio's random_distribution: random, zipf:THETA, zoned:IO/SPACE
  double rate = 0;                    ///< IOPS cap per job (a namespace of a controller), shared by its workers (0: none)
  double ramp_seconds = 0;            ///< run this long before counting (fio's ramp_time)
};
[[nodiscard]] Result<Report> run_nvme(const CommonOptions& common, const NvmeOptions& options);

struct MmioOptions {
  std::string bdf;
  unsigned bar = 0;
  std::uint64_t offset = 0;
  unsigned width = 32;                ///< 8, 16, 32 or 64 bits
  bool write = false;                 ///< write `value` instead of reading (needs an explicit offset)
  std::uint64_t value = 0;
};
[[nodiscard]] Result<Report> run_mmio(const CommonOptions& common, const MmioOptions& options);

struct IrqOptions {
  std::string bdf;
  unsigned vectors = 1;               ///< vectors, one worker each (MSI-X, else MSI)
  std::string completion = "irq";     ///< how the workers wait: irq (sleep) or poll
};
[[nodiscard]] Result<Report> run_irq(const CommonOptions& common, const IrqOptions& options);

struct DmaOptions {
  std::string bdf;
  std::vector<std::uint64_t> sizes;   ///< bytes per mapping
  bool edu = false;                   ///< also the edu device's DMA copy rate
};
[[nodiscard]] Result<Report> run_dma(const CommonOptions& common, const DmaOptions& options);

struct NicOptions {
  std::string tx_bdf, rx_bdf;         ///< two e1000e on one wire: frames go tx -> rx
  std::string size = "60-1514";       ///< frame length without FCS: N or MIN-MAX
  std::uint32_t window = 256;         ///< frames sent and not yet received, at most
  std::uint32_t batch = 32;           ///< frames per tx_batch
  std::string completion = "poll";    ///< poll, irq or adaptive
};
[[nodiscard]] Result<Report> run_nic(const CommonOptions& common, const NicOptions& options);

/// The IOMMU mode `--iommu-mode` asks for: empty for "" or "auto" (the library chooses), an
/// error for a word that is not a mode.
[[nodiscard]] Result<std::optional<vfio::IommuMode>> iommu_mode_of(const CommonOptions& common);
/// Parses "4k", "2M", "1g", "512" (binary units) into bytes.
[[nodiscard]] Result<std::uint64_t> parse_size(const std::string& text);
/// User plus system CPU time of the process so far.
[[nodiscard]] double process_cpu_seconds();
/// poll, irq, adaptive -> the queue's completion mode and the worker's mode that goes with it.
[[nodiscard]] engine::CompletionMode completion_of(const std::string& name);
[[nodiscard]] engine::WorkerMode worker_mode_of(const std::string& name);
/// A steady clock in nanoseconds, for latencies.
[[nodiscard]] inline std::uint64_t now_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

}  // namespace vfe::bench
