#pragma once
/// \file
/// `Engine`: NUMA-aware workers for devices.

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "engine/topology.hpp"
#include "engine/worker.hpp"
#include "vfio/bdf.hpp"

namespace vfe::engine {

struct EngineOptions {
  WorkerMode mode = WorkerMode::adaptive;
  std::chrono::microseconds idle_before_sleep{50};
  /// Pin every worker to these CPUs instead of its node's CPUs (empty: by node).
  std::vector<int> cpus;
  /// Steer each device's VFIO interrupt lines (/proc/irq/N/smp_affinity_list) to the CPUs of the
  /// worker that serves it. Off by default: it changes machine-wide state and needs root.
  bool steer_irqs = false;
};

/// Starts one worker per NUMA node that has devices, on first use, pinned to that node's CPUs
/// (a node without CPUs is served from the nearest node that has some). Thread-safe: the
/// worker table is guarded by a mutex (setup path only; workers themselves take no locks).
/// Destroying the engine stops and joins every worker; queue pairs must be detached first.
class Engine {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Engine>> create(EngineOptions options = {});

  /// The worker of NUMA node `node` (-1: the first node), started if needed.
  [[nodiscard]] Result<Worker*> worker_for_node(int node);
  /// The worker of the node `bdf` is attached to, started if needed; with `steer_irqs`, the
  /// device's interrupt lines are steered to that worker's CPUs.
  [[nodiscard]] Result<Worker*> worker_for_device(const vfio::Bdf& bdf);
  /// The NUMA node a worker serves (what its buffers should be allocated on).
  [[nodiscard]] int node_of(const Worker& worker) const;

  [[nodiscard]] const Topology& topology() const noexcept { return topology_; }
  [[nodiscard]] const EngineOptions& options() const noexcept { return options_; }

  Engine(EngineOptions options, Topology topology) noexcept
      : options_(std::move(options)), topology_(std::move(topology)) {}

 private:
  EngineOptions options_;
  Topology topology_;
  mutable std::mutex mu_;
  std::map<int, std::unique_ptr<Worker>> workers_;  // node -> its worker
};

/// Writes `cpus` to /proc/irq/N/smp_affinity_list for every interrupt line /proc/interrupts
/// shows for `bdf`'s VFIO vectors ("vfio-msix[3](0000:81:00.0)"). Returns how many lines were
/// steered; a line the kernel won't move (EIO: managed or per-CPU) is skipped and logged. Without
/// root the files are not writable: EACCES, saying so.
[[nodiscard]] Result<std::size_t> steer_device_irqs(const vfio::Bdf& bdf, std::span<const int> cpus);

}  // namespace vfe::engine
