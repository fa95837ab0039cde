// Surprise removal of an NVMe during I/O: the guest asks the host (a "VFE-HOTUNPLUG nvme1" line
// on the console, see tests/vm/run.sh) to `device_del` the node-1 controller from QEMU's monitor.
// The guest kernel's pciehp then removes the function, and vfio-pci asks this process for it
// with the device request interrupt. Every request completes exactly once, the ones in flight
// with ENODEV, the controller gives the device back, the kernel's removal finishes, and tearing
// everything down neither hangs nor leaks. It removes a device for the rest of the boot, so it
// runs only from tests/vm/guest/hotunplug_check.sh, last.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mmio/config_space.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/resources.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kDepth = 128;
constexpr std::uint64_t kIoBytes = 16 * 1024;  // 128 of them: 2 MiB of the scratch band
constexpr std::uint64_t kReadsBeforeUnplug = 500;


// 128 reads kept in flight on one I/O queue of the node-1 controller. `submits` counts how often
// a slot was handed to the queue, `tallied` how many of its completions were counted.
struct Reads {
  struct Slot {
    std::unique_ptr<WaitableRequest> req;
    int submits = 0;
    int tallied = 0;
    [[nodiscard]] bool idle() const { return req->completions.load(std::memory_order_acquire) == submits; }
  };

  std::unique_ptr<nvme::Controller> ctrl;
  std::unique_ptr<engine::Worker> worker;
  // Before the queue, so that an early ASSERT destroys the queue (completing what is in flight)
  // before the requests and their buffer.
  std::optional<dma::DmaBuffer> buf;
  std::vector<nvme::DataSegment> segs;
  std::vector<Slot> slots;
  std::unique_ptr<nvme::IoQueue> queue;
  std::uint64_t ok = 0, enodev = 0, other = 0;
  int refused = 0;  // what submit said when the queue stopped taking requests

  // Counts the slot's latest completion, once (an idle slot has completed every submission).
  void tally(Slot& s) {
    if (s.tallied < s.submits) {
      const int rc = s.req->result.load(std::memory_order_relaxed);
      (rc == 0 ? ok : rc == -ENODEV ? enodev : other) += 1;
      s.tallied = s.submits;
    }
  }
  // Hands every idle slot to the queue again; false once the queue refuses.
  bool pump() {
    for (Slot& s : slots) {
      if (s.idle()) {
        tally(s);
        ++s.submits;  // first: the completion may come before submit returns
        if (const int rc = queue->submit(*s.req); rc != 0) {
          --s.submits;
          refused = rc;
          return false;
        }
      }
    }
    return true;
  }
  [[nodiscard]] std::size_t idle_slots() const {
    return static_cast<std::size_t>(std::count_if(slots.begin(), slots.end(), [](const Slot& s) { return s.idle(); }));
  }
  // Every interrupt the worker had pending has been handled once this returns.
  [[nodiscard]] bool settle() const {
    return worker->run_sync([] {}) && worker->run_sync([] {});
  }
  [[nodiscard]] std::uint64_t submitted() const {
    std::uint64_t n = 0;
    for (const Slot& s : slots) {
      n += static_cast<std::uint64_t>(s.submits);
    }
    return n;
  }
};

// Opens the controller (interrupt completions; the watchdog's own timeout far away, so that the
// removal is what fails the requests) and prepares the slots.
void open_reads(Reads& r) {
  nvme::ControllerOptions opts;
  opts.io_timeout = 120s;
  VFE_ASSERT_OK_AND_ASSIGN(r.ctrl, open_nvme(1, opts));
  ASSERT_TRUE(r.ctrl->watches_device_requests()) << "vfio-pci offers the request interrupt";
  VFE_ASSERT_OK_AND_ASSIGN(r.worker, start_worker(engine::WorkerMode::interrupt));
  auto b = dma::DmaBuffer::allocate(r.ctrl->dma_space(), kDepth * kIoBytes);
  ASSERT_TRUE(b) << b.error().message();
  r.buf.emplace(std::move(*b));
  r.slots.resize(kDepth);
  for (std::size_t k = 0; k < kDepth; ++k) {
    r.segs.push_back({r.buf->iova_at(k * kIoBytes), kIoBytes});
  }
  for (std::size_t k = 0; k < kDepth; ++k) {
    r.slots[k].req = std::make_unique<WaitableRequest>(r.worker.get(), nvme::IoOpcode::read,
                                                       (kScratchBegin + k * kIoBytes) / kBlock, kIoBytes / kBlock,
                                                       std::span<const nvme::DataSegment>(&r.segs[k], 1));
  }
  auto q = r.ctrl->create_io_queue(*r.worker, {.entries = kDepth + 1, .completion = engine::CompletionMode::interrupt});
  ASSERT_TRUE(q) << q.error().message();
  r.queue = std::move(*q);
}

// Ordinary reads first; then the queue's vector goes nowhere, so what is submitted from then on
// stays outstanding, as on a device that vanished mid-command (QEMU's would otherwise finish each
// one in microseconds, before the removal disables it): every slot gets a request in flight.
void fill_the_queue(Reads& r) {
  ASSERT_TRUE(eventually([&] { return !r.pump() || r.ok >= kReadsBeforeUnplug; }, 60s));
  ASSERT_EQ(r.refused, 0);
  ASSERT_TRUE(r.ctrl->irqs().set_attached(r.queue->qid(), false));
  ASSERT_TRUE(r.settle());  // a completion signalled just before is handled now, not later
  ASSERT_TRUE(eventually([&] { return r.pump() && r.idle_slots() == 0; }, 10s));
  ASSERT_TRUE(r.settle());
  ASSERT_EQ(r.idle_slots(), 0U) << "a request completed after the vector was detached";
}

TEST(HotUnplug, NvmeRemovedDuringIoFailsEveryRequestOnceAndIsGivenBack) {
  if (std::getenv("VFE_VM_HOTUNPLUG") == nullptr) {
    GTEST_SKIP() << "removes the node-1 NVMe for the rest of the boot: run by tests/vm/guest/hotunplug_check.sh";
  }
  const std::string bdf = devices_of("nvme").at(1).to_string();
  const std::filesystem::path sysfs = "/sys/bus/pci/devices/" + bdf;
  ASSERT_TRUE(std::filesystem::exists(sysfs)) << bdf << " is gone already";
  const Resources before = Resources::snapshot().without_private_anonymous();
  std::uintptr_t bar0 = 0;
  {
    Reads r;
    ASSERT_NO_FATAL_FAILURE(open_reads(r));
    bar0 = reinterpret_cast<std::uintptr_t>(r.ctrl->bar().address(0, 4));
    ASSERT_NO_FATAL_FAILURE(fill_the_queue(r));
    const std::uint64_t ok_before = r.ok;
    std::printf("VFE-HOTUNPLUG nvme1\n");  // the host's watcher reads the console
    std::fflush(stdout);
    ASSERT_TRUE(eventually([&] { return r.ctrl->state() != nvme::ControllerState::running; }, 120s))
        << "no device request within 120 s of asking for the unplug";
    // Every request handed over completes exactly once, the outstanding ones with ENODEV.
    ASSERT_TRUE(eventually([&] { return r.idle_slots() == kDepth; }, 10s))
        << "requests still in flight 10 s after the controller failed";
    std::this_thread::sleep_for(100ms);  // would a late duplicate show?
    EXPECT_FALSE(r.pump());
    EXPECT_EQ(r.refused, -ENODEV) << "a removed controller refuses new requests";
    for (auto& s : r.slots) {
      r.tally(s);
      EXPECT_EQ(s.req->completions.load(), s.submits);
      EXPECT_TRUE(s.req->on_worker);
    }
    EXPECT_EQ(r.ok + r.enodev + r.other, r.submitted());
    EXPECT_EQ(r.enodev, kDepth) << "every request outstanding at the removal fails with ENODEV";
    EXPECT_EQ(r.other, 0U);
    EXPECT_EQ(r.ok, ok_before) << "nothing completed after the device went";
    std::printf("hot-unplug: %llu reads completed, %llu failed with ENODEV, %llu submitted in all\n",
                static_cast<unsigned long long>(r.ok), static_cast<unsigned long long>(r.enodev),
                static_cast<unsigned long long>(r.submitted()));
    EXPECT_NE(r.ctrl->failure().find("asked for the device back"), std::string::npos) << r.ctrl->failure();
    EXPECT_EQ(r.queue->stats().errors.load(), r.enodev);

    // The controller gave the device back, so the kernel finishes the removal while the objects
    // still live; what is left of the device answers ENODEV.
    EXPECT_TRUE(eventually([&] { return r.ctrl->released(); }, 5s));
    EXPECT_TRUE(eventually([&] { return !std::filesystem::exists(sysfs); }, 30s))
        << bdf << " is still in sysfs: the kernel's removal is waiting for this process";
    const auto reset = r.ctrl->device().reset();
    EXPECT_TRUE(!reset && reset.error().is(ENODEV));
    const auto config = mmio::ConfigSpace::open(r.ctrl->device());
    EXPECT_TRUE(!config && config.error().is(ENODEV));

    const auto t0 = Clock::now();
    r.queue.reset();
    r.buf.reset();
    r.ctrl.reset();
    EXPECT_LT(Clock::now() - t0, 5s) << "tearing down a removed controller took too long";
  }
  EXPECT_EQ(resource_changes(before, Resources::snapshot().without_private_anonymous()), "");
  // The BAR0 stand-in (private anonymous memory, not compared above) went with the controller.
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    std::uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2) {
      EXPECT_FALSE(bar0 >= lo && bar0 < hi) << "BAR0's address is still mapped: " << line;
    }
  }
}

}  // namespace
}  // namespace vfe::vmtest
