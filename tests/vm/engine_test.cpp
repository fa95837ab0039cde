// The engine in the two-node guest: the NVMe behind the node-1 bridge is served by the worker
// pinned to node 1's CPU, with its DMA memory on node 1; an interrupt the NVMe raises itself (an
// admin command's completion on MSI-X vector 0) and one edu raises (MSI) each arrive through
// io_uring on the worker of their node.
#include <gtest/gtest.h>
#include <linux/vfio.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "dma/dma_buffer.hpp"
#include "dma/dma_space.hpp"
#include "engine/engine.hpp"
#include "irq/irq_set.hpp"
#include "mmio/config_space.hpp"
#include "mmio/region.hpp"
#include "tests/unit/support/assert_ok.hpp"
#include "tests/vm/vm_env.hpp"
#include "tests/vm/vm_support.hpp"
#include "vfio/device.hpp"

namespace vfe {
namespace {
using namespace std::chrono_literals;

// NVMe 1.4 §3.1 controller registers.
constexpr std::uint64_t kCap = 0x00, kCc = 0x14, kCsts = 0x1c, kAqa = 0x24, kAsq = 0x28,
                        kAcq = 0x30, kDoorbells = 0x1000;

int node_of_page(const void* p) {
  void* page = const_cast<void*>(p);
  int status = -1;
  return ::syscall(SYS_move_pages, 0, 1, &page, nullptr, &status, 0) == 0 ? status : -2;
}

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(EngineVm, NodeOneNvmeIsServedOnNodeOneAndItsInterruptArrivesThere) {
  engine::EngineOptions options;
  options.mode = engine::WorkerMode::interrupt;
  auto engine = engine::Engine::create(options);
  ASSERT_TRUE(engine) << engine.error().message();
  const vfio::Bdf bdf = vmtest::devices_of("nvme").at(1);
  EXPECT_EQ((*engine)->topology().device_node(bdf), 1);
  auto worker = (*engine)->worker_for_device(bdf);
  ASSERT_TRUE(worker) << worker.error().message();
  int cpu = -1;
  ASSERT_TRUE((*worker)->run_sync([&] { cpu = sched_getcpu(); }));
  EXPECT_EQ(cpu, 1) << "node 1 has CPU 1 only";
  const int node = (*engine)->node_of(**worker);
  EXPECT_EQ(node, 1);

  VFE_ASSERT_OK_AND_ASSIGN(vfio::Device dev, vmtest::open_device(bdf));
  VFE_ASSERT_OK_AND_ASSIGN(auto config, mmio::ConfigSpace::open(dev));
  VFE_ASSERT_OK(config.enable_bus_master());
  VFE_ASSERT_OK_AND_ASSIGN(auto bar, mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX));
  VFE_ASSERT_OK_AND_ASSIGN(auto space, dma::DmaSpace::create(dev.shared_backend()));
  const dma::MemoryOptions on_node{.hugepages = false, .numa_node = node};
  auto sq = dma::DmaBuffer::allocate(*space, 4096, on_node);
  auto cq = dma::DmaBuffer::allocate(*space, 4096, on_node);
  auto data = dma::DmaBuffer::allocate(*space, 4096, on_node);
  ASSERT_TRUE(sq && cq && data) << "DMA buffers on node 1";
  for (const auto* b : {&*sq, &*cq, &*data}) {
    EXPECT_EQ(node_of_page(b->data()), 1);
  }

  // Admin completions arrive on MSI-X vector 0; the node-1 worker watches its eventfd.
  VFE_ASSERT_OK_AND_ASSIGN(auto irqs, irq::IrqSet::enable(dev, irq::IrqIndex::msix, 1));
  std::atomic<int> fired_on_cpu{-1};
  std::atomic<bool> on_worker{false};
  ASSERT_TRUE((*worker)->watch(irqs.eventfd(0), [&](std::uint64_t) {
    on_worker = (*worker)->on_worker_thread();
    fired_on_cpu = sched_getcpu();
  }));

  // NVMe 1.4 §7.6.1: disable, program the admin queues, enable, wait until ready.
  const std::uint64_t cap = bar.read64(kCap);
  const auto timeout = std::chrono::milliseconds(500 * ((cap >> 24) & 0xff));
  const std::uint64_t stride = 4ULL << ((cap >> 32) & 0xf);
  bar.write32(kCc, 0);
  ASSERT_TRUE(wait_for([&] { return (bar.read32(kCsts) & 1) == 0; }, timeout));
  bar.write32(kAqa, (15U << 16) | 15U);  // 16 entries each, 0's based
  bar.write64(kAsq, dma::to_u64(sq->iova()));
  bar.write64(kAcq, dma::to_u64(cq->iova()));
  bar.write32(kCc, (4U << 20) | (6U << 16) | 1U);  // IOCQES 16 B, IOSQES 64 B, EN
  ASSERT_TRUE(wait_for([&] { return (bar.read32(kCsts) & 1) == 1; }, timeout)) << "CSTS.RDY";

  // Identify Controller (NVMe 1.4 §5.15): opcode 06h, CNS 01h, PRP1 -> the data buffer.
  auto* sqe = sq->as<std::uint32_t>();
  sqe[0] = 0x06 | (7U << 16);  // command id 7
  const std::uint64_t prp1 = dma::to_u64(data->iova());
  std::memcpy(&sqe[6], &prp1, sizeof(prp1));
  sqe[10] = 1;
  bar.write32_db(kDoorbells, 1);  // SQ0 tail = 1
  ASSERT_TRUE(wait_for([&] { return fired_on_cpu.load() >= 0; }, 5000ms))
      << "no MSI-X interrupt from the controller reached the worker";
  EXPECT_TRUE(on_worker.load());
  EXPECT_EQ(fired_on_cpu.load(), 1);
  const volatile auto* cqe = cq->as<std::uint32_t>();
  EXPECT_EQ(cqe[3] & 0xffff, 7U) << "command id";
  EXPECT_EQ((cqe[3] >> 16) & 1, 1U) << "phase tag";
  EXPECT_EQ((cqe[3] >> 17), 0U) << "status: success";
  EXPECT_EQ(std::string(data->as<const char>() + 24, 14), "QEMU NVMe Ctrl");
  bar.write32(kDoorbells + stride, 1);  // CQ0 head = 1
  ASSERT_TRUE((*worker)->unwatch(irqs.eventfd(0)));
  bar.write32(kCc, 0);
  EXPECT_TRUE(wait_for([&] { return (bar.read32(kCsts) & 1) == 0; }, timeout));
}

TEST(EngineVm, EduMsiArrivesOnTheWorkerOfItsNode) {
  auto engine = engine::Engine::create({});  // adaptive
  ASSERT_TRUE(engine) << engine.error().message();
  const vfio::Bdf bdf = vmtest::devices_of("edu").at(0);
  auto worker = (*engine)->worker_for_device(bdf);  // edu has no node: the first node's worker
  ASSERT_TRUE(worker) << worker.error().message();
  const std::vector<int> cpus = (*worker)->options().cpus;
  VFE_ASSERT_OK_AND_ASSIGN(vfio::Device dev, vmtest::open_device(bdf));
  VFE_ASSERT_OK_AND_ASSIGN(auto config, mmio::ConfigSpace::open(dev));
  VFE_ASSERT_OK(config.enable_bus_master());
  VFE_ASSERT_OK_AND_ASSIGN(auto bar, mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX));
  VFE_ASSERT_OK_AND_ASSIGN(auto irqs, irq::IrqSet::enable(dev, irq::IrqIndex::msi, 1));
  std::atomic<int> count{0};
  std::atomic<int> cpu{-1};
  ASSERT_TRUE((*worker)->watch(irqs.eventfd(0), [&](std::uint64_t n) {
    cpu = sched_getcpu();
    count += static_cast<int>(n);
    bar.write32(0x64, 0xff);  // acknowledge in the device, on the worker
  }));
  for (int i = 0; i < 5; ++i) {
    bar.write32(0x60, 1U << i);  // edu raises its MSI
    ASSERT_TRUE(wait_for([&] { return count.load() > i; }, 5000ms)) << "interrupt " << i;
  }
  EXPECT_EQ(count.load(), 5);
  EXPECT_NE(std::find(cpus.begin(), cpus.end(), cpu.load()), cpus.end())
      << "handled on CPU " << cpu.load();
  ASSERT_TRUE((*worker)->unwatch(irqs.eventfd(0)));
}

}  // namespace
}  // namespace vfe

namespace vfe {
namespace {

// Interrupt steering: once the vectors exist, their lines can be moved to the worker's CPUs.
// Without root the library refuses, saying so, and the test skips.
TEST(EngineVm, SteersTheDevicesInterruptLinesToTheWorkersCpus) {
  const vfio::Bdf bdf = vmtest::devices_of("nvme").at(1);
  VFE_ASSERT_OK_AND_ASSIGN(vfio::Device dev, vmtest::open_device(bdf));
  VFE_ASSERT_OK_AND_ASSIGN(auto irqs, irq::IrqSet::enable(dev, irq::IrqIndex::msix, 2));
  const std::vector<int> cpus = {1};
  auto steered = engine::steer_device_irqs(bdf, cpus);
  if (!vmtest::is_root()) {
    ASSERT_FALSE(steered) << "steered " << *steered << " lines without root";
    EXPECT_TRUE(steered.error().is(EACCES)) << steered.error().message();
    EXPECT_NE(steered.error().message().find("only root"), std::string::npos)
        << steered.error().message();
    GTEST_SKIP() << "needs root: writes /proc/irq/N/smp_affinity_list ("
                 << steered.error().message() << ")";
  }
  ASSERT_TRUE(steered) << steered.error().message();
  EXPECT_EQ(*steered, 2U) << "one line per enabled MSI-X vector";
  // Every vfio line of the device now reads back CPU 1.
  std::ifstream interrupts("/proc/interrupts");
  int checked = 0;
  for (std::string line; std::getline(interrupts, line);) {
    if (line.find("vfio-msix") == std::string::npos || line.find(bdf.to_string()) == std::string::npos) {
      continue;
    }
    const unsigned irq = static_cast<unsigned>(std::stoul(line));
    std::ifstream affinity("/proc/irq/" + std::to_string(irq) + "/smp_affinity_list");
    std::string list;
    std::getline(affinity, list);
    EXPECT_EQ(list, "1") << "irq " << irq;
    ++checked;
  }
  EXPECT_EQ(checked, 2);
}

}  // namespace
}  // namespace vfe
