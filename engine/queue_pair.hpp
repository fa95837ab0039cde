#pragma once
/// \file
/// `QueuePair`: what a driver's hardware queue looks like to the engine.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/result.hpp"
#include "engine/mpsc_ring.hpp"
#include "engine/worker.hpp"

namespace vfe::engine {

/// One I/O request as the engine moves it. Drivers derive their request types from it (or embed
/// it first). The engine never allocates or frees requests: the submitter owns them until
/// `on_complete` has run, on the queue's worker.
struct Request {
  /// Runs on the worker that owns the queue, once per request. `status` is 0 or a negative errno
  /// (drivers map device status to errno and keep the detail in their request type).
  void (*on_complete)(Request* req, int status) noexcept = nullptr;
  void* user = nullptr;
};

/// How a queue learns about completions.
enum class CompletionMode {
  polling,    ///< the worker checks the completion queue on every loop
  interrupt,  ///< the worker checks it when the queue's interrupt vector fires
  adaptive,   ///< both: every loop while the worker polls, and when the vector fires, so an
              ///< adaptive worker polls while busy and sleeps until the next interrupt when idle
};

[[nodiscard]] const char* to_string(CompletionMode mode) noexcept;
/// "polling" or "poll", "interrupt" or "irq", "adaptive" (command-line words); nullopt otherwise.
[[nodiscard]] std::optional<CompletionMode> parse_completion_mode(std::string_view name) noexcept;
/// The worker mode that suits queues of `mode`: a polling worker for polled queues, a sleeping
/// one for interrupt-driven queues, an adaptive one for adaptive queues.
[[nodiscard]] WorkerMode worker_mode_for(CompletionMode mode) noexcept;

/// A submission side and a completion side bound to one worker. Application threads call
/// `try_submit` (lock-free, from any thread); the worker drains those into the device in
/// batches (`submit_to_device`: the driver writes its descriptors and rings the doorbell once)
/// and reaps completions (`reap_completions`), on every loop (polling) or when the vector's
/// eventfd fires (interrupt), or both (adaptive). Drivers implement the two hooks; both run on
/// the worker only.
class QueuePair : public Pollable {
 public:
  /// Hands `req` to the worker; false when the submission ring is full (back off, retry). Any
  /// thread, noexcept, no allocation; wakes the worker if it sleeps.
  [[nodiscard]] bool try_submit(Request* req) noexcept;
  /// Several at once; returns how many were taken (the first n).
  [[nodiscard]] std::size_t submit_bulk(std::span<Request* const> reqs) noexcept;

  /// Binds the queue to `worker`: registers it as a pollable and, in interrupt and adaptive mode, watches
  /// `irq_eventfd` (which must stay open until `detach` returns). Setup path; blocks.
  [[nodiscard]] Result<void> attach(Worker& worker, CompletionMode mode, int irq_eventfd = -1);
  /// Undoes `attach`; afterwards the hooks no longer run. Requests still queued stay queued.
  [[nodiscard]] Result<void> detach();

  [[nodiscard]] Worker* worker() const noexcept { return worker_; }
  [[nodiscard]] CompletionMode completion_mode() const noexcept { return mode_; }

  ~QueuePair() override;
  QueuePair(const QueuePair&) = delete;
  QueuePair& operator=(const QueuePair&) = delete;

 protected:
  /// `submission_capacity`: requests the cross-thread ring holds before try_submit says no.
  explicit QueuePair(std::size_t submission_capacity);

  /// Worker only: put `reqs` on the device's queue and ring the doorbell once; return how many
  /// were taken (a full device queue takes fewer; the rest are offered again next loop).
  virtual std::size_t submit_to_device(std::span<Request*> reqs) noexcept = 0;
  /// Worker only: process the completions the device posted (calling each request's
  /// on_complete) and return how many.
  virtual std::size_t reap_completions() noexcept = 0;

  /// Adaptive queues, on the worker: hold back (`masked`) or let through the queue's interrupt
  /// while the worker polls the queue anyway (Pollable::set_interrupts says when). An interrupt
  /// that comes while masked must be raised on unmask (MSI-X keeps it pending), or be harmless
  /// to lose: the worker polls once more after unmasking, before it sleeps. A device that loses
  /// it must order "post the completion, then look at the mask" against "unmask, then look at
  /// the completions" itself (a read-modify-write of the mask word on both sides does). The
  /// default does nothing: interrupts stay on, which is correct, only costlier.
  virtual void mask_interrupt(bool masked) noexcept { static_cast<void>(masked); }

  /// Detached queues only (teardown): hands every request still waiting for `submit_to_device`
  /// (taken from the ring but refused, or still in the ring) to `fn`, in order, and forgets it.
  void drain_waiting(void (*fn)(Request* req, void* ctx) noexcept, void* ctx) noexcept;

 private:
  std::size_t poll() noexcept final;
  [[nodiscard]] bool needs_polling() const noexcept final { return mode_ == CompletionMode::polling; }
  void set_interrupts(bool enabled) noexcept final {
    if (mode_ == CompletionMode::adaptive) {
      mask_interrupt(!enabled);
    }
  }

  static constexpr std::size_t kBatch = 32;
  // Read by every try_submit, written only by attach and detach: before the ring, away from the
  // lines the worker writes on every poll.
  Worker* worker_ = nullptr;
  CompletionMode mode_ = CompletionMode::polling;
  int irq_fd_ = -1;
  MpscRing<Request*> submissions_;
  // Worker only: taken from the ring, not yet accepted by the device. Lines of its own, so
  // held.count's store on every poll does not share a line with the ring's head.
  struct alignas(kCacheLine) Held {
    std::size_t count = 0;
    Request* items[kBatch] = {};
  };
  Held held_;
};

}  // namespace vfe::engine
