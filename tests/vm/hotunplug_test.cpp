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
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/resources.hpp"

namespace vfe::vmtest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kDepth = 128;
constexpr std::uint64_t kIoBytes = 16 * 1024;  // 128 of them: 2 MiB of the scratch band
constexpr std::uint64_t kReadsBeforeUnplug = 500;

// Waits up to `limit` for `done()`; true when it held in time.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// One request slot kept busy with reads: `submits` counts how often it was handed to the queue,
// `tallied` how many of its completions were counted.
struct Slot {
  std::unique_ptr<WaitableRequest> req;
  int submits = 0;
  int tallied = 0;
  [[nodiscard]] bool idle() const { return req->completions.load(std::memory_order_acquire) == submits; }
};

struct Tally {
  std::uint64_t ok = 0, enodev = 0, other = 0;
  // Counts the slot's latest completion, once (an idle slot has completed every submission).
  void add(Slot& s) {
    if (s.tallied < s.submits) {
      const int rc = s.req->result.load(std::memory_order_relaxed);
      (rc == 0 ? ok : rc == -ENODEV ? enodev : other) += 1;
      s.tallied = s.submits;
    }
  }
};

TEST(HotUnplug, NvmeRemovedDuringIoFailsEveryRequestOnceAndIsGivenBack) {
  if (std::getenv("VFE_VM_HOTUNPLUG") == nullptr) {
    GTEST_SKIP() << "removes the node-1 NVMe for the rest of the boot: run by tests/vm/guest/hotunplug_check.sh";
  }
  const std::string bdf = devices_of("nvme").at(1).to_string();
  const std::filesystem::path sysfs = "/sys/bus/pci/devices/" + bdf;
  ASSERT_TRUE(std::filesystem::exists(sysfs)) << bdf << " is gone already";
  const Resources before = Resources::snapshot().without_private_anonymous();
  {
    nvme::ControllerOptions opts;
    opts.io_timeout = 120s;  // the removal, not the watchdog's timeout, must fail the requests
    auto c = open_nvme(1, opts);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->watches_device_requests()) << "vfio-pci offers the request interrupt";
    engine::WorkerOptions wo;
    wo.mode = engine::WorkerMode::interrupt;
    auto w = engine::Worker::start(std::move(wo));
    ASSERT_TRUE(w) << w.error().message();
    // Before the queue, so that an early ASSERT destroys the queue (completing what is in
    // flight) before the requests and their buffer.
    std::optional<dma::DmaBuffer> buf = dma_buffer(*c, kDepth * kIoBytes);
    ASSERT_TRUE(buf);
    std::vector<nvme::DataSegment> segs;
    std::vector<Slot> slots(kDepth);
    for (std::size_t k = 0; k < kDepth; ++k) {
      segs.push_back({buf->iova_at(k * kIoBytes), kIoBytes});
    }
    for (std::size_t k = 0; k < kDepth; ++k) {
      slots[k].req = std::make_unique<WaitableRequest>(w->get(), nvme::IoOpcode::read,
                                                       (kScratchBegin + k * kIoBytes) / kBlock, kIoBytes / kBlock,
                                                       std::span<const nvme::DataSegment>(&segs[k], 1));
    }
    auto q = c->create_io_queue(**w, {.entries = kDepth + 1, .completion = engine::CompletionMode::interrupt});
    ASSERT_TRUE(q) << q.error().message();

    // Hands every idle slot to the queue again; false once the queue refuses (with `refused`).
    Tally t;
    int refused = 0;
    const auto pump = [&] {
      for (Slot& s : slots) {
        if (s.idle()) {
          t.add(s);
          ++s.submits;  // first: the completion may come before submit returns
          if (const int rc = (*q)->submit(*s.req); rc != 0) {
            --s.submits;
            refused = rc;
            return false;
          }
        }
      }
      return true;
    };
    // Ordinary I/O first.
    ASSERT_TRUE(eventually([&] { return !pump() || t.ok >= kReadsBeforeUnplug; }, 60s));
    ASSERT_EQ(refused, 0);
    // Then the queue's vector goes nowhere: what is submitted from now on stays outstanding, as
    // on a device that vanished mid-command (QEMU's would otherwise finish each one in
    // microseconds, before the removal disables it). Every slot gets a request in flight.
    ASSERT_TRUE(c->irqs().set_attached((*q)->qid(), false));
    ASSERT_TRUE(eventually([&] {
      pump();
      return std::none_of(slots.begin(), slots.end(), [](const Slot& s) { return s.idle(); });
    }, 10s));
    const std::uint64_t ok_before = t.ok;
    std::printf("VFE-HOTUNPLUG nvme1\n");  // the host's watcher reads the console
    std::fflush(stdout);
    ASSERT_TRUE(eventually([&] { return c->state() != nvme::ControllerState::running; }, 120s))
        << "no device request within 120 s of asking for the unplug";
    // Every request handed over completes exactly once, the outstanding ones with ENODEV.
    ASSERT_TRUE(eventually([&] {
      return std::all_of(slots.begin(), slots.end(), [](const Slot& s) { return s.idle(); });
    }, 10s)) << "requests still in flight 10 s after the controller failed";
    std::this_thread::sleep_for(100ms);  // would a late duplicate show?
    EXPECT_FALSE(pump());
    EXPECT_EQ(refused, -ENODEV) << "a removed controller refuses new requests";
    for (Slot& s : slots) {
      t.add(s);
    }
    std::uint64_t submitted = 0;
    for (const Slot& s : slots) {
      EXPECT_EQ(s.req->completions.load(), s.submits);
      EXPECT_TRUE(s.req->on_worker);
      submitted += static_cast<std::uint64_t>(s.submits);
    }
    EXPECT_EQ(t.ok + t.enodev + t.other, submitted);
    EXPECT_EQ(t.enodev, kDepth) << "every request outstanding at the removal fails with ENODEV";
    EXPECT_EQ(t.other, 0U);
    EXPECT_GE(ok_before, kReadsBeforeUnplug);
    std::printf("hot-unplug: %llu reads completed, %llu failed with ENODEV, %llu submitted in all\n",
                static_cast<unsigned long long>(t.ok), static_cast<unsigned long long>(t.enodev),
                static_cast<unsigned long long>(submitted));
    EXPECT_EQ(c->state(), nvme::ControllerState::failed);
    EXPECT_NE(c->failure().find("asked for the device back"), std::string::npos) << c->failure();
    EXPECT_EQ((*q)->stats().errors.load(), t.enodev);

    // The controller gave the device back, so the kernel finishes the removal while the
    // Controller object still lives.
    EXPECT_TRUE(eventually([&] { return c->released(); }, 5s));
    EXPECT_TRUE(eventually([&] { return !std::filesystem::exists(sysfs); }, 30s))
        << bdf << " is still in sysfs: the kernel's removal is waiting for this process";
    EXPECT_EQ(c->bar().read32(0x1c), 0xffffffffU) << "CSTS of a released controller reads all ones";

    const auto t0 = Clock::now();
    q->reset();
    buf.reset();
    c.reset();
    EXPECT_LT(Clock::now() - t0, 5s) << "tearing down a removed controller took too long";
  }
  EXPECT_EQ(resource_changes(before, Resources::snapshot().without_private_anonymous()), "");
}

}  // namespace
}  // namespace vfe::vmtest
