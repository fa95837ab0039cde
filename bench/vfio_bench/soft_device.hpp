#pragma once
/// \file
/// `SoftDevice` and `LoopbackQueue`: a device made of software, so the engine's own per-I/O cost
/// can be measured on any machine. The device is a thread that consumes 64-byte submission entries
/// and posts 16-byte completion entries with a phase tag, in DMA-able memory, exactly as an NVMe
/// controller does; its "doorbells" are stores to shared words, and in interrupt mode it signals
/// an eventfd once per batch of completions.

#include <atomic>
#include <cstdint>
#include <optional>
#include <thread>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "base/units.hpp"
#include "dma/host_memory.hpp"
#include "engine/queue_pair.hpp"

namespace vfe::bench {

struct SoftSqe {
  std::uint64_t cookie;  // the driver's request pointer, echoed back
  std::uint64_t rest[7];
};
struct SoftCqe {
  std::uint64_t cookie;
  std::uint32_t status;
  std::uint16_t sq_head;
  std::uint16_t phase;  // written last, with release order: the entry is new when it matches
};
static_assert(sizeof(SoftSqe) == 64 && sizeof(SoftCqe) == 16);

/// The device: owns the queue memory and the thread that plays the hardware.
class SoftDevice {
 public:
  /// `entries` per queue (a power of two); `irq`: signal `eventfd()` after each batch.
  [[nodiscard]] static Result<std::unique_ptr<SoftDevice>> start(std::uint32_t entries, bool irq, int cpu);
  ~SoftDevice();
  SoftDevice(const SoftDevice&) = delete;
  SoftDevice& operator=(const SoftDevice&) = delete;

  /// Entries per queue (a power of two).
  [[nodiscard]] std::uint32_t entries() const noexcept { return entries_; }
  /// The submission queue the driver fills (entries() of them), and the completion queue the
  /// device posts to; both live as long as the device.
  [[nodiscard]] SoftSqe* sq() const noexcept { return sq_; }
  [[nodiscard]] SoftCqe* cq() const noexcept { return cq_; }
  /// Signalled once per batch of completions in interrupt mode; owned by the device.
  [[nodiscard]] int eventfd() const noexcept { return irq_fd_.get(); }
  /// The submission doorbell: the driver stores the new tail (release: the entries before it).
  void ring_sq(std::uint32_t tail) noexcept { sq_tail_.store(tail, std::memory_order_release); }
  /// The completion doorbell: entries before `head` may be reused.
  void ring_cq(std::uint32_t head) noexcept { cq_head_.store(head, std::memory_order_release); }
  /// Interrupts signalled so far (any thread, relaxed).
  [[nodiscard]] std::uint64_t interrupts() const noexcept { return irqs_.load(std::memory_order_relaxed); }
  /// The vector's mask bit, as MSI-X has it: while masked, an interrupt is held pending, and
  /// unmasking signals it then. Any thread.
  void set_masked(bool masked) noexcept;

 private:
  SoftDevice(std::uint32_t entries, bool irq, dma::HostMemory memory, Fd irq_fd) noexcept;
  void run(int cpu) noexcept;
  void raise_interrupt() noexcept;
  void signal() noexcept;

  std::uint32_t entries_;
  bool irq_;
  dma::HostMemory memory_;
  SoftSqe* sq_;
  SoftCqe* cq_;
  Fd irq_fd_;
  alignas(kCacheLine) std::atomic<std::uint32_t> sq_tail_{0};
  alignas(kCacheLine) std::atomic<std::uint32_t> cq_head_{0};
  alignas(kCacheLine) std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> irqs_{0};
  static constexpr std::uint32_t kMasked = 1, kPending = 2;
  alignas(kCacheLine) std::atomic<std::uint32_t> vector_{0};  // kMasked | kPending
  std::thread thread_;
};

/// The driver side: an engine queue pair over a SoftDevice, written like a real driver's
/// (entries, one doorbell per batch, completions by phase, one completion doorbell per reap).
class LoopbackQueue final : public engine::QueuePair {
 public:
  LoopbackQueue(SoftDevice& device, std::size_t submission_capacity);
  ~LoopbackQueue() override;
  LoopbackQueue(const LoopbackQueue&) = delete;
  LoopbackQueue& operator=(const LoopbackQueue&) = delete;

  /// Doorbell writes, submission and completion (what MMIO writes they would be on hardware).
  [[nodiscard]] std::uint64_t doorbells() const noexcept { return doorbells_.load(std::memory_order_relaxed); }

 private:
  std::size_t submit_to_device(std::span<engine::Request*> reqs) noexcept override;
  std::size_t reap_completions() noexcept override;
  void mask_interrupt(bool masked) noexcept override;

  SoftDevice* dev_;
  std::uint32_t mask_;
  std::uint32_t sq_tail_ = 0;
  std::uint32_t cq_head_ = 0;
  std::uint16_t phase_ = 1;
  std::uint32_t in_flight_ = 0;
  std::atomic<std::uint64_t> doorbells_{0};
};

}  // namespace vfe::bench
