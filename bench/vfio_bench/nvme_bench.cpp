// vfio-bench nvme: fio-style I/O on one or several NVMe controllers through drivers/nvme. Each
// worker owns one I/O queue and keeps --qd requests in flight (nvme_lane.hpp).
#include <fmt/format.h>
#include <oneapi/tbb/global_control.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "bench/vfio_bench/jobs.hpp"
#include "bench/vfio_bench/nvme_lane.hpp"
#include "bench/vfio_bench/progress.hpp"
#include "drivers/nvme/controller.hpp"
#include "engine/topology.hpp"
#include "engine/worker.hpp"
#include "vfio/iommu_mode.hpp"

namespace vfe::bench {
namespace {

using Clock = std::chrono::steady_clock;

double thread_cpu_seconds(engine::Worker& w) {
  double s = 0;
  static_cast<void>(w.run_sync([&] {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    s = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  }));
  return s;
}

// One controller: its lanes (workers) on its NUMA node.
// One namespace of one controller: its lanes, and what its job reports. The controller belongs
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

// The rate of each controller over the run: a point per interval (a tenth of a second, or a
// thousandth of a long run), for --plot and the JSON.
class Timeline {
 public:
  Timeline(Clock::time_point start, double run_seconds)
      : start_(start), last_(start),
        interval_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(std::max(0.1, run_seconds / 1000)))) {}
  void tick(std::vector<Target>& targets) {
    const auto now = Clock::now();
    if (now - last_ < interval_) {
      return;
    }
    const double span = std::chrono::duration<double>(now - last_).count();
    const double at = std::chrono::duration<double>(now - start_).count();
    for (auto& t : targets) {
      std::uint64_t ops = 0;
      for (auto& l : t.lanes) {
        ops += l->done.load(std::memory_order_relaxed);
      }
      t.timeline.push_back({at, static_cast<double>(ops - t.sampled_ops) / span});
      t.sampled_ops = ops;
    }
    last_ = now;
  }

 private:
  Clock::time_point start_, last_;
  Clock::duration interval_;
};

// --rw's word: reads and writes, or one other command (trim, randtrim, writezeroes,
// randwritezeroes, flush).
LaneOp lane_op(const std::string& rw) {
  if (rw == "trim" || rw == "randtrim") {
    return LaneOp::trim;
  }
  if (rw == "writezeroes" || rw == "randwritezeroes") {
    return LaneOp::write_zeroes;
  }
  return rw == "flush" ? LaneOp::flush : LaneOp::read_write;
}

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

Result<void> check_options(const CommonOptions& common, const NvmeOptions& o) {
  if (o.bdfs.empty()) {
    return Error::invalid("vfio-bench nvme", "name at least one controller (BDF)");
  }
  auto sorted = o.nsids;
  std::sort(sorted.begin(), sorted.end());
  if (sorted.empty() || std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return Error::invalid("vfio-bench nvme", "--nsid: name each namespace once (e.g. --nsid 1,2)");
  }
  if (o.bs == 0 || o.qd == 0 || o.workers == 0) {
    return Error::invalid("vfio-bench nvme", "--bs, --qd and --workers must be positive");
  }
  if (!std::isfinite(o.rate) || o.rate < 0 || o.rate > 1e9 || !std::isfinite(o.ramp_seconds) || o.ramp_seconds < 0 ||
      o.ramp_seconds > 86400) {
    return Error::invalid("vfio-bench nvme", "--rate must be 0 to 1e9 I/Os per second and --ramp-time 0 to 86400 s");
  }
  if (o.verify && lane_op(o.rw) != LaneOp::read_write) {
    return Error::invalid("vfio-bench nvme", "--verify goes with read and write workloads (--rw " + o.rw +
                                             " leaves nothing to check)");
  }
  if (o.ramp_seconds > 0 && common.ops != 0) {
    return Error::invalid("vfio-bench nvme", "--ramp-time goes with --time, not --ios (requests started while "
                                             "warming up would blur the count)");
  }
  VFE_TRY(parse_distribution(o.distribution));
  return ok();
}

// Opens a controller with an I/O queue for each worker of each namespace tested.
Result<std::unique_ptr<nvme::Controller>> open_controller(const std::string& bdf, const CommonOptions& common,
                                                          const NvmeOptions& o) {
  nvme::ControllerOptions copt;
  VFE_TRY_ASSIGN(copt.mode, iommu_mode_of(common));
  copt.io_queues = o.workers * static_cast<std::uint32_t>(o.nsids.size());
  copt.shadow_doorbells = o.shadow_doorbells;
  copt.mask_interrupts_while_polling = o.mask_interrupts;
  return nvme::Controller::create(bdf, copt);
}

// What the lanes of one target share.
struct LaneShape {
  LaneOp op;
  bool random;
  std::uint64_t bsz;     // the namespace's block size
  std::uint64_t blocks;  // of the region tested
  Distribution distribution;
};

// Lane w of target t: a worker pinned on `cpu`, a queue, a buffer of qd x bs on the target's node,
// and the requests.
Result<std::unique_ptr<Lane>> make_lane(Target& t, const NvmeOptions& o, const LaneShape& shape, unsigned w, int cpu,
                                        std::atomic<bool>& stop) {
  auto lane = std::make_unique<Lane>();
  lane->op = shape.op;
  lane->random = shape.random;
  lane->read_percent = o.rw == "read" || o.rw == "randread" ? 100 : o.rw == "write" || o.rw == "randwrite" ? 0 : o.rwmixread;
  lane->bs_blocks = o.bs / shape.bsz;
  // Sequential lanes each stream through their own share of the region; random ones roam it all.
  lane->first_block = o.offset / shape.bsz + (shape.random ? 0 : shape.blocks / o.workers * w);
  lane->blocks = shape.random ? shape.blocks : shape.blocks / o.workers;
  // Every lane of the run draws its own sequence: lane k (counted over all jobs) uses seed + k.
  lane->picker.emplace(shape.distribution, lane->blocks / lane->bs_blocks, o.seed + t.index * o.workers + w);
  if (o.rate > 0) {
    // This lane's share. The bucket holds 10 ms of it: held requests go when the pacer wakes
    // (every 200 us asked, later on a loaded machine), and a bucket smaller than the time
    // between wake-ups would lower the rate below the cap.
    const double share = o.rate / o.workers;
    lane->rate.emplace(share, static_cast<std::uint64_t>(std::ceil(share / 100)));
  }
  lane->measuring = o.ramp_seconds == 0;
  lane->held.reserve(o.qd);
  lane->verify_seed = o.seed;
  lane->block_size = static_cast<std::uint32_t>(shape.bsz);
  lane->bad_lbas.reserve(Lane::kBadLbasKept);
  lane->stop = &stop;
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
    io->range = reinterpret_cast<nvme::DsmRange*>(lane->buffer->as<std::uint8_t>() + std::uint64_t{k} * o.bs);
    io->range_segment = {io->segment.iova, sizeof(nvme::DsmRange)};
    io->host = lane->buffer->as<std::uint8_t>() + std::uint64_t{k} * o.bs;
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

// --verify: an arena per target, on CPUs no worker of the run polls on (see verify_cpus), made
// once every target's workers have their CPUs.
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

// Makes each lane of namespace t.nsid: a worker pinned on the controller's node, a queue, a
// buffer of qd x bs on that node, and the requests.
Result<void> open_target(Target& t, const NvmeOptions& o, const engine::Topology& topo, std::atomic<bool>& stop,
                         std::map<int, unsigned>& next_cpu) {
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
  VFE_TRY_ASSIGN(auto dev_bdf, vfio::Bdf::parse(bdf));
  t.node = topo.device_node(dev_bdf);
  const int cpu_node = t.node >= 0 ? t.node : topo.numa_nodes().front();
  t.cpus = topo.cpus_near_node(cpu_node);
  if (t.cpus.empty()) {
    t.cpus = {0};
  }
  const bool random = o.rw.rfind("rand", 0) == 0;
  const LaneOp op = lane_op(o.rw);
  VFE_TRY(check_supported(*t.ctrl, bdf, op));
  const std::uint64_t blocks = size / bsz;
  VFE_TRY_ASSIGN(const Distribution distribution, parse_distribution(o.distribution));
  unsigned& cpu_turn = next_cpu[cpu_node];  // controllers on one node take turns over its CPUs
  std::vector<int> worker_cpus;
  for (unsigned w = 0; w < o.workers; ++w) {
    worker_cpus.push_back(t.cpus[cpu_turn++ % t.cpus.size()]);
  }
  t.worker_cpus = worker_cpus;
  const LaneShape shape{op, random, bsz, blocks, distribution};
  for (unsigned w = 0; w < o.workers; ++w) {
    VFE_TRY_ASSIGN(auto lane, make_lane(t, o, shape, w, worker_cpus[w], stop));
    t.lanes.push_back(std::move(lane));
  }
  return ok();
}

// The first round of a lane's requests, on its worker (the only thread that aims requests).
void start_lane(Lane& l) {
  static_cast<void>(l.worker->run_sync([&l] {
    for (auto& io : l.ios) {
      l.start(*io);
    }
  }));
}

// `seconds` from `from`, in the clock's own ticks.
Clock::time_point after(Clock::time_point from, double seconds) {
  return from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// With --ios, each controller (job) does that many, shared among its workers; else no limit.
std::uint64_t io_limit(const CommonOptions& common, std::size_t lanes, std::size_t w) {
  return common.ops == 0 ? ~0ULL : common.ops / lanes + (w < common.ops % lanes ? 1 : 0);
}

template <class Fn>
void for_each_lane(std::vector<Target>& targets, Fn fn) {
  for (auto& t : targets) {
    for (std::size_t w = 0; w < t.lanes.size(); ++w) {
      fn(*t.lanes[w], t.lanes.size(), w);
    }
  }
}

bool all_parked(std::vector<Target>& targets, std::uint32_t qd) {
  bool all = true;
  for_each_lane(targets, [&](Lane& l, std::size_t, std::size_t) { all = all && l.parked.load(std::memory_order_acquire) >= qd; });
  return all;
}

// Waits until `until` (forever: nullopt) or until every request is parked. Under --rate it lets
// the requests the limiter held go every 200 us. Samples `timeline` when given.
void wait_lanes(std::vector<Target>& targets, const NvmeOptions& o, std::optional<Clock::time_point> until,
                Timeline* timeline = nullptr) {
  const auto tick = o.rate > 0 ? std::chrono::microseconds(200) : std::chrono::microseconds(2000);
  while (!all_parked(targets, o.qd) && (!until || Clock::now() < *until)) {
    if (o.rate > 0) {
      for_each_lane(targets, [](Lane& l, std::size_t, std::size_t) {
        if (l.holding.load(std::memory_order_relaxed)) {
          l.post_release();
        }
      });
    }
    if (timeline != nullptr) {
      timeline->tick(targets);
    }
    std::this_thread::sleep_for(tick);
  }
}

// Starts every request, or, with --ramp-time, starts them, lets them run that long and then
// starts counting. Returns when counting started; each lane notes its CPU time and interrupts
// then, on its worker, in the same step in which it starts counting.
Clock::time_point start_lanes(std::vector<Target>& targets, const CommonOptions& common, const NvmeOptions& o) {
  auto begin = [&](Lane& l, std::size_t n, std::size_t w) {
    static_cast<void>(l.worker->run_sync([&] { l.begin_measuring(io_limit(common, n, w)); }));
  };
  if (o.ramp_seconds == 0) {
    for_each_lane(targets, begin);
    const auto start = Clock::now();
    for_each_lane(targets, [](Lane& l, std::size_t, std::size_t) { start_lane(l); });
    return start;
  }
  for_each_lane(targets, [](Lane& l, std::size_t, std::size_t) { start_lane(l); });
  wait_lanes(targets, o, after(Clock::now(), o.ramp_seconds));
  const auto start = Clock::now();
  for_each_lane(targets, begin);
  return start;
}

// The job of one target: what its lanes counted, and its controller's figures.
Job job_of(Target& t, const NvmeOptions& o, double seconds) {
  Job job;
  job.name = fmt::format("nvme {} nsid={} {} bs={} qd={} workers={} {}", t.bdf, t.nsid, o.rw, o.bs, o.qd, o.workers,
                         o.completion);
  job.params = {{"bdf", t.bdf}, {"rw", o.rw},           {"rwmixread", o.rwmixread}, {"bs", o.bs},
                {"qd", o.qd},   {"workers", o.workers}, {"completion", o.completion}, {"nsid", t.nsid},
                {"offset", o.offset}, {"numa_node", t.node}, {"cpus", t.cpus}, {"seed", o.seed},
                {"random_distribution", o.distribution}, {"rate", o.rate}, {"ramp_time", o.ramp_seconds},
                {"mask_interrupts", o.mask_interrupts}, {"verify", o.verify}};
  job.seconds = seconds;
  job.timeline = std::move(t.timeline);
  std::uint64_t doorbells = 0, elided = 0, requests = 0, retries = 0, irq_events = 0, mask_writes = 0;
  for (auto& l : t.lanes) {
    job.ops += l->done.load();
    job.bytes += l->bytes.load();
    job.errors += l->errors.load();
    job.latency.merge(l->latency);
    job.cpu_seconds += thread_cpu_seconds(*l->worker) - l->cpu0;  // cpu0: taken on the worker too
    if (job.first_error.empty()) {
      job.first_error = l->first_error;
    }
    const nvme::IoQueueStats& qs = l->queue->stats();
    doorbells += qs.sq_doorbells.load() + qs.cq_doorbells.load();
    elided += qs.doorbells_elided.load();
    requests += qs.requests.load();
    retries += qs.retries.load();
    mask_writes += qs.interrupt_mask_writes.load();
    irq_events += l->worker->stats().irq_events.load() - l->irq_events0;
  }
  auto per = [](std::uint64_t n, std::uint64_t d) { return d != 0 ? static_cast<double>(n) / static_cast<double>(d) : 0.0; };
  // Interrupts the workers took per I/O counted (what adaptive mode's masking saves).
  job.extra["interrupts_per_io"] = per(irq_events, job.ops);
  job.extra["mmio_writes_per_io"] = per(doorbells, requests);
  // The MSI-X mask and unmask writes of adaptive mode (not in mmio_writes_per_io, the doorbells).
  job.extra["irq_mask_writes_per_io"] = per(mask_writes, requests);
  // Doorbell updates that went to the shadow doorbell only (ControllerOptions::shadow_doorbells).
  job.extra["shadow_doorbells"] = t.ctrl->uses_shadow_doorbells();
  job.extra["doorbells_elided_per_io"] = per(elided, requests);
  job.extra["controller"] = t.ctrl->identity().model + " " + t.ctrl->identity().serial;
  // Recovery over the whole run, of the whole controller (shared by its namespaces' jobs):
  // commands too old, aborts accepted and refused, resets; and this job's requests sent again.
  job.extra["timeouts"] = t.ctrl->stats().timeouts.load();
  job.extra["aborts"] = t.ctrl->stats().aborts.load();
  job.extra["aborts_refused"] = t.ctrl->stats().aborts_refused.load();
  job.extra["resets"] = t.ctrl->stats().resets.load();
  job.extra["retries"] = retries;
  if (t.verifier) {
    std::uint64_t mismatches = 0;
    std::vector<std::uint64_t> bad;
    for (auto& l : t.lanes) {
      mismatches += l->mismatches.load();
      bad.insert(bad.end(), l->bad_lbas.begin(), l->bad_lbas.end());
    }
    job.extra["verify"] = {{"blocks_checked", t.verifier->blocks_checked()},
                           {"mismatches", mismatches},
                           {"first_bad_lbas", bad}};
  }
  return job;
}

// Runs the lanes: warm-up, then the counted part with a progress line and the timeline, then
// the stop. Returns the seconds counted.
double run_counted(std::vector<Target>& targets, const CommonOptions& common, const NvmeOptions& o,
                   std::atomic<bool>& stop) {
  const Clock::time_point start = start_lanes(targets, common, o);
  auto sum = [&](auto field) {
    std::uint64_t n = 0;
    for_each_lane(targets, [&](Lane& l, std::size_t, std::size_t) { n += (l.*field).load(std::memory_order_relaxed); });
    return n;
  };
  Progress progress(common.progress, "nvme " + o.rw, [&] { return sum(&Lane::done); },
                    [&] { return sum(&Lane::bytes); }, std::chrono::duration<double>(common.ops == 0 ? common.seconds : 0));
  Timeline timeline(start, common.ops != 0 ? 0 : common.seconds);
  wait_lanes(targets, o, common.ops != 0 ? std::nullopt : std::optional(after(start, common.seconds)), &timeline);
  stop.store(true, std::memory_order_relaxed);
  wait_lanes(targets, o, std::nullopt);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

Result<Report> run_nvme(const CommonOptions& common, const NvmeOptions& o) {
  VFE_TRY(check_options(common, o));
  VFE_TRY_ASSIGN(const auto topo, engine::Topology::create());
  std::atomic<bool> stop{false};
  // --verify: TBB keeps hardware threads - 1 workers for all arenas by default; each target's arena
  // gets threads of its own (they sleep when there is nothing to check).
  std::optional<tbb::global_control> verify_threads;
  if (o.verify) {
    const std::size_t arenas = o.bdfs.size() * o.nsids.size();
    verify_threads.emplace(tbb::global_control::max_allowed_parallelism,
                           std::max<std::size_t>(std::thread::hardware_concurrency(), 1) * (arenas + 1));
  }
  // Declared before the targets: the controllers outlive the queues made on them.
  std::vector<std::unique_ptr<nvme::Controller>> controllers;
  std::vector<Target> targets;
  targets.reserve(o.bdfs.size() * o.nsids.size());
  std::map<int, unsigned> next_cpu;
  for (const std::string& bdf : o.bdfs) {
    VFE_TRY_ASSIGN(auto ctrl, open_controller(bdf, common, o));
    controllers.push_back(std::move(ctrl));
    for (const std::uint32_t nsid : o.nsids) {
      Target& t = targets.emplace_back();
      t.ctrl = controllers.back().get();
      t.bdf = bdf;
      t.nsid = nsid;
      t.index = targets.size() - 1;
      VFE_TRY(open_target(t, o, topo, stop, next_cpu));
    }
  }
  if (o.verify) {
    VFE_TRY(make_verifiers(targets));
  }
  const double seconds = run_counted(targets, common, o, stop);
  Report report;
  report.mode = "nvme";
  for (Target& t : targets) {
    report.jobs.push_back(job_of(t, o, seconds));
  }
  return report;
}

}  // namespace vfe::bench
