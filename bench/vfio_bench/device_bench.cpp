// vfio-bench mmio, irq and dma: the three paths a driver takes to a device besides its queues.
#include <fmt/format.h>
#include <linux/vfio.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "bench/vfio_bench/jobs.hpp"
#include "bench/vfio_bench/progress.hpp"
#include "dma/dma_buffer.hpp"
#include "dma/dma_space.hpp"
#include "dma/host_memory.hpp"
#include "engine/topology.hpp"
#include "engine/worker.hpp"
#include "irq/irq_set.hpp"
#include "mmio/config_space.hpp"
#include "mmio/region.hpp"
#include "vfio/device.hpp"
#include "vfio/iommu_mode.hpp"

namespace vfe::bench {
namespace {

using Clock = std::chrono::steady_clock;

Result<vfio::Device> open_device(const std::string& bdf, const CommonOptions& common) {
  vfio::DeviceOptions opts;
  VFE_TRY_ASSIGN(opts.mode, iommu_mode_of(common));
  return vfio::Device::open(bdf, opts);
}

// Runs `op` (which returns true on success) until the job's time or count is used up.
// `abort` (optional) ends the loop early once set by `op`.
template <class Op>
void timed_loop(Job& job, const CommonOptions& common, double seconds, Op op, const bool* abort = nullptr) {
  std::atomic<std::uint64_t> done{0};
  Progress progress(common.progress, job.name, [&] { return done.load(std::memory_order_relaxed); },
                    [] { return std::uint64_t{0}; }, std::chrono::duration<double>(common.ops == 0 ? seconds : 0));
  const double cpu0 = process_cpu_seconds();
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  while ((common.ops != 0 ? job.ops < common.ops : Clock::now() < end) && (abort == nullptr || !*abort)) {
    const std::uint64_t t0 = now_ns();
    const bool good = op();
    job.latency.record(now_ns() - t0);
    ++job.ops;
    job.errors += good ? 0 : 1;
    done.store(job.ops, std::memory_order_relaxed);
  }
  job.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  job.cpu_seconds = process_cpu_seconds() - cpu0;
}

std::string size_name(std::uint64_t bytes) {
  if (bytes >= (1ULL << 30) && bytes % (1ULL << 30) == 0) {
    return fmt::format("{} GiB", bytes >> 30);
  }
  if (bytes >= (1ULL << 20) && bytes % (1ULL << 20) == 0) {
    return fmt::format("{} MiB", bytes >> 20);
  }
  return bytes % 1024 == 0 ? fmt::format("{} KiB", bytes >> 10) : fmt::format("{} B", bytes);
}

}  // namespace

Result<Report> run_mmio(const CommonOptions& common, const MmioOptions& o) {
  VFE_TRY_ASSIGN(auto dev, open_device(o.bdf, common));
  VFE_TRY_ASSIGN(auto bar, mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX + o.bar));
  const unsigned bytes = o.width / 8;
  if (o.offset % bytes != 0 || o.offset + bytes > bar.size()) {
    return Error::invalid("vfio-bench mmio", fmt::format("offset {:#x} is not a {}-bit aligned register inside BAR{} "
                                                         "({} bytes)", o.offset, o.width, o.bar, bar.size()));
  }
  Job job;
  job.name = fmt::format("mmio {} BAR{} {:#x} {}{}", o.bdf, o.bar, o.offset, o.write ? "write" : "read", o.width);
  job.params = {{"bdf", o.bdf}, {"bar", o.bar}, {"offset", o.offset}, {"width", o.width}, {"write", o.write}};
  std::uint64_t last = 0;
  timed_loop(job, common, common.seconds, [&] {
    if (o.write) {
      switch (o.width) {
        case 8: bar.write8(o.offset, static_cast<std::uint8_t>(o.value)); break;
        case 16: bar.write16(o.offset, static_cast<std::uint16_t>(o.value)); break;
        case 32: bar.write32(o.offset, static_cast<std::uint32_t>(o.value)); break;
        default: bar.write64(o.offset, o.value); break;
      }
    } else {
      last = o.width == 8 ? bar.read8(o.offset) : o.width == 16 ? bar.read16(o.offset)
           : o.width == 32 ? bar.read32(o.offset) : bar.read64(o.offset);
    }
    return true;
  });
  job.bytes = job.ops * bytes;
  job.extra["mapped"] = bar.is_mapped(o.offset, bytes);  // false: every access is a pread/pwrite
  if (!o.write) {
    job.extra["value"] = fmt::format("{:#x}", last);
  }
  Report report;
  report.mode = "mmio";
  report.jobs.push_back(std::move(job));
  return report;
}

Result<Report> run_irq(const CommonOptions& common, const IrqOptions& o) {
  VFE_TRY_ASSIGN(auto dev, open_device(o.bdf, common));
  VFE_TRY_ASSIGN(const auto msix, dev.irq_info(VFIO_PCI_MSIX_IRQ_INDEX));
  const irq::IrqIndex index = msix.count != 0 ? irq::IrqIndex::msix : irq::IrqIndex::msi;
  VFE_TRY_ASSIGN(auto irqs, irq::IrqSet::enable(dev, index, o.vectors));
  VFE_TRY_ASSIGN(const auto topo, engine::Topology::create());
  const int node = topo.device_node(dev.bdf());
  std::vector<int> cpus = topo.cpus_of_node(node >= 0 ? node : topo.numa_nodes().front());
  if (cpus.empty()) {
    cpus = {0};
  }
  struct Vector {
    std::unique_ptr<engine::Worker> worker;
    std::atomic<std::uint64_t> triggered_at{0};
    std::atomic<std::uint64_t> delivered{0};
    Histogram latency;  // written by the worker, read after unwatch
  };
  std::vector<std::unique_ptr<Vector>> vecs;
  for (unsigned v = 0; v < o.vectors; ++v) {
    auto vec = std::make_unique<Vector>();
    engine::WorkerOptions wo;
    wo.mode = o.completion == "poll" ? engine::WorkerMode::polling : engine::WorkerMode::interrupt;
    wo.cpus = {cpus[v % cpus.size()]};
    wo.name = fmt::format("vfe-irq-{}", v);
    VFE_TRY_ASSIGN(vec->worker, engine::Worker::start(wo));
    Vector* p = vec.get();
    VFE_TRY(vec->worker->watch(irqs.eventfd(v), [p](std::uint64_t count) {
      p->latency.record(now_ns() - p->triggered_at.load(std::memory_order_acquire));
      p->delivered.fetch_add(count, std::memory_order_release);
    }));
    vecs.push_back(std::move(vec));
  }
  // Ping-pong: trigger a vector, wait until its handler ran, next vector.
  Job total;
  total.name = "irq (all vectors)";
  std::string lost;
  bool dead = false;
  std::uint64_t expected_total = 0;
  timed_loop(total, common, common.seconds, [&] {
    const unsigned v = static_cast<unsigned>(total.ops % o.vectors);
    Vector& vec = *vecs[v];
    const std::uint64_t before = vec.delivered.load(std::memory_order_acquire);
    vec.triggered_at.store(now_ns(), std::memory_order_release);
    if (auto r = irqs.trigger(v); !r) {
      lost = r.error().message();
      dead = true;
      return false;
    }
    ++expected_total;
    const auto give_up = Clock::now() + std::chrono::seconds(2);
    while (vec.delivered.load(std::memory_order_acquire) == before) {
      if (Clock::now() > give_up) {
        lost = fmt::format("vector {} was triggered but its handler did not run within 2 s", v);
        dead = true;  // stop at the first loss: each would cost 2 s more
        return false;
      }
    }
    return true;
  }, &dead);
  Report report;
  report.mode = "irq";
  for (unsigned v = 0; v < o.vectors; ++v) {
    VFE_TRY(vecs[v]->worker->unwatch(irqs.eventfd(v)));
    Job job;
    job.name = fmt::format("irq {} {} vector {} on CPU {} ({} worker)", o.bdf, irq::to_string(index), v,
                           cpus[v % cpus.size()], o.completion);
    job.params = {{"bdf", o.bdf}, {"index", irq::to_string(index)}, {"vector", v}, {"completion", o.completion}};
    job.seconds = total.seconds;
    job.ops = vecs[v]->delivered.load();
    job.latency = vecs[v]->latency;
    job.cpu_seconds = total.cpu_seconds * static_cast<double>(job.ops) / static_cast<double>(std::max<std::uint64_t>(1, total.ops));
    report.jobs.push_back(std::move(job));
  }
  total.first_error = lost;
  total.params = {{"bdf", o.bdf}, {"vectors", o.vectors}, {"completion", o.completion}};
  total.extra["triggered"] = expected_total;
  report.jobs.insert(report.jobs.begin(), std::move(total));
  return report;
}

namespace {

// edu (QEMU docs/specs/edu.rst): DMA registers, its 4 KiB buffer at 0x40000, 28-bit reach.
constexpr std::uint64_t kEduSrc = 0x80, kEduDst = 0x88, kEduCount = 0x90, kEduCmd = 0x98, kEduBuffer = 0x40000;
constexpr std::uint32_t kEduStart = 1, kEduToRam = 2;
constexpr std::uint64_t kEduBytes = 4000;  // QEMU 7.2 aborts on a DMA that ends at the buffer's end

Result<Job> edu_job(const CommonOptions& common, vfio::Device& dev) {
  VFE_TRY_ASSIGN(auto config, mmio::ConfigSpace::open(dev));
  VFE_TRY_ASSIGN(const std::uint32_t ids, config.read32(0));
  if (ids != 0x11e81234) {
    return Error::invalid("vfio-bench dma --edu", fmt::format("{} is {:04x}:{:04x}, not QEMU's edu (1234:11e8)",
                                                              dev.bdf().to_string(), ids & 0xffff, ids >> 16));
  }
  VFE_TRY(config.enable_bus_master());
  VFE_TRY_ASSIGN(auto bar, mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX));
  VFE_TRY_ASSIGN(auto space, dma::DmaSpace::create(dev.shared_backend(), 28));
  VFE_TRY_ASSIGN(auto buf, dma::DmaBuffer::allocate(*space, 4096));
  Job job;
  job.name = fmt::format("edu DMA copy {} -> device -> memory, {} bytes", dev.bdf().to_string(), kEduBytes);
  auto run = [&](std::uint64_t src, std::uint64_t dst, std::uint32_t cmd) {
    bar.write64(kEduSrc, src);
    bar.write64(kEduDst, dst);
    bar.write64(kEduCount, kEduBytes);
    bar.write32_db(kEduCmd, cmd | kEduStart);
    const auto give_up = Clock::now() + std::chrono::seconds(5);
    while ((bar.read32(kEduCmd) & kEduStart) != 0) {
      if (Clock::now() > give_up) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return true;
  };
  const std::uint64_t iova = dma::to_u64(buf.iova());
  const double seconds = std::max(1.0, common.seconds / 2);
  timed_loop(job, common, seconds, [&] { return run(iova, kEduBuffer, 0) && run(kEduBuffer, iova, kEduToRam); });
  job.bytes = job.ops * 2 * kEduBytes;
  if (job.errors != 0) {
    job.first_error = "an edu DMA did not finish within 5 s";
  }
  return job;
}

}  // namespace

Result<Report> run_dma(const CommonOptions& common, const DmaOptions& o) {
  if (o.sizes.empty()) {
    return Error::invalid("vfio-bench dma", "--sizes is empty");
  }
  VFE_TRY_ASSIGN(auto dev, open_device(o.bdf, common));
  Report report;
  report.mode = "dma";
  {
    VFE_TRY_ASSIGN(auto space, dma::DmaSpace::create(dev.shared_backend()));
    const double per_size = common.seconds / static_cast<double>(o.sizes.size());
    for (const std::uint64_t size : o.sizes) {
      if (space->backend().chooses_iova() && size > (2U << 20)) {
        return Error::not_supported("vfio-bench dma",
                                    fmt::format("no-IOMMU mode maps only physically contiguous memory, one 2 MiB "
                                                "hugepage at most; leave {} out of --sizes", size_name(size)));
      }
      // Without an IOMMU only hugepage memory maps: the space's options say so.
      auto mem = dma::HostMemory::allocate(size, space->memory_options({.hugepages = size >= (2U << 20), .numa_node = -1}));
      if (!mem) {
        return Error::from_errno(ENOMEM, "vfio-bench dma",
                                 fmt::format("cannot allocate {} to map: {}; leave that size out of --sizes",
                                             size_name(size), mem.error().message()));
      }
      Job map_job;
      map_job.name = fmt::format("dma map+unmap {} on {}", size_name(size), o.bdf);
      map_job.params = {{"bdf", o.bdf}, {"size", size}};
      Histogram unmap_latency;
      timed_loop(map_job, common, per_size, [&] {
        auto iova = space->map(mem->data(), size);
        if (!iova) {
          if (map_job.first_error.empty()) {
            map_job.first_error = iova.error().message();
          }
          return false;
        }
        const std::uint64_t t = now_ns();
        const bool good = static_cast<bool>(space->unmap(mem->data(), size));
        unmap_latency.record(now_ns() - t);
        return good;
      });
      map_job.bytes = map_job.ops * size;
      map_job.extra["unmap_mean_ns"] = unmap_latency.mean();
      map_job.extra["unmap_p99_ns"] = unmap_latency.percentile(99);
      report.jobs.push_back(std::move(map_job));
    }
  }
  if (o.edu) {
    VFE_TRY_ASSIGN(Job edu, edu_job(common, dev));
    report.jobs.push_back(std::move(edu));
  }
  return report;
}

}  // namespace vfe::bench
