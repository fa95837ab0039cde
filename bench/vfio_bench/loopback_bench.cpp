// vfio-bench loopback: the engine's own cost per I/O against a software device, next to the
// kernel's cheapest I/O (io_uring NOP, batch 1 and 32) measured in the same run.
#include <fmt/format.h>
#include <liburing.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "bench/vfio_bench/jobs.hpp"
#include "bench/vfio_bench/progress.hpp"
#include "bench/vfio_bench/soft_device.hpp"
#include "engine/worker.hpp"

namespace vfe::bench {
namespace {

using Clock = std::chrono::steady_clock;

// io_uring NOPs in batches of `batch`: submit them all, wait for all, reap; one thread.
Result<Job> nop_job(const CommonOptions& common, unsigned batch) {
  io_uring ring{};
  if (const int rc = io_uring_queue_init(64, &ring, 0); rc < 0) {
    return Error::from_errno(-rc, "io_uring NOP peer", "io_uring_queue_init");
  }
  Job job;
  job.name = fmt::format("io_uring NOP, batch {}", batch);
  job.params = {{"batch", batch}};
  const double seconds = common.seconds / 4;
  const double cpu0 = process_cpu_seconds();
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  std::uint64_t ops = 0;
  while ((common.ops == 0 && Clock::now() < end) || (common.ops != 0 && ops < common.ops)) {
    for (unsigned i = 0; i < 256; ++i) {  // check the clock once per 256 batches
      for (unsigned b = 0; b < batch; ++b) {
        io_uring_prep_nop(io_uring_get_sqe(&ring));
      }
      io_uring_submit_and_wait(&ring, batch);
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0, seen = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        job.errors += cqe->res < 0 ? 1 : 0;
        ++seen;
      }
      io_uring_cq_advance(&ring, seen);
      ops += seen;
    }
  }
  job.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  job.cpu_seconds = process_cpu_seconds() - cpu0;
  job.ops = ops;
  job.extra["ns_per_op"] = job.seconds * 1e9 / static_cast<double>(ops);
  io_uring_queue_exit(&ring);
  return job;
}

// One request of the closed loop: completes on the worker and goes straight back in.
struct LoopRequest : engine::Request {
  struct Shared* shared = nullptr;
  std::uint64_t started = 0;  // now_ns() when submitted, for the sampled ones
  unsigned until_sample = 0;
};

struct Shared {
  LoopbackQueue* queue = nullptr;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> done{0};  // written by the worker only
  std::atomic<unsigned> parked{0};     // requests that came back after stop
  Histogram latency;                   // worker only
  unsigned sample = 64;
};

void on_loop_complete(engine::Request* r, int status) noexcept {
  auto* req = static_cast<LoopRequest*>(r);
  Shared& s = *req->shared;
  static_cast<void>(status);
  s.done.store(s.done.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (req->started != 0) {
    s.latency.record(now_ns() - req->started);
    req->started = 0;
  }
  if (s.stop.load(std::memory_order_relaxed)) {
    s.parked.fetch_add(1, std::memory_order_release);
    return;
  }
  if (--req->until_sample == 0) {
    req->until_sample = s.sample;
    req->started = now_ns();
  }
  static_cast<void>(s.queue->try_submit(req));  // the ring holds every request: never full
}

Result<Job> loop_job(const CommonOptions& common, const LoopbackOptions& o) {
  // The worker on the first CPU this process may use, the device thread on the second.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
    for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c) {
      if (CPU_ISSET(c, &allowed)) {
        cpus.push_back(c);
      }
    }
  }
  std::uint32_t entries = 2;
  while (entries < o.qd + 1) {
    entries <<= 1;
  }
  VFE_TRY_ASSIGN(auto device, SoftDevice::start(entries, o.completion != "poll", cpus.size() > 1 ? cpus[1] : -1));
  engine::WorkerOptions wo;
  wo.mode = worker_mode_of(o.completion);
  if (!cpus.empty()) {
    wo.cpus = {cpus[0]};
  }
  wo.name = "vfe-loopback";
  VFE_TRY_ASSIGN(auto worker, engine::Worker::start(wo));
  Shared shared;
  shared.sample = std::max(1U, o.latency_sample);
  LoopbackQueue queue(*device, 2 * entries);
  shared.queue = &queue;
  VFE_TRY(queue.attach(*worker, completion_of(o.completion), device->eventfd()));
  std::vector<LoopRequest> reqs(o.qd);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].on_complete = on_loop_complete;
    reqs[i].shared = &shared;
    reqs[i].until_sample = 1 + static_cast<unsigned>(i % shared.sample);
  }
  const double cpu0 = process_cpu_seconds();
  const auto start = Clock::now();
  {
    Progress progress(common.progress, "loopback", [&] { return shared.done.load(std::memory_order_relaxed); },
                      [] { return std::uint64_t{0}; }, std::chrono::duration<double>(common.ops == 0 ? common.seconds : 0));
    for (auto& r : reqs) {
      static_cast<void>(queue.try_submit(&r));
    }
    const auto end = start + std::chrono::duration<double>(common.seconds);
    while (common.ops == 0 ? Clock::now() < end : shared.done.load(std::memory_order_relaxed) < common.ops) {
      std::this_thread::sleep_for(std::chrono::milliseconds(common.ops == 0 ? 10 : 1));
    }
    shared.stop.store(true, std::memory_order_relaxed);
    while (shared.parked.load(std::memory_order_acquire) < o.qd) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  Job job;
  job.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  job.cpu_seconds = process_cpu_seconds() - cpu0;
  VFE_TRY(queue.detach());
  job.name = fmt::format("engine loopback, {} completion, queue depth {}", o.completion, o.qd);
  job.params = {{"qd", o.qd}, {"completion", o.completion}, {"latency_sample", shared.sample}};
  job.ops = shared.done.load();
  job.latency = shared.latency;  // the worker is done with it (detached above)
  job.extra["ns_per_io"] = job.seconds * 1e9 / static_cast<double>(job.ops);
  job.extra["mmio_writes_per_io"] = static_cast<double>(queue.doorbells()) / static_cast<double>(job.ops);
  if (o.completion != "poll") {
    job.extra["interrupts_per_io"] = static_cast<double>(device->interrupts()) / static_cast<double>(job.ops);
  }
  return job;
}

}  // namespace

Result<Report> run_loopback(const CommonOptions& common, const LoopbackOptions& options) {
  if (options.qd == 0 || options.qd > 4096) {
    return Error::invalid("vfio-bench loopback", "--qd must be 1 to 4096");
  }
  Report report;
  report.mode = "loopback";
  VFE_TRY_ASSIGN(Job nop1, nop_job(common, 1));
  VFE_TRY_ASSIGN(Job nop32, nop_job(common, 32));
  VFE_TRY_ASSIGN(Job loop, loop_job(common, options));
  const double ours = loop.extra["ns_per_io"].get<double>();
  const double n1 = nop1.extra["ns_per_op"].get<double>();
  const double n32 = nop32.extra["ns_per_op"].get<double>();
  report.comparison = {{"engine_ns_per_io", ours},           {"io_uring_nop_ns_batch1", n1},
                       {"io_uring_nop_ns_batch32", n32},     {"ratio_to_nop_batch1", ours / n1},
                       {"ratio_to_nop_batch32", ours / n32}};
  report.notes.push_back(fmt::format("engine loopback: {:.1f} ns per I/O = {:.2f}x io_uring NOP at batch 32 "
                                     "({:.1f} ns), {:.2f}x at batch 1 ({:.1f} ns)",
                                     ours, ours / n32, n32, ours / n1, n1));
  report.jobs.push_back(std::move(nop1));
  report.jobs.push_back(std::move(nop32));
  report.jobs.push_back(std::move(loop));
  return report;
}

}  // namespace vfe::bench
