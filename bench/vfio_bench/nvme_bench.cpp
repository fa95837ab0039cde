// vfio-bench nvme: fio-style I/O on one or several NVMe controllers through drivers/nvme. Each
// worker owns one I/O queue and keeps --qd requests in flight: a request that completes is
// timed, counted and sent again from its completion callback, on the worker, without leaving it.
#include <fmt/format.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "bench/vfio_bench/jobs.hpp"
#include "bench/vfio_bench/progress.hpp"
#include "drivers/nvme/controller.hpp"
#include "engine/topology.hpp"
#include "engine/worker.hpp"
#include "vfio/iommu_mode.hpp"

namespace vfe::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Lane;

struct BenchIo : nvme::IoRequest {
  Lane* lane = nullptr;
  std::uint64_t started = 0;
  nvme::DataSegment segment;
};

// One worker with its queue and requests. Everything but the atomics is touched by the worker
// only while the run lasts.
struct Lane {
  bool random = false;
  unsigned read_percent = 100;
  std::uint64_t first_block = 0, blocks = 0, bs_blocks = 0, next_seq = 0;
  std::uint64_t limit = ~0ULL, issued = 0;  // I/Os to start in all (with --ios)
  std::uint64_t rng = 0x9e3779b97f4a7c15ULL;
  std::atomic<bool>* stop = nullptr;
  Histogram latency;
  std::atomic<std::uint64_t> done{0}, bytes{0}, errors{0};
  std::atomic<unsigned> parked{0};
  std::string first_error;
  std::unique_ptr<engine::Worker> worker;  // declared before the queue and buffers: goes last
  std::optional<dma::DmaBuffer> buffer;
  std::vector<std::unique_ptr<BenchIo>> ios;
  std::unique_ptr<nvme::IoQueue> queue;

  std::uint64_t next_random() noexcept {  // xorshift64
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }
  // Chooses the next I/O of `io`: read or write, and where.
  void aim(BenchIo& io) noexcept {
    const bool read = read_percent == 100 || (read_percent != 0 && next_random() % 100 < read_percent);
    io.opcode = read ? nvme::IoOpcode::read : nvme::IoOpcode::write;
    const std::uint64_t slots = blocks / bs_blocks;
    const std::uint64_t slot = random ? next_random() % slots : next_seq++ % slots;
    io.lba = first_block + slot * bs_blocks;
    io.blocks = bs_blocks;
    io.data = {&io.segment, 1};
    ++issued;
  }
};

void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

void on_io_complete(engine::Request* r, int status) noexcept {
  auto& io = *static_cast<BenchIo*>(r);
  Lane& lane = *io.lane;
  lane.latency.record(now_ns() - io.started);
  bump(lane.done);
  if (status != 0) {
    if (lane.errors.load(std::memory_order_relaxed) == 0) {
      lane.first_error = fmt::format("{} at LBA {}: {} ({})", io.opcode == nvme::IoOpcode::read ? "read" : "write",
                                     io.lba, std::strerror(-status), nvme::to_string(io.status));
    }
    bump(lane.errors);
  } else {
    bump(lane.bytes, io.segment.length);
  }
  if (lane.stop->load(std::memory_order_relaxed) || lane.issued >= lane.limit || status != 0) {
    lane.parked.fetch_add(1, std::memory_order_release);
    return;
  }
  lane.aim(io);
  io.started = now_ns();
  if (const int rc = lane.queue->submit(io); rc != 0) {  // the ring holds 2 x qd: only a failure
    if (lane.errors.load(std::memory_order_relaxed) == 0) {
      lane.first_error = fmt::format("submit refused: {}", std::strerror(-rc));
    }
    bump(lane.errors);
    lane.parked.fetch_add(1, std::memory_order_release);
  }
}

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

Result<void> check_options(const NvmeOptions& o) {
  if (o.bdfs.empty()) {
    return Error::invalid("vfio-bench nvme", "name at least one controller (BDF)");
  }
  if (o.bs == 0 || o.qd == 0 || o.workers == 0) {
    return Error::invalid("vfio-bench nvme", "--bs, --qd and --workers must be positive");
  }
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
  unsigned& cpu_turn = next_cpu[cpu_node];  // controllers on one node take turns over its CPUs
  for (unsigned w = 0; w < o.workers; ++w) {
    auto lane = std::make_unique<Lane>();
    lane->random = random;
    lane->read_percent = o.rw == "read" || o.rw == "randread" ? 100 : o.rw == "write" || o.rw == "randwrite" ? 0 : o.rwmixread;
    lane->bs_blocks = o.bs / bsz;
    // Sequential lanes each stream through their own share of the region; random ones roam it all.
    lane->first_block = o.offset / bsz + (random ? 0 : blocks / o.workers * w);
    lane->blocks = random ? blocks : blocks / o.workers;
    lane->rng ^= (w + 1) * 0x2545f4914f6cdd1dULL;
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
      io->on_complete = on_io_complete;
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

// The first round of a lane's requests, on its worker (the only thread that aims requests). A
// request the queue refuses is parked and counted as an error.
void start_lane(Lane& l) {
  static_cast<void>(l.worker->run_sync([&l] {
    for (auto& io : l.ios) {
      if (l.issued >= l.limit) {
        l.parked.fetch_add(1, std::memory_order_release);
        continue;
      }
      l.aim(*io);
      io->started = now_ns();
      if (const int rc = l.queue->submit(*io); rc != 0) {
        if (l.errors.load(std::memory_order_relaxed) == 0) {
          l.first_error = fmt::format("submit refused: {}", std::strerror(-rc));
        }
        bump(l.errors);
        l.parked.fetch_add(1, std::memory_order_release);
      }
    }
  }));
}

// Starts every request, waits for the time (or count), stops, and waits for all to come back.
// With --ios, each controller (job) does that many, shared among its workers.
void run_lanes(std::vector<Target>& targets, const CommonOptions& common, std::atomic<bool>& stop, const NvmeOptions& o) {
  for (auto& t : targets) {
    for (std::size_t w = 0; w < t.lanes.size(); ++w) {
      Lane& l = *t.lanes[w];
      if (common.ops != 0) {
        l.limit = common.ops / t.lanes.size() + (w < common.ops % t.lanes.size() ? 1 : 0);
      }
      start_lane(l);
    }
  }
  auto all_parked = [&] {
    for (auto& t : targets) {
      for (auto& l : t.lanes) {
        if (l->parked.load(std::memory_order_acquire) < o.qd) {
          return false;
        }
      }
    }
    return true;
  };
  const auto end = Clock::now() + std::chrono::duration<double>(common.seconds);
  while (!all_parked() && (common.ops != 0 || Clock::now() < end)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop.store(true, std::memory_order_relaxed);
  while (!all_parked()) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace

Result<Report> run_nvme(const CommonOptions& common, const NvmeOptions& o) {
  VFE_TRY(check_options(o));
  VFE_TRY_ASSIGN(const auto topo, engine::Topology::create());
  std::atomic<bool> stop{false};
  std::vector<Target> targets(o.bdfs.size());
  std::map<int, unsigned> next_cpu;
  for (std::size_t i = 0; i < o.bdfs.size(); ++i) {
    VFE_TRY(open_target(targets[i], o.bdfs[i], common, o, topo, stop, next_cpu));
  }
  std::vector<double> cpu0;
  for (auto& t : targets) {
    for (auto& l : t.lanes) {
      cpu0.push_back(thread_cpu_seconds(*l->worker));
    }
  }
  const auto start = Clock::now();
  {
    auto sum = [&](auto field) {
      std::uint64_t n = 0;
      for (auto& t : targets) {
        for (auto& l : t.lanes) {
          n += ((*l).*field).load(std::memory_order_relaxed);
        }
      }
      return n;
    };
    Progress progress(common.progress, "nvme " + o.rw, [&] { return sum(&Lane::done); },
                      [&] { return sum(&Lane::bytes); }, std::chrono::duration<double>(common.ops == 0 ? common.seconds : 0));
    run_lanes(targets, common, stop, o);
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
                  {"offset", o.offset}, {"numa_node", t.node}, {"cpus", t.cpus}};
    job.seconds = seconds;
    std::uint64_t doorbells = 0, elided = 0, requests = 0, retries = 0;
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
    }
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
