// vfio-bench nic: numbered, checksummed frames from one e1000e to another for a duration, with the
// frame rate, the one-way latency of each frame, and every loss, duplicate, reordering or
// corruption counted as an error.
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <thread>

#include "bench/vfio_bench/jobs.hpp"
#include "bench/vfio_bench/progress.hpp"
#include "drivers/e1000e/loopback.hpp"
#include "drivers/e1000e/nic.hpp"
#include "engine/topology.hpp"
#include "vfio/iommu_mode.hpp"

namespace vfe::bench {
namespace {

using Clock = std::chrono::steady_clock;

void record_latency(void* ctx, std::uint64_t ns) noexcept { static_cast<Histogram*>(ctx)->record(ns); }

// The worker runs both NICs on the CPUs of the sender's NUMA node.
Result<std::unique_ptr<engine::Worker>> nic_worker(const e1000e::Nic& tx, const std::string& completion) {
  VFE_TRY_ASSIGN(const auto topo, engine::Topology::create());
  const int node = topo.device_node(tx.bdf());
  engine::WorkerOptions wo;
  wo.mode = worker_mode_of(completion);
  wo.cpus = topo.cpus_of_node(node >= 0 ? node : topo.numa_nodes().front());
  wo.name = "vfe-nic";
  return engine::Worker::start(wo);
}

void fill_job(Job& job, const e1000e::LoopbackReport& r) {
  job.seconds = r.seconds;
  job.ops = r.received;
  job.bytes = r.received_bytes;
  job.errors = r.lost + r.duplicates + r.reordered + r.corrupt + r.tx_errors + (r.counters_agree() ? 0 : 1);
  if (job.errors != 0) {
    job.first_error = fmt::format("lost {}, duplicated {}, reordered {}, corrupt {}, refused {}; device counters {}",
                                  r.lost, r.duplicates, r.reordered, r.corrupt, r.tx_errors,
                                  r.counters_agree() ? "agree" : "disagree with the driver's");
  }
  job.extra = {{"sent", r.sent},
               {"sent_bytes", r.sent_bytes},
               {"lost", r.lost},
               {"duplicates", r.duplicates},
               {"reordered", r.reordered},
               {"corrupt", r.corrupt},
               {"foreign", r.foreign},
               {"backpressure", r.backpressure},
               {"device_tx_frames", r.device_tx_frames},
               {"device_tx_bytes", r.device_tx_bytes},
               {"device_rx_frames", r.device_rx_frames},
               {"device_rx_bytes", r.device_rx_bytes},
               {"counters_agree", r.counters_agree()}};
}

}  // namespace

Result<Report> run_nic(const CommonOptions& common, const NicOptions& o) {
  VFE_TRY_ASSIGN(const auto lengths, e1000e::parse_frame_lengths(o.size));
  e1000e::NicOptions nopt;
  VFE_TRY_ASSIGN(nopt.mode, iommu_mode_of(common));
  VFE_TRY_ASSIGN(auto tx, e1000e::Nic::create(o.tx_bdf, nopt));
  VFE_TRY_ASSIGN(auto rx, e1000e::Nic::create(o.rx_bdf, nopt));
  VFE_TRY_ASSIGN(auto worker, nic_worker(*tx, o.completion));

  Job job;
  job.name = fmt::format("nic {} -> {} {} B", o.tx_bdf, o.rx_bdf, o.size);
  job.params = {{"tx", o.tx_bdf}, {"rx", o.rx_bdf}, {"size", o.size}, {"window", o.window},
                {"batch", o.batch}, {"completion", o.completion}};
  e1000e::LoopbackOptions lopt;
  lopt.frames = common.ops;  // 0: until the time is up
  lopt.min_length = lengths.first;
  lopt.max_length = lengths.second;
  lopt.window = o.window;
  lopt.batch = o.batch;
  lopt.on_latency = &record_latency;
  lopt.latency_ctx = &job.latency;  // written on the worker only, read after finish
  e1000e::Loopback run(*tx, *rx, lopt);
  const double cpu0 = process_cpu_seconds();
  Result<e1000e::LoopbackReport> rep = Error::invalid("vfio-bench nic", "not run");
  {
    Progress progress(common.progress, job.name, [&] { return run.counters().received.load(std::memory_order_relaxed); },
                      [&] { return run.counters().received_bytes.load(std::memory_order_relaxed); },
                      std::chrono::duration<double>(common.ops == 0 ? common.seconds : 0));
    VFE_TRY(run.start(*worker, completion_of(o.completion)));
    if (common.ops == 0) {  // by time; with --ios, finish waits for the count (or 2 s of silence)
      const auto end = Clock::now() + std::chrono::duration<double>(common.seconds);
      while (!run.done() && Clock::now() < end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    rep = run.finish();
  }
  VFE_TRY(rep);
  job.cpu_seconds = process_cpu_seconds() - cpu0;
  fill_job(job, *rep);
  Report report;
  report.mode = "nic";
  report.jobs.push_back(std::move(job));
  return report;
}

}  // namespace vfe::bench
