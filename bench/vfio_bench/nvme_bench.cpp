// vfio-bench nvme: fio-style I/O on one or several NVMe controllers through drivers/nvme. Each
// worker owns one I/O queue and keeps --qd requests in flight (nvme_lane.hpp).
#include <fmt/format.h>
#include <time.h>

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
struct Target {
  std::unique_ptr<nvme::Controller> ctrl;  // first member: destroyed last
  std::vector<std::unique_ptr<Lane>> lanes;
  int node = -1;
  std::vector<int> cpus;
};

Result<void> check_options(const CommonOptions& common, const NvmeOptions& o) {
  if (o.bdfs.empty()) {
    return Error::invalid("vfio-bench nvme", "name at least one controller (BDF)");
  }
  if (o.bs == 0 || o.qd == 0 || o.workers == 0) {
    return Error::invalid("vfio-bench nvme", "--bs, --qd and --workers must be positive");
  }
  if (o.rate < 0 || o.ramp_seconds < 0) {
    return Error::invalid("vfio-bench nvme", "--rate and --ramp-time must not be negative");
  }
  if (o.ramp_seconds > 0 && common.ops != 0) {
    return Error::invalid("vfio-bench nvme", "--ramp-time goes with --time, not --ios (requests started while "
                                             "warming up would blur the count)");
  }
  VFE_TRY(parse_distribution(o.distribution));
  return ok();
}

// Opens the controller, and makes each lane: a worker pinned on the controller's node, a queue,
// a buffer of qd x bs on that node, and the requests.
Result<void> open_target(Target& t, const std::string& bdf, const CommonOptions& common, const NvmeOptions& o,
                         const engine::Topology& topo, std::atomic<bool>& stop, std::map<int, unsigned>& next_cpu) {
  nvme::ControllerOptions copt;
  VFE_TRY_ASSIGN(copt.mode, iommu_mode_of(common));
  copt.io_queues = o.workers;
  copt.shadow_doorbells = o.shadow_doorbells;
  copt.mask_interrupts_while_polling = o.mask_interrupts;
  VFE_TRY_ASSIGN(t.ctrl, nvme::Controller::create(bdf, copt));
  const nvme::NamespaceInfo* ns = t.ctrl->find_namespace(o.nsid);
  if (ns == nullptr) {
    return Error::invalid("vfio-bench nvme", fmt::format("{}: namespace {} is not active", bdf, o.nsid));
  }
  if (ns->metadata_bytes != 0) {
    return Error::not_supported("vfio-bench nvme", fmt::format("{}: namespace {} is formatted with {} bytes of "
                                                               "metadata per block, which drivers/nvme does not support",
                                                               bdf, o.nsid, ns->metadata_bytes));
  }
  const std::uint64_t bsz = ns->block_size;
  const std::uint64_t size = o.size != 0 ? o.size : (o.offset < ns->size_bytes() ? ns->size_bytes() - o.offset : 0);
  if (o.bs % bsz != 0 || o.offset % bsz != 0 || o.offset + size > ns->size_bytes() || size < o.bs * o.workers) {
    return Error::invalid("vfio-bench nvme",
                          fmt::format("{}: --bs {} and --offset {} must be multiples of the {}-byte block, and "
                                      "--offset + --size within the {} bytes of namespace {} with room for one "
                                      "--bs per worker", bdf, o.bs, o.offset, bsz, ns->size_bytes(), o.nsid));
  }
  VFE_TRY_ASSIGN(auto dev_bdf, vfio::Bdf::parse(bdf));
  t.node = topo.device_node(dev_bdf);
  const int cpu_node = t.node >= 0 ? t.node : topo.numa_nodes().front();
  t.cpus = topo.cpus_near_node(cpu_node);
  if (t.cpus.empty()) {
    t.cpus = {0};
  }
  const bool random = o.rw.rfind("rand", 0) == 0;
  const std::uint64_t blocks = size / bsz;
  VFE_TRY_ASSIGN(const Distribution distribution, parse_distribution(o.distribution));
  unsigned& cpu_turn = next_cpu[cpu_node];  // controllers on one node take turns over its CPUs
  for (unsigned w = 0; w < o.workers; ++w) {
    auto lane = std::make_unique<Lane>();
    lane->random = random;
    lane->read_percent = o.rw == "read" || o.rw == "randread" ? 100 : o.rw == "write" || o.rw == "randwrite" ? 0 : o.rwmixread;
    lane->bs_blocks = o.bs / bsz;
    // Sequential lanes each stream through their own share of the region; random ones roam it all.
    lane->first_block = o.offset / bsz + (random ? 0 : blocks / o.workers * w);
    lane->blocks = random ? blocks : blocks / o.workers;
    lane->picker.emplace(distribution, lane->blocks / lane->bs_blocks, o.seed + w);
    if (o.rate > 0) {
      // This lane's share. The bucket holds 10 ms of it: held requests go when the pacer wakes
      // (every 200 us asked, later on a loaded machine), and a bucket smaller than the time
      // between wake-ups would lower the rate below the cap.
      const double share = o.rate / o.workers;
      lane->rate.emplace(share, static_cast<std::uint64_t>(std::ceil(share / 100)));
    }
    lane->measuring = o.ramp_seconds == 0;
    lane->held.reserve(o.qd);
    lane->stop = &stop;
    engine::WorkerOptions wo;
    wo.mode = worker_mode_of(o.completion);
    wo.cpus = {t.cpus[cpu_turn++ % t.cpus.size()]};
    wo.name = fmt::format("vfe-bench-{}", w);
    VFE_TRY_ASSIGN(lane->worker, engine::Worker::start(wo));
    VFE_TRY_ASSIGN(auto buf, dma::DmaBuffer::allocate(t.ctrl->dma_space(), o.bs * o.qd, {.hugepages = true, .numa_node = t.node}));
    lane->buffer.emplace(std::move(buf));
    std::memset(lane->buffer->data(), 0xa5, lane->buffer->size());
    for (std::uint32_t k = 0; k < o.qd; ++k) {
      auto io = std::make_unique<BenchIo>();
      io->lane = lane.get();
      io->on_complete = on_bench_io_complete;
      io->nsid = o.nsid;
      io->segment = {lane->buffer->iova_at(std::uint64_t{k} * o.bs), o.bs};
      lane->ios.push_back(std::move(io));
    }
    VFE_TRY_ASSIGN(lane->queue,
                   t.ctrl->create_io_queue(*lane->worker, {.entries = o.qd + 1,
                                                           .completion = completion_of(o.completion),
                                                           .numa_node = t.node,
                                                           .submission_capacity = std::max<std::size_t>(1024, 2 * o.qd)}));
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
// the requests the limiter held go every 200 us.
void wait_lanes(std::vector<Target>& targets, const NvmeOptions& o, std::optional<Clock::time_point> until) {
  const auto tick = o.rate > 0 ? std::chrono::microseconds(200) : std::chrono::microseconds(2000);
  while (!all_parked(targets, o.qd) && (!until || Clock::now() < *until)) {
    if (o.rate > 0) {
      for_each_lane(targets, [](Lane& l, std::size_t, std::size_t) { l.post_release(); });
    }
    std::this_thread::sleep_for(tick);
  }
}

// Starts every request, or, with --ramp-time, starts them, lets them run that long and then
// starts counting. Calls `mark` when counting starts.
template <class Mark>
void start_lanes(std::vector<Target>& targets, const CommonOptions& common, const NvmeOptions& o, Mark mark) {
  if (o.ramp_seconds == 0) {
    for_each_lane(targets, [&](Lane& l, std::size_t n, std::size_t w) { l.limit = io_limit(common, n, w); });
    mark();
    for_each_lane(targets, [](Lane& l, std::size_t, std::size_t) { start_lane(l); });
    return;
  }
  for_each_lane(targets, [](Lane& l, std::size_t, std::size_t) { start_lane(l); });
  wait_lanes(targets, o, after(Clock::now(), o.ramp_seconds));
  for_each_lane(targets, [&](Lane& l, std::size_t n, std::size_t w) {
    static_cast<void>(l.worker->run_sync([&] { l.begin_measuring(io_limit(common, n, w)); }));
  });
  mark();
}

}  // namespace

Result<Report> run_nvme(const CommonOptions& common, const NvmeOptions& o) {
  VFE_TRY(check_options(common, o));
  VFE_TRY_ASSIGN(const auto topo, engine::Topology::create());
  std::atomic<bool> stop{false};
  std::vector<Target> targets(o.bdfs.size());
  std::map<int, unsigned> next_cpu;
  for (std::size_t i = 0; i < o.bdfs.size(); ++i) {
    VFE_TRY(open_target(targets[i], o.bdfs[i], common, o, topo, stop, next_cpu));
  }
  std::vector<double> cpu0;
  Clock::time_point start;
  start_lanes(targets, common, o, [&] {
    for_each_lane(targets, [&](Lane& l, std::size_t, std::size_t) {
      cpu0.push_back(thread_cpu_seconds(*l.worker));
      l.irq_events0 = l.worker->stats().irq_events.load();
    });
    start = Clock::now();
  });
  {
    auto sum = [&](auto field) {
      std::uint64_t n = 0;
      for_each_lane(targets, [&](Lane& l, std::size_t, std::size_t) { n += (l.*field).load(std::memory_order_relaxed); });
      return n;
    };
    Progress progress(common.progress, "nvme " + o.rw, [&] { return sum(&Lane::done); },
                      [&] { return sum(&Lane::bytes); }, std::chrono::duration<double>(common.ops == 0 ? common.seconds : 0));
    wait_lanes(targets, o, common.ops != 0 ? std::nullopt : std::optional(after(start, common.seconds)));
    stop.store(true, std::memory_order_relaxed);
    wait_lanes(targets, o, std::nullopt);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  Report report;
  report.mode = "nvme";
  std::size_t lane_index = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    Target& t = targets[i];
    Job job;
    job.name = fmt::format("nvme {} {} bs={} qd={} workers={} {}", o.bdfs[i], o.rw, o.bs, o.qd, o.workers, o.completion);
    job.params = {{"bdf", o.bdfs[i]}, {"rw", o.rw},           {"rwmixread", o.rwmixread}, {"bs", o.bs},
                  {"qd", o.qd},       {"workers", o.workers}, {"completion", o.completion}, {"nsid", o.nsid},
                  {"offset", o.offset}, {"numa_node", t.node}, {"cpus", t.cpus}, {"seed", o.seed},
                  {"random_distribution", o.distribution}, {"rate", o.rate}, {"ramp_time", o.ramp_seconds},
                  {"mask_interrupts", o.mask_interrupts}};
    job.seconds = seconds;
    std::uint64_t doorbells = 0, elided = 0, requests = 0, retries = 0, irq_events = 0;
    for (auto& l : t.lanes) {
      job.ops += l->done.load();
      job.bytes += l->bytes.load();
      job.errors += l->errors.load();
      job.latency.merge(l->latency);
      job.cpu_seconds += thread_cpu_seconds(*l->worker) - cpu0[lane_index++];
      if (job.first_error.empty()) {
        job.first_error = l->first_error;
      }
      doorbells += l->queue->stats().sq_doorbells.load() + l->queue->stats().cq_doorbells.load();
      elided += l->queue->stats().doorbells_elided.load();
      requests += l->queue->stats().requests.load();
      retries += l->queue->stats().retries.load();
      irq_events += l->worker->stats().irq_events.load() - l->irq_events0;
    }
    // Interrupts the workers took per I/O counted (what adaptive mode's masking saves).
    job.extra["interrupts_per_io"] = job.ops != 0 ? static_cast<double>(irq_events) / static_cast<double>(job.ops) : 0.0;
    job.extra["mmio_writes_per_io"] = requests != 0 ? static_cast<double>(doorbells) / static_cast<double>(requests) : 0.0;
    // Doorbell updates that went to the shadow doorbell only (ControllerOptions::shadow_doorbells).
    job.extra["shadow_doorbells"] = t.ctrl->uses_shadow_doorbells();
    job.extra["doorbells_elided_per_io"] =
        requests != 0 ? static_cast<double>(elided) / static_cast<double>(requests) : 0.0;
    job.extra["controller"] = t.ctrl->identity().model + " " + t.ctrl->identity().serial;
    // Recovery (whole run): commands too old, aborts accepted and refused, resets, requests sent again.
    job.extra["timeouts"] = t.ctrl->stats().timeouts.load();
    job.extra["aborts"] = t.ctrl->stats().aborts.load();
    job.extra["aborts_refused"] = t.ctrl->stats().aborts_refused.load();
    job.extra["resets"] = t.ctrl->stats().resets.load();
    job.extra["retries"] = retries;
    report.jobs.push_back(std::move(job));
  }
  return report;
}

}  // namespace vfe::bench
