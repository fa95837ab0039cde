// A failed NVMe controller gives nothing back while it may still DMA. Reads of the rig's
// stalling namespace are held by the host (tests/vm/run.sh) while BAR0 is detached under the
// driver, so its registers read all ones (as after a surprise removal) although the function
// is still there, its commands in flight. The driver must then confirm that DMA stopped (here
// only clearing Bus Master Enable can) before it completes a request or frees a queue's memory;
// when it cannot (config space writes made to fail, through the kernel seam), the requests
// stay in flight and a queue destroyed meanwhile abandons its memory; and when the kernel then
// asks for the device back, they complete once it is given back, not before. A queue whose
// creation was never answered is treated the same.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "mmio/config_space.hpp"
#include "mmio/pci_caps.hpp"
#include "tests/vm/faulty_sys.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;
using std::chrono::milliseconds;

constexpr std::uint32_t kSlots = 8;     // commands in flight at most (9 entries)
constexpr std::uint32_t kWaiting = 4;   // more, which wait in the queue's ring
constexpr int kHoldMs = 5000;           // how long the host holds namespace 3's requests
constexpr std::uint64_t kIo = 4096;

// A controller with a queue whose kSlots commands are all held by the host, and kWaiting more
// requests behind them. io_timeout is long: nothing here is late.
struct HeldIo {
  FaultySys sys;
  std::unique_ptr<nvme::Controller> ctrl;
  std::unique_ptr<engine::Worker> worker;
  std::optional<dma::DmaBuffer> buf;
  std::vector<nvme::DataSegment> segs;
  std::vector<std::unique_ptr<WaitableRequest>> reqs;  // before the queue: it goes first
  std::unique_ptr<nvme::IoQueue> queue;
  std::chrono::steady_clock::time_point hold_ends;

  ~HeldIo() {
    // Only once the host let the held reads through (and QEMU wrote their data) may their
    // buffer go; the controller goes last (its DMA space holds the buffer's mapping).
    std::this_thread::sleep_until(hold_ends + milliseconds(1000));
    queue.reset();
    buf.reset();
  }

  // A read of 4 KiB block k of namespace 3 into segs[k].
  WaitableRequest& add_read(std::size_t k) {
    reqs.push_back(std::make_unique<WaitableRequest>(worker.get(), IoOpcode::read, k * (kIo / kBlock), kIo / kBlock,
                                                     std::span<const nvme::DataSegment>(&segs[k], 1)));
    reqs.back()->nsid = kStallNsid;
    return *reqs.back();
  }
};

Result<void> hold_io(HeldIo& h) {
  nvme::ControllerOptions opts;
  opts.io_queues = 1;
  opts.watchdog_period = milliseconds(20);
  opts.io_timeout = milliseconds(60'000);
  opts.sys = &h.sys;
  VFE_TRY_ASSIGN(h.ctrl, open_nvme(0, opts));
  VFE_TRY_ASSIGN(h.worker, start_worker(engine::WorkerMode::polling));
  VFE_TRY_ASSIGN(auto buf, dma::DmaBuffer::allocate(h.ctrl->dma_space(), 64 * kIo));
  h.buf.emplace(std::move(buf));
  for (std::uint64_t k = 0; k < 64; ++k) {
    h.segs.push_back({h.buf->iova_at(k * kIo), kIo});
  }
  VFE_TRY_ASSIGN(h.queue, h.ctrl->create_io_queue(*h.worker, {.entries = kSlots + 1}));
  std::printf("VFE-STALL %d\n", kHoldMs);  // the host's watcher reads the console
  std::fflush(stdout);
  // One read at a time until one is held (still pending after 500 ms, where a read takes a few):
  // the host has paused namespace 3. The blocks go round; the held read's and the next 11 fit.
  const auto give_up = std::chrono::steady_clock::now() + milliseconds(30'000);
  const std::size_t rounds = h.segs.size() - kSlots - kWaiting;
  std::size_t k = 0;
  for (std::size_t n = 0;; ++n) {
    k = n % rounds;
    const auto sent = std::chrono::steady_clock::now();
    if (sent > give_up) {
      return Error::from_errno(ETIMEDOUT, "hold reads", "no read was held for 30 s: did the host get VFE-STALL?");
    }
    h.reqs.clear();
    if (int rc = h.queue->submit(h.add_read(k)); rc != 0) {
      return Error::from_errno(-rc, "hold reads", "submit");
    }
    if (h.reqs.back()->wait(milliseconds(500)) == 1) {
      h.hold_ends = sent + milliseconds(kHoldMs);
      break;
    }
  }
  for (std::uint32_t i = 1; i < kSlots + kWaiting; ++i) {
    if (int rc = h.queue->submit(h.add_read(k + i)); rc != 0) {
      return Error::from_errno(-rc, "hold reads", "submit");
    }
  }
  return ok();
}

// The driver sees all ones, as from a device that vanished, while the function is still there.
void detach_and_wait_for_failure(HeldIo& h) {
  ASSERT_TRUE(h.ctrl->bar().detach());
  const auto end = std::chrono::steady_clock::now() + milliseconds(5000);
  while (h.ctrl->state() != nvme::ControllerState::failed) {
    ASSERT_LT(std::chrono::steady_clock::now(), end) << "the watchdog did not fail the controller";
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_LT(std::chrono::steady_clock::now(), h.hold_ends) << "the host's hold ended too soon for this test";
}

TEST(NvmeDmaStop, RegistersReadingAllOnesFailRequestsOnlyAfterBusMasteringIsOff) {
  HeldIo h;
  ASSERT_NO_FATAL_FAILURE(VFE_ASSERT_OK(hold_io(h)));
  ASSERT_NO_FATAL_FAILURE(detach_and_wait_for_failure(h));
  for (const auto& r : h.reqs) {
    EXPECT_EQ(r->wait(milliseconds(2000)), -ENODEV);
  }
  // All ones from BAR0 alone proves nothing: the driver cleared Bus Master Enable (and read it
  // back) before it gave the requests back.
  VFE_ASSERT_OK_AND_ASSIGN(auto config, mmio::ConfigSpace::open(h.ctrl->device()));
  VFE_ASSERT_OK_AND_ASSIGN(const std::uint16_t command, config.read16(mmio::pci::kCommand));
  EXPECT_EQ(command & mmio::pci::kCommandBusMaster, 0) << "the requests failed while the device could still DMA";
  const std::size_t mappings = h.ctrl->dma_space().mapping_count();
  h.queue.reset();
  EXPECT_EQ(h.ctrl->dma_space().mapping_count(), mappings - 1) << "DMA stopped: the queue's memory is freed";
  for (const auto& r : h.reqs) {
    EXPECT_EQ(r->completions.load(), 1);
  }
}

TEST(NvmeDmaStop, AControllerWhoseDmaCannotBeStoppedKeepsItsRequestsAndQueueMemory) {
  HeldIo h;
  ASSERT_NO_FATAL_FAILURE(VFE_ASSERT_OK(hold_io(h)));
  h.sys.fail_config_writes = true;  // bus mastering cannot be switched off
  h.sys.fail_device_reset = true;   // nor the function reset
  ASSERT_NO_FATAL_FAILURE(detach_and_wait_for_failure(h));
  std::this_thread::sleep_for(milliseconds(500));
  for (std::size_t k = 0; k < kSlots; ++k) {
    EXPECT_EQ(h.reqs[k]->completions.load(), 0) << "request " << k << " on the device came back before DMA stopped";
  }
  const std::size_t mappings = h.ctrl->dma_space().mapping_count();
  h.queue.reset();
  EXPECT_EQ(h.ctrl->dma_space().mapping_count(), mappings)
      << "the queue's memory was freed while the controller may still write it";
  for (std::size_t k = 0; k < h.reqs.size(); ++k) {
    // Those on the device stay in flight for good; those that never reached it are cancelled.
    EXPECT_EQ(h.reqs[k]->completions.load(), k < kSlots ? 0 : 1) << "request " << k;
  }
  EXPECT_NE(h.ctrl->failure().find("all ones"), std::string::npos) << h.ctrl->failure();
  h.sys.fail_config_writes = false;  // the controller's own teardown goes as usual
  h.sys.fail_device_reset = false;
}

// Creating a queue is never answered (BAR0 detached: the doorbell goes nowhere) and the
// controller's DMA cannot be stopped. The controller may have made the queue, so its memory stays
// allocated and mapped, and its ID taken, as any other queue's would.
TEST(NvmeDmaStop, AQueueWhoseCreationWasNeverAnsweredKeepsItsMemoryWhenDmaCannotBeStopped) {
  FaultySys sys;
  nvme::ControllerOptions opts;
  opts.io_queues = 1;
  opts.watchdog_period = milliseconds(60'000);  // the admin timeout finds the device gone, not the watchdog
  opts.sys = &sys;
  VFE_ASSERT_OK_AND_ASSIGN(auto ctrl, open_nvme(0, opts));
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start_worker(engine::WorkerMode::polling));
  const std::size_t mappings = ctrl->dma_space().mapping_count();
  ASSERT_TRUE(ctrl->bar().detach());
  sys.fail_config_writes = true;  // bus mastering cannot be switched off
  sys.fail_device_reset = true;   // nor the function reset
  const auto q = ctrl->create_io_queue(*worker, {.entries = 16});
  ASSERT_FALSE(q) << "a queue was made on a controller whose registers read all ones";
  EXPECT_NE(q.error().message().find("no completion within"), std::string::npos) << q.error().message();
  EXPECT_EQ(ctrl->state(), nvme::ControllerState::failed);
  EXPECT_EQ(ctrl->dma_space().mapping_count(), mappings + 1)
      << "the queue's memory was freed while the controller may still write it";
  sys.fail_config_writes = false;  // the controller's own teardown goes as usual
  sys.fail_device_reset = false;
}

// The kernel asks for the device back (an unbind from vfio-pci) while the failed controller's DMA
// could not be stopped, and the first release fails too: the requests stay in flight. vfio-pci
// asks again 10 s later, the release works, and only then do the requests complete (those the
// device finished meanwhile with their own status, the rest with ENODEV).
TEST(NvmeDmaStop, RequestsOfADeviceTheKernelWantsBackCompleteOnlyOnceItIsGivenBack) {
  if (!is_root()) {
    GTEST_SKIP() << "unbinding a device from vfio-pci needs root";
  }
  HeldIo h;
  ASSERT_NO_FATAL_FAILURE(VFE_ASSERT_OK(hold_io(h)));
  ASSERT_TRUE(h.ctrl->watches_device_requests());
  const std::string bdf = h.ctrl->device().bdf().to_string();
  h.sys.fail_config_writes = true;
  h.sys.fail_device_reset = true;
  ASSERT_NO_FATAL_FAILURE(detach_and_wait_for_failure(h));
  h.sys.fail_fixed_maps = true;  // the first release cannot let go of BAR0
  // Blocks until this process gives the device back; vfio-pci sends the request meanwhile.
  std::atomic<bool> unbound{false};
  std::thread unbind([&] {
    std::ofstream f("/sys/bus/pci/drivers/vfio-pci/unbind");
    unbound = static_cast<bool>(f << bdf << std::flush);
  });
  std::this_thread::sleep_for(milliseconds(2000));
  EXPECT_FALSE(h.ctrl->released()) << "the release was to fail";
  for (std::size_t k = 0; k < kSlots; ++k) {
    EXPECT_EQ(h.reqs[k]->completions.load(), 0) << "request " << k << " came back before the device was given back";
  }
  h.sys.fail_fixed_maps = false;
  h.sys.fail_config_writes = false;
  h.sys.fail_device_reset = false;
  unbind.join();  // the next request (10 s on) releases the device, and the unbind ends
  ASSERT_TRUE(unbound) << "writing " << bdf << " to vfio-pci's unbind failed";
  const auto end = std::chrono::steady_clock::now() + milliseconds(2000);
  while (!h.ctrl->released() && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(milliseconds(5));  // the unbind ends inside the release
  }
  EXPECT_TRUE(h.ctrl->released());
  for (std::size_t k = 0; k < kSlots; ++k) {
    // The host's hold ended before: what the device finished is reaped (0), the rest fails.
    const int rc = h.reqs[k]->wait(milliseconds(2000));
    EXPECT_TRUE(rc == 0 || rc == -ENODEV) << "request " << k << ": " << rc;
  }
  std::this_thread::sleep_for(milliseconds(100));  // would a late duplicate show?
  for (const auto& r : h.reqs) {
    EXPECT_EQ(r->completions.load(), 1);
  }
  EXPECT_NE(h.ctrl->failure().find("all ones"), std::string::npos) << h.ctrl->failure();
  // Bound to vfio-pci again (devbind set its driver_override) for the tests that follow.
  std::ofstream("/sys/bus/pci/drivers_probe") << bdf << std::flush;
  EXPECT_TRUE(std::filesystem::exists("/sys/bus/pci/drivers/vfio-pci/" + bdf)) << bdf << " is not back on vfio-pci";
}

}  // namespace
}  // namespace vfe::vmtest
