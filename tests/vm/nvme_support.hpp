#pragma once
// Helpers the NVMe VM tests share: opening a controller of the rig (a Result, for
// VFE_ASSERT_OK_AND_ASSIGN), a request that can be waited for, and filling and checking buffers
// with the disk pattern.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "dma/dma_buffer.hpp"
#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/io_queue.hpp"
#include "engine/worker.hpp"
#include "mmio/config_space.hpp"
#include "mmio/pci_caps.hpp"
#include "tests/unit/support/assert_ok.hpp"
#include "tests/vm/nvme_pattern.hpp"
#include "tests/vm/vm_env.hpp"

namespace vfe::vmtest {

inline constexpr std::uint32_t kBlock = 512;  // QEMU's NVMe namespaces use 512-byte blocks

/// The rig's NVMe controller `index` (0: node 0, 1: behind the node-1 bridge), for
/// VFE_ASSERT_OK_AND_ASSIGN.
inline Result<std::unique_ptr<nvme::Controller>> open_nvme(unsigned index, nvme::ControllerOptions options = {}) {
  VFE_TRY_ASSIGN(const vfio::Bdf bdf, device_of("nvme", index));
  options.mode = mode();
  return nvme::Controller::create(bdf.to_string(), options);
}

/// Waits until `c` is running after its `n`-th reset (for ASSERT_NO_FATAL_FAILURE).
inline void wait_for_reset(nvme::Controller& c, std::uint64_t n) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(20'000);
  while (c.stats().resets.load() < n || c.state() != nvme::ControllerState::running) {
    ASSERT_LT(std::chrono::steady_clock::now(), end) << "reset " << n << " did not finish: " << c.failure();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

/// A request whose completion a test thread can wait for.
struct WaitableRequest : nvme::IoRequest {
  std::atomic<int> completions{0};
  std::atomic<int> result{1};
  std::atomic<bool> on_worker{true};
  engine::Worker* worker = nullptr;

  /// A request of `op` on `blocks` blocks from `lba` (namespace 1), data in `segs`.
  WaitableRequest(engine::Worker* w, nvme::IoOpcode op, std::uint64_t lba_, std::uint64_t blocks_,
                  std::span<const nvme::DataSegment> segs = {})
      : WaitableRequest(w) {
    opcode = op;
    lba = lba_;
    blocks = blocks_;
    data = segs;
  }
  explicit WaitableRequest(engine::Worker* w = nullptr) : worker(w) {
    on_complete = [](engine::Request* r, int rc) noexcept {
      auto* self = static_cast<WaitableRequest*>(r);
      if (self->worker != nullptr && !self->worker->on_worker_thread()) {
        self->on_worker = false;
      }
      self->result.store(rc, std::memory_order_relaxed);
      self->completions.fetch_add(1, std::memory_order_release);
    };
  }
  /// Waits until completed once; returns the status, or 1 on timeout.
  int wait(std::chrono::milliseconds limit = std::chrono::milliseconds(20'000)) const {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (completions.load(std::memory_order_acquire) == 0) {
      if (std::chrono::steady_clock::now() > end) {
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return result.load(std::memory_order_relaxed);
  }
};

/// Submits `req` (retrying while the ring is full) and waits for it; returns its status. A
/// request that never completes ends the process: the test could not unwind with it in flight.
inline int run_io(nvme::IoQueue& q, WaitableRequest& req) {
  int rc;
  while ((rc = q.submit(req)) == -EAGAIN) {
    std::this_thread::yield();
  }
  if (rc != 0) {
    return rc;
  }
  rc = req.wait();
  if (rc == 1) {
    std::fprintf(stderr, "FATAL: an NVMe request did not complete within 20 s\n");
    std::abort();
  }
  return rc;
}

/// Fills `len` bytes at `p` with the pattern of controller `index` for disk offset `offset`.
inline void fill_pattern(void* p, unsigned index, std::uint64_t offset, std::uint64_t len) {
  auto* w = static_cast<std::uint64_t*>(p);
  for (std::uint64_t i = 0; i < len / 8; ++i) {
    w[i] = pattern_word(index, offset + i * 8);
  }
}

/// The first disk offset in [offset, offset + len) whose bytes at `p` differ from the pattern,
/// or ~0 when all match.
inline std::uint64_t first_mismatch(const void* p, unsigned index, std::uint64_t offset, std::uint64_t len) {
  const auto* w = static_cast<const std::uint64_t*>(p);
  for (std::uint64_t i = 0; i < len / 8; ++i) {
    if (w[i] != pattern_word(index, offset + i * 8)) {
      return offset + i * 8;
    }
  }
  return ~0ULL;
}

/// Faults the NVMe driver recovers from by a controller reset.
enum class Fault {
  flr,             ///< a function level reset from another thread: CSTS.RDY drops
  bus_master_off,  ///< Bus Master Enable cleared: QEMU's controller cannot DMA and sets CSTS.CFS
};

inline const char* to_string(Fault f) { return f == Fault::flr ? "FLR" : "bus mastering off"; }

/// Injects `f` into controller `c` (any thread). Fails fatally when it cannot.
inline void inject_fault(nvme::Controller& c, Fault f) {
  if (f == Fault::flr) {
    ASSERT_TRUE(c.device().reset());
    return;
  }
  VFE_ASSERT_OK_AND_ASSIGN(auto config, mmio::ConfigSpace::open(c.device()));
  VFE_ASSERT_OK(config.disable_bus_master());
}

/// A thread that injects a fault every `period` into the given controllers in turn, alternating
/// FLR and bus mastering off, until `stop()`. `injected(i)` counts those controller i got.
class FaultInjector {
 public:
  FaultInjector(std::vector<nvme::Controller*> ctrls, std::chrono::milliseconds period)
      : ctrls_(std::move(ctrls)), injected_(ctrls_.size()), thread_([this, period] { run(period); }) {}
  ~FaultInjector() { stop(); }
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  void stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  [[nodiscard]] std::uint64_t injected(std::size_t i) const { return injected_[i].load(); }

 private:
  void run(std::chrono::milliseconds period) {
    std::unique_lock lock(mu_);
    for (std::uint64_t n = 0; !cv_.wait_for(lock, period, [this] { return stop_; }); ++n) {
      const std::size_t i = n % ctrls_.size();
      inject_fault(*ctrls_[i], (n / ctrls_.size()) % 2 == 0 ? Fault::flr : Fault::bus_master_off);
      injected_[i].fetch_add(1);
    }
  }

  std::vector<nvme::Controller*> ctrls_;
  std::vector<std::atomic<std::uint64_t>> injected_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: it uses the members above
};

}  // namespace vfe::vmtest
