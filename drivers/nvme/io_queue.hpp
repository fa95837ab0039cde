#pragma once
/// \file
/// `IoQueue`: one NVMe I/O submission/completion queue pair served by an engine worker.

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "dma/dma_buffer.hpp"
#include "drivers/nvme/io_request.hpp"
#include "drivers/nvme/spec.hpp"
#include "engine/queue_pair.hpp"
#include "mmio/region.hpp"

namespace vfe::nvme {

class Controller;

/// Per-queue choices.
struct IoQueueOptions {
  /// Submission and completion queue entries (at most CAP.MQES); entries - 1 commands fit.
  std::uint32_t entries = 256;
  /// How the queue learns of completions: polling costs a core, interrupt mode sleeps between
  /// MSI-X vectors, adaptive does both (the worker's mode decides when it sleeps).
  engine::CompletionMode completion = engine::CompletionMode::polling;
  /// NUMA node for the queue's memory (-1: the kernel's default); give the worker's node.
  int numa_node = -1;
  /// Capacity of the cross-thread submission ring (requests waiting for the worker).
  std::size_t submission_capacity = 1024;
};

/// Counters of one queue, written by its worker only and readable from any thread (relaxed).
struct IoQueueStats {
  std::atomic<std::uint64_t> requests{0};       ///< requests completed
  std::atomic<std::uint64_t> commands{0};       ///< commands issued (a split request has several)
  std::atomic<std::uint64_t> sq_doorbells{0};   ///< submission doorbell writes (one per batch)
  std::atomic<std::uint64_t> cq_doorbells{0};   ///< completion doorbell writes (one per reap)
  std::atomic<std::uint64_t> errors{0};         ///< requests completed with an error
};

/// A queue pair on the controller, bound to one worker. Any thread submits with `submit`; the
/// worker puts batches of commands in the submission queue and rings its doorbell once per
/// batch, and reaps completions by phase tag, writing the completion doorbell once per reap. On
/// the data path there are no MMIO reads, locks, allocations or system calls.
///
/// Destruction (from a thread other than the worker, best after the requests have completed):
/// the queue is detached, the controller deletes it (§5.6 the SQ, then §5.5 the CQ), and what is
/// still in flight or waiting completes with -ECANCELED on the destroying thread.
class IoQueue final : public engine::QueuePair {
 public:
  ~IoQueue() override;

  /// Hands `req` to the worker. Returns 0; -EAGAIN when the submission ring is full (retry);
  /// -EINVAL for a request that cannot be described (unknown namespace, data size not blocks x
  /// block size, a layout PRPs cannot express, zero blocks, LBA overflow); -EOPNOTSUPP for write
  /// zeroes on a controller without it; -ENODEV (or the failure's errno) once the controller
  /// failed; -ECANCELED once the queue is being destroyed. Only on 0 will `on_complete` run. Any
  /// thread; noexcept; no allocation.
  [[nodiscard]] int submit(IoRequest& req) noexcept;

  /// The queue ID on the controller (also its MSI-X vector in interrupt and adaptive modes).
  [[nodiscard]] std::uint16_t qid() const noexcept { return qid_; }
  /// Submission and completion queue entries; entries() - 1 commands can be in flight.
  [[nodiscard]] std::uint32_t entries() const noexcept { return entries_; }
  /// Counters, readable from any thread (relaxed).
  [[nodiscard]] const IoQueueStats& stats() const noexcept { return stats_; }

  /// Watchdog: asks the worker to look for commands older than `max_age` ticks (at most one
  /// such request outstanding; skipped when the worker's task ring is full).
  void post_age_check(std::uint32_t max_age) noexcept;
  /// Worker only (Controller::fail runs it there once the controller is disabled): every
  /// command in flight completes with `err` (negative errno) and the completion queue is no
  /// longer read.
  void fail_in_flight(int err) noexcept;
  /// True once check_ages found a command too old (read by the watchdog).
  [[nodiscard]] bool timed_out() const noexcept { return timed_out_.load(std::memory_order_acquire); }

 private:
  friend class Controller;
  struct Slot {
    IoRequest* req = nullptr;
    std::uint32_t epoch = 0;
  };
  IoQueue(Controller& ctrl, std::uint16_t qid, const IoQueueOptions& options, dma::DmaBuffer memory,
          std::uint64_t sq_bytes, std::uint64_t cq_bytes);
  void check_ages() noexcept;

  std::size_t submit_to_device(std::span<engine::Request*> reqs) noexcept override;
  std::size_t reap_completions() noexcept override;
  enum class Issue { issued, no_slot, refused };
  [[nodiscard]] Issue issue_next(IoRequest& req) noexcept;  // one command of req
  [[nodiscard]] bool issue_rest(IoRequest& req, int failed, std::uint64_t& issued) noexcept;
  void finish_command(std::uint16_t cid, int err, Status st) noexcept;
  void complete(IoRequest& req) noexcept;
  [[nodiscard]] int validate(const IoRequest& req) const noexcept;

  Controller* ctrl_;
  mmio::Bar* bar_;
  std::uint16_t qid_;
  std::uint32_t entries_;
  std::uint32_t page_size_;
  std::uint64_t max_transfer_;
  std::uint64_t sq_doorbell_;
  std::uint64_t cq_doorbell_;
  dma::DmaBuffer memory_;  // [SQ | CQ | one PRP list page per command slot], page aligned
  std::uint64_t cq_offset_;
  Sqe* sq_;
  volatile Cqe* cq_;
  std::uint64_t* prp_lists_;
  std::uint64_t prp_lists_iova_;

  // Worker-only state.
  std::vector<Slot> slots_;       // index = command id
  std::vector<std::uint16_t> free_;  // free command ids (a stack)
  std::uint32_t sq_tail_ = 0;  // 32 bits: a queue may have 65536 entries
  std::uint32_t cq_head_ = 0;
  std::uint16_t phase_ = 1;
  bool dead_ = false;     // fail_in_flight ran: the completion queue is no longer read
  bool deleted_ = false;  // gone from the controller: its doorbells must not be written

  std::atomic<bool> closing_{false};  // the destructor began: submit refuses

  bool registered_ = false;  // the controller lists it (set by create_io_queue)
  std::atomic<bool> timed_out_{false};
  std::atomic<bool> check_pending_{false};  // a check_ages task is posted and not yet run
  std::uint32_t check_max_age_ = 0;         // its argument, written before it is posted
  IoQueueStats stats_;
};

}  // namespace vfe::nvme
