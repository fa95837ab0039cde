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
#include "bench/vfio_bench/nvme_target.hpp"
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

// What the queues, workers and the controller of a target counted, into its job's `extra`.
void add_queue_figures(Job& job, Target& t) {
  std::uint64_t doorbells = 0, elided = 0, requests = 0, retries = 0, irq_events = 0, mask_writes = 0;
  for (auto& l : t.lanes) {
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
}

// --verify's figures of a target, into its job's `extra`.
void add_verify_figures(Job& job, const Target& t) {
  std::uint64_t mismatches = 0;
  std::vector<std::uint64_t> bad;
  for (const auto& l : t.lanes) {
    mismatches += l->mismatches.load();
    bad.insert(bad.end(), l->bad_lbas.begin(), l->bad_lbas.end());
  }
  job.extra["verify"] = {{"blocks_checked", t.verifier->blocks_checked()}, {"mismatches", mismatches},
                         {"first_bad_lbas", bad}};
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
  for (auto& l : t.lanes) {
    job.ops += l->done.load();
    job.bytes += l->bytes.load();
    job.errors += l->errors.load();
    job.latency.merge(l->latency);
    job.cpu_seconds += thread_cpu_seconds(*l->worker) - l->cpu0;  // cpu0: taken on the worker too
    if (job.first_error.empty()) {
      job.first_error = l->first_error;
    }
  }
  add_queue_figures(job, t);
  if (t.verifier) {
    add_verify_figures(job, t);
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
