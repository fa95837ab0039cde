#include "bench/vfio_bench/nvme_target.hpp"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "vfio/iommu_mode.hpp"

namespace vfe::bench {
namespace {

// Identify Controller ONCS: a workload the controller has no command for is refused up front.
Result<void> check_supported(const nvme::Controller& c, const std::string& bdf, LaneOp op) {
  if (op == LaneOp::trim && !c.identity().supports_dataset_management()) {
    return Error::not_supported("vfio-bench nvme", fmt::format("{}: the controller has no Dataset Management "
                                                               "(ONCS bit 2), so no trim", bdf));
  }
  if (op == LaneOp::write_zeroes && !c.identity().supports_write_zeroes()) {
    return Error::not_supported("vfio-bench nvme", fmt::format("{}: the controller has no Write Zeroes (ONCS bit 3)",
                                                               bdf));
  }
  return ok();
}

// What the lanes of one target share.
struct LaneShape {
  LaneOp op;
  bool random;
  std::uint64_t bsz;     // the namespace's block size
  std::uint64_t blocks;  // of the region tested
  Distribution distribution;
};

// Lane w's settings: what it does and where, its generator, its share of --rate.
void configure_lane(Lane& lane, const Target& t, const NvmeOptions& o, const LaneShape& shape, unsigned w,
                    std::atomic<bool>& stop) {
  lane.op = shape.op;
  lane.random = shape.random;
  lane.read_percent = o.rw == "read" || o.rw == "randread" ? 100 : o.rw == "write" || o.rw == "randwrite" ? 0 : o.rwmixread;
  lane.bs_blocks = o.bs / shape.bsz;
  // Sequential lanes each stream through their own share of the region; random ones roam it all.
  lane.first_block = o.offset / shape.bsz + (shape.random ? 0 : shape.blocks / o.workers * w);
  lane.blocks = shape.random ? shape.blocks : shape.blocks / o.workers;
  // Every lane of the run draws its own sequence: lane k (counted over all jobs) uses seed + k.
  lane.picker.emplace(shape.distribution, lane.blocks / lane.bs_blocks, o.seed + t.index * o.workers + w);
  if (o.rate > 0) {
    // This lane's share. The bucket holds 10 ms of it: held requests go when the pacer wakes
    // (every 200 us asked, later on a loaded machine), and a bucket smaller than the time
    // between wake-ups would lower the rate below the cap.
    const double share = o.rate / o.workers;
    lane.rate.emplace(share, static_cast<std::uint64_t>(std::ceil(share / 100)));
  }
  lane.measuring = o.ramp_seconds == 0;
  lane.held.reserve(o.qd);
  lane.verify_seed = o.seed;
  lane.block_size = static_cast<std::uint32_t>(shape.bsz);
  lane.bad_lbas.reserve(Lane::kBadLbasKept);
  lane.stop = &stop;
}

// Lane w of target t: its settings, a worker pinned on `cpu`, a buffer of qd x bs on the
// target's node, the requests (each with its --bs of the buffer), and a queue.
Result<std::unique_ptr<Lane>> make_lane(Target& t, const NvmeOptions& o, const LaneShape& shape, unsigned w, int cpu,
                                        std::atomic<bool>& stop) {
  auto lane = std::make_unique<Lane>();
  configure_lane(*lane, t, o, shape, w, stop);
  engine::WorkerOptions wo;
  wo.mode = worker_mode_of(o.completion);
  wo.cpus = {cpu};
  wo.name = fmt::format("vfe-bench-{}", w);
  VFE_TRY_ASSIGN(lane->worker, engine::Worker::start(wo));
  VFE_TRY_ASSIGN(auto buf, dma::DmaBuffer::allocate(t.ctrl->dma_space(), o.bs * o.qd, {.hugepages = true, .numa_node = t.node}));
  lane->buffer.emplace(std::move(buf));
  std::memset(lane->buffer->data(), 0xa5, lane->buffer->size());
  for (std::uint32_t k = 0; k < o.qd; ++k) {
    auto io = std::make_unique<BenchIo>();
    io->lane = lane.get();
    io->on_complete = on_bench_io_complete;
    io->nsid = t.nsid;
    io->segment = {lane->buffer->iova_at(std::uint64_t{k} * o.bs), o.bs};
    io->host = lane->buffer->as<std::uint8_t>() + std::uint64_t{k} * o.bs;
    io->range = reinterpret_cast<nvme::DsmRange*>(io->host);  // trim: the range where the data would be
    io->range_segment = {io->segment.iova, sizeof(nvme::DsmRange)};
    lane->ios.push_back(std::move(io));
  }
  VFE_TRY_ASSIGN(lane->queue,
                 t.ctrl->create_io_queue(*lane->worker, {.entries = o.qd + 1,
                                                         .completion = completion_of(o.completion),
                                                         .numa_node = t.node,
                                                         .submission_capacity = std::max<std::size_t>(1024, 2 * o.qd)}));
  return lane;
}

// Where --verify's checks run: the controller's node's CPUs that the run's workers leave free;
// where they take them all, the machine's other CPUs (a polling worker would starve a checking thread
// on its own CPU, and a check waiting for a time slice holds its request); empty: anywhere.
std::vector<int> verify_cpus(const std::vector<int>& node_cpus, const std::vector<int>& worker_cpus) {
  auto free_of_workers = [&](const std::vector<int>& from) {
    std::vector<int> out;
    for (const int c : from) {
      if (std::find(worker_cpus.begin(), worker_cpus.end(), c) == worker_cpus.end()) {
        out.push_back(c);
      }
    }
    return out;
  };
  if (auto near = free_of_workers(node_cpus); !near.empty()) {
    return near;
  }
  std::vector<int> all;
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) {
        all.push_back(c);
      }
    }
  }
  return free_of_workers(all);
}

// The namespace's block size and the blocks of the region tested, or why the options do not fit it.
struct Region {
  std::uint64_t block_size;
  std::uint64_t blocks;
};

Result<Region> region_of(const Target& t, const NvmeOptions& o) {
  const std::string& bdf = t.bdf;
  const nvme::NamespaceInfo* ns = t.ctrl->find_namespace(t.nsid);
  if (ns == nullptr) {
    return Error::invalid("vfio-bench nvme", fmt::format("{}: namespace {} is not active", bdf, t.nsid));
  }
  if (ns->metadata_bytes != 0) {
    return Error::not_supported("vfio-bench nvme", fmt::format("{}: namespace {} is formatted with {} bytes of "
                                                               "metadata per block, which drivers/nvme does not support",
                                                               bdf, t.nsid, ns->metadata_bytes));
  }
  const std::uint64_t bsz = ns->block_size;
  const std::uint64_t size = o.size != 0 ? o.size : (o.offset < ns->size_bytes() ? ns->size_bytes() - o.offset : 0);
  if (o.bs % bsz != 0 || o.offset % bsz != 0 || o.offset + size > ns->size_bytes() || size < o.bs * o.workers) {
    return Error::invalid("vfio-bench nvme",
                          fmt::format("{}: --bs {} and --offset {} must be multiples of the {}-byte block, and "
                                      "--offset + --size within the {} bytes of namespace {} with room for one "
                                      "--bs per worker", bdf, o.bs, o.offset, bsz, ns->size_bytes(), t.nsid));
  }
  return Region{bsz, size / bsz};
}

}  // namespace

LaneOp lane_op(const std::string& rw) {
  if (rw == "trim" || rw == "randtrim") {
    return LaneOp::trim;
  }
  if (rw == "writezeroes" || rw == "randwritezeroes") {
    return LaneOp::write_zeroes;
  }
  return rw == "flush" ? LaneOp::flush : LaneOp::read_write;
}

Result<std::unique_ptr<nvme::Controller>> open_controller(const std::string& bdf, const CommonOptions& common,
                                                          const NvmeOptions& o) {
  nvme::ControllerOptions copt;
  VFE_TRY_ASSIGN(copt.mode, iommu_mode_of(common));
  copt.io_queues = o.workers * static_cast<std::uint32_t>(o.nsids.size());
  copt.shadow_doorbells = o.shadow_doorbells;
  copt.mask_interrupts_while_polling = o.mask_interrupts;
  return nvme::Controller::create(bdf, copt);
}

Result<void> make_verifiers(std::vector<Target>& targets) {
  std::vector<int> busy;
  for (const Target& t : targets) {
    busy.insert(busy.end(), t.worker_cpus.begin(), t.worker_cpus.end());
  }
  for (Target& t : targets) {
    const std::vector<int> cpus = verify_cpus(t.cpus, busy);
    VFE_TRY_ASSIGN(t.verifier, Verifier::create(cpus, static_cast<unsigned>(std::max<std::size_t>(cpus.size(), 1))));
    for (auto& l : t.lanes) {
      l->verifier = t.verifier.get();
    }
  }
  return ok();
}


Result<void> open_target(Target& t, const NvmeOptions& o, const engine::Topology& topo, std::atomic<bool>& stop,
                         std::map<int, unsigned>& next_cpu) {
  VFE_TRY_ASSIGN(const Region region, region_of(t, o));
  VFE_TRY_ASSIGN(auto dev_bdf, vfio::Bdf::parse(t.bdf));
  t.node = topo.device_node(dev_bdf);
  const int cpu_node = t.node >= 0 ? t.node : topo.numa_nodes().front();
  t.cpus = topo.cpus_near_node(cpu_node);
  if (t.cpus.empty()) {
    t.cpus = {0};
  }
  const bool random = o.rw.rfind("rand", 0) == 0;
  const LaneOp op = lane_op(o.rw);
  VFE_TRY(check_supported(*t.ctrl, t.bdf, op));
  VFE_TRY_ASSIGN(const Distribution distribution, parse_distribution(o.distribution));
  unsigned& cpu_turn = next_cpu[cpu_node];  // controllers on one node take turns over its CPUs
  std::vector<int> worker_cpus;
  for (unsigned w = 0; w < o.workers; ++w) {
    worker_cpus.push_back(t.cpus[cpu_turn++ % t.cpus.size()]);
  }
  t.worker_cpus = worker_cpus;
  const LaneShape shape{op, random, region.block_size, region.blocks, distribution};
  for (unsigned w = 0; w < o.workers; ++w) {
    VFE_TRY_ASSIGN(auto lane, make_lane(t, o, shape, w, worker_cpus[w], stop));
    t.lanes.push_back(std::move(lane));
  }
  return ok();
}

}  // namespace vfe::bench
