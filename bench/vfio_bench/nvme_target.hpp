#pragma once
/// \file
/// `vfio-bench nvme`'s jobs and how they are set up: a `Target` is one namespace of one
/// controller with its lanes (nvme_lane.hpp); the functions here open controllers, make a
/// target's lanes and --verify's arenas. The run itself is nvme_bench.cpp's.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "bench/vfio_bench/jobs.hpp"
#include "bench/vfio_bench/nvme_lane.hpp"
#include "bench/vfio_bench/report.hpp"
#include "drivers/nvme/controller.hpp"
#include "engine/topology.hpp"

namespace vfe::bench {

/// One namespace of one controller: its lanes, and what its job reports. The controller belongs
// to run_nvme, which keeps it until every target is gone.
struct Target {
  nvme::Controller* ctrl = nullptr;
  std::string bdf;
  std::uint32_t nsid = 1;
  std::size_t index = 0;  // among the run's targets
  // --verify. Before the lanes, so destroyed after them; that is safe either way, as all lanes
  // parked means no check is out, and ~Verifier waits for any.
  std::unique_ptr<Verifier> verifier;
  std::vector<std::unique_ptr<Lane>> lanes;
  int node = -1;
  std::vector<int> cpus;         // of the controller's node
  std::vector<int> worker_cpus;  // one per lane
  std::vector<Job::RatePoint> timeline;
  std::uint64_t sampled_ops = 0;  // done when the last point was taken
};

/// --rw's word: reads and writes, or one other command (trim, randtrim, writezeroes,
/// randwritezeroes, flush).
[[nodiscard]] LaneOp lane_op(const std::string& rw);

/// Opens a controller with an I/O queue for each worker of each namespace tested.
[[nodiscard]] Result<std::unique_ptr<nvme::Controller>> open_controller(const std::string& bdf,
                                                                        const CommonOptions& common,
                                                                        const NvmeOptions& o);

/// Makes the lanes of namespace t.nsid of t.ctrl (t.bdf, t.index set): a worker each, pinned on
/// the controller's node (controllers on one node take turns over its CPUs, through `next_cpu`),
/// a queue, a buffer of qd x bs on that node, and the requests. Refuses what the namespace or the
/// controller cannot do.
[[nodiscard]] Result<void> open_target(Target& t, const NvmeOptions& o, const engine::Topology& topo,
                                       std::atomic<bool>& stop, std::map<int, unsigned>& next_cpu);

/// --verify: an arena per target, on CPUs no worker of the run polls on, made once every target
/// has its workers' CPUs; each lane is given its target's.
[[nodiscard]] Result<void> make_verifiers(std::vector<Target>& targets);

}  // namespace vfe::bench
