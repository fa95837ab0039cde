#pragma once
/// \file
/// `IoQueue`: one NVMe I/O submission/completion queue pair served by an engine worker.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "base/units.hpp"
#include "dma/dma_buffer.hpp"
#include "drivers/nvme/io_request.hpp"
#include "drivers/nvme/queue_host.hpp"
#include "drivers/nvme/sgl.hpp"
#include "drivers/nvme/spec.hpp"
#include "engine/queue_pair.hpp"
#include "mmio/register32.hpp"

namespace vfe::nvme {

/// The most entries an I/O queue may have: a command ID is 4 bits of generation and 12 bits of
/// slot (as Linux's nvme driver does), so a late completion of a command the queue gave up on
/// never completes the request that reused its slot.
inline constexpr std::uint32_t kMaxIoQueueEntries = 4096;

/// Per-queue choices.
struct IoQueueOptions {
  /// Submission and completion queue entries (at most CAP.MQES + 1 and kMaxIoQueueEntries);
  /// entries - 1 commands fit.
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
  std::atomic<std::uint64_t> sq_doorbells{0};   ///< submission doorbell MMIO writes (at most one per batch)
  std::atomic<std::uint64_t> cq_doorbells{0};   ///< completion doorbell MMIO writes (at most one per reap)
  /// Doorbell updates that went to the shadow doorbell only: the controller's event index said
  /// it would read the new value without being told (see ControllerOptions::shadow_doorbells).
  std::atomic<std::uint64_t> doorbells_elided{0};
  std::atomic<std::uint64_t> errors{0};         ///< requests completed with an error
  std::atomic<std::uint64_t> retries{0};        ///< requests sent again (a retryable error, a reset)
  std::atomic<std::uint64_t> watchdog_reaps{0};  ///< completions found for a late command (a lost interrupt)
  /// MSI-X Vector Control writes of an adaptive queue (masking while its worker polls).
  std::atomic<std::uint64_t> interrupt_mask_writes{0};
};

/// A queue pair on the controller, bound to one worker. Any thread submits with `submit`; the
/// worker puts batches of commands in the submission queue and rings its doorbell once per
/// batch, and reaps completions by phase tag, writing the completion doorbell once per reap. On
/// the data path there are no MMIO reads, locks, allocations or system calls.
///
/// While the controller is reset (see `Controller`), the worker neither submits nor reaps; the
/// controller collects what was in flight, re-creates the queue on the device with the same ID
/// and memory, and the worker sends the collected requests again. The object, its ID and its
/// worker stay the same throughout. The controller reaches the queue only through the
/// `HostedQueue` interface (a private base), the queue its controller only through `QueueHost`.
///
/// Destruction (from a thread other than the worker, best after the requests have completed):
/// the queue is detached, the controller deletes it (§5.6 the SQ, then §5.5 the CQ), and what is
/// still in flight or waiting completes with -ECANCELED on the destroying thread. One exception:
/// on a controller that failed and whose DMA could not be stopped (see `Controller`), the
/// requests in flight never complete and the queue's memory and ID are abandoned (logged), since
/// the device may still write them.
///
/// The engine's `QueuePair` is a private base: its `try_submit` and `submit_bulk` would skip the
/// validation `submit` does (a request sent that way could get PRPs for the wrong length), so
/// only `submit` takes requests.
class IoQueue final : private engine::QueuePair, private HostedQueue {
 public:
  using engine::QueuePair::completion_mode;
  using engine::QueuePair::worker;

  /// Made by `Controller::create_io_queue`, which claims `qid` and allocates `memory`
  /// (`memory_bytes(options.entries, page size, max transfer)`, page aligned): attaches the queue to `worker`
  /// (`eventfd`: its MSI-X vector's, or -1 when polled), then has `host` create it on the device
  /// and list it.
  [[nodiscard]] static Result<std::unique_ptr<IoQueue>> open(QueueHost& host, std::uint16_t qid,
                                                             const IoQueueOptions& options, dma::DmaBuffer memory,
                                                             engine::Worker& worker, int eventfd);
  ~IoQueue() override;

  /// Hands `req` to the worker. Returns 0; -EAGAIN when the submission ring is full (retry;
  /// also while the controller is being reset: the request waits in the ring, and goes to the
  /// device once it is back); -EINVAL for a request that cannot be described (unknown
  /// namespace, data size not blocks x block size, a layout PRPs cannot express, zero blocks,
  /// LBA overflow); -EOPNOTSUPP for write zeroes on a controller without it; -ENODEV (or the
  /// failure's errno) once the controller failed; -ECANCELED once the queue is closed (`close`,
  /// or being destroyed). Only on 0 will `on_complete` run. Any thread; noexcept; no allocation.
  [[nodiscard]] int submit(IoRequest& req) noexcept;
  /// Stops taking requests: once it returns, every `submit` returns -ECANCELED and no `submit`
  /// begun before is still running (it waits for those, never for submits that begin after
  /// it). Requests already taken complete as usual. Any thread; idempotent. The destructor begins with it. When other threads may still be submitting,
  /// close first, and destroy the queue once they have stopped (have seen -ECANCELED): a
  /// `submit` that begins after the destructor returned uses freed memory, which no queue can
  /// refuse.
  void close() noexcept;

  /// The queue ID on the controller (also its MSI-X vector in interrupt and adaptive modes).
  [[nodiscard]] std::uint16_t qid() const noexcept { return qid_; }
  /// Submission and completion queue entries; entries() - 1 commands can be in flight.
  [[nodiscard]] std::uint32_t entries() const noexcept { return entries_; }
  /// The most one command of this queue carries, counted in pages from the one its data starts
  /// in: the controller's `max_transfer_bytes()`, or less on a deep queue of a controller whose
  /// MDTS passes 2 MiB (its command slots keep one PRP list page, 2 MiB and a page, so that the
  /// queue's memory stays within one 2 MiB hugepage). Requests are split at this size.
  [[nodiscard]] std::uint64_t max_transfer_bytes() const noexcept { return layout_.max_transfer; }
  /// Counters, readable from any thread (relaxed).
  [[nodiscard]] const IoQueueStats& stats() const noexcept { return stats_; }
  /// Bytes of queue memory for `entries`: [SQ | CQ | the PRP list pages of each command slot, as
  /// many as a command of `max_transfer` bytes needs while the whole stays within 2 MiB].
  [[nodiscard]] static std::uint64_t memory_bytes(std::uint32_t entries, std::uint32_t page_size,
                                                  std::uint64_t max_transfer) noexcept {
    return layout(entries, page_size, max_transfer).bytes;
  }

 private:
  struct Slot {
    IoRequest* req = nullptr;
    std::uint32_t epoch = 0;
    std::uint16_t generation = 0;  // of the command in it; the CID's top 4 bits
  };
  // Byte offsets in the queue memory: the SQ at 0, then the CQ, then the PRP list pages, `list`
  // bytes of them per command slot.
  struct Layout {
    std::uint64_t cq = 0;
    std::uint64_t prp_lists = 0;
    std::uint64_t list = 0;
    std::uint64_t max_transfer = 0;  // what one command of this queue carries
    std::uint64_t bytes = 0;
  };
  static constexpr std::uint64_t kHugePage = 2ULL << 20;
  [[nodiscard]] static Layout layout(std::uint32_t entries, std::uint32_t page_size,
                                     std::uint64_t max_transfer) noexcept;
  // Command slot `slot`'s PRP list pages, and their device address.
  [[nodiscard]] std::uint64_t* slot_list(std::uint16_t slot) const noexcept {
    return prp_lists_ + slot * (layout_.list / sizeof(std::uint64_t));
  }
  [[nodiscard]] std::uint64_t slot_list_iova(std::uint16_t slot) const noexcept {
    return prp_lists_iova_ + slot * layout_.list;
  }
  // The same memory as SGL descriptors: one page of them (QEMU maps at most 1024 pieces a command).
  [[nodiscard]] std::span<SglDescriptor> slot_sgl(std::uint16_t slot) const noexcept {
    return {reinterpret_cast<SglDescriptor*>(slot_list(slot)), page_size_ / sizeof(SglDescriptor)};
  }
  [[nodiscard]] bool data_layout_ok(std::span<const DataSegment> data, bool separate_metadata) const noexcept;
  void fill_data(IoRequest& req, std::uint16_t slot, std::uint64_t& n, Sqe& cmd) noexcept;
  void put_prps(std::span<const DataSegment> data, std::uint16_t slot, Sqe& cmd) noexcept;
  IoQueue(QueueHost& host, const QueueParams& params, std::uint16_t qid, const IoQueueOptions& options,
          dma::DmaBuffer memory);

  // HostedQueue (io_queue_recovery.cpp): what the controller does to the queue.
  [[nodiscard]] std::uint16_t queue_id() const noexcept override { return qid_; }
  [[nodiscard]] Result<void> create_on_device(std::uint64_t generation) override;
  [[nodiscard]] Result<void> delete_on_device() override;
  [[nodiscard]] std::uint64_t device_generation() const noexcept override { return device_generation_; }
  [[nodiscard]] Result<void> fail_requests(int err) override;
  [[nodiscard]] Result<void> requeue_requests(int err) override;
  [[nodiscard]] Result<void> restart_requests() override;
  void post_age_check(std::uint32_t max_age) noexcept override;
  [[nodiscard]] std::optional<std::uint16_t> late_command() const noexcept override;

  // Worker only (or the destroying thread once detached): the bodies of the calls above.
  void fail_in_flight(int err) noexcept;
  void abandon() noexcept;
  void requeue_in_flight(int err) noexcept;
  void restart() noexcept;
  void check_ages() noexcept;
  [[nodiscard]] bool find_late() noexcept;
  [[nodiscard]] bool paused() const noexcept;
  [[nodiscard]] std::size_t reap() noexcept;
  [[nodiscard]] std::uint64_t issue_retries(int failed) noexcept;
  void ring_sq(std::uint64_t issued) noexcept;
  void ring_cq() noexcept;
  [[nodiscard]] bool needs_mmio(volatile std::uint32_t* shadow, volatile std::uint32_t* event,
                                std::uint32_t value) noexcept;
  void finish_request(IoRequest& req) noexcept;
  void put_aside(IoRequest& req) noexcept;
  void empty_rings() noexcept;

  std::size_t submit_to_device(std::span<engine::Request*> reqs) noexcept override;
  std::size_t reap_completions() noexcept override;
  void mask_interrupt(bool masked) noexcept override;
  enum class Issue { issued, no_slot, refused };
  [[nodiscard]] Issue issue_next(IoRequest& req) noexcept;  // one command of req
  [[nodiscard]] bool issue_rest(IoRequest& req, int failed, std::uint64_t& issued) noexcept;
  void finish_command(std::uint16_t slot, int err, Status st) noexcept;
  void complete(IoRequest& req) noexcept;
  [[nodiscard]] int validate(const IoRequest& req, const NamespaceInfo& ns) const noexcept;
  [[nodiscard]] int validate_blocks(const IoRequest& req, const NamespaceInfo& ns) const noexcept;
  [[nodiscard]] int validate_passthrough(const IoRequest& req, const NamespaceInfo& ns) const noexcept;
  [[nodiscard]] int submit_counted(IoRequest& req) noexcept;

  QueueHost* host_;
  std::uint16_t qid_;
  std::uint32_t entries_;
  std::uint32_t page_size_;
  mmio::Register32 sq_doorbell_;  // resolved once: a doorbell write is one store
  mmio::Register32 cq_doorbell_;
  // Adaptive queues: the Vector Control word of the queue's MSI-X entry, and its other bits
  // (kept as read: RsvdP and TPH steering tags). Unused when the table is not mmap'd.
  mmio::Register32 vector_control_;
  std::uint32_t vector_control_rest_ = 0;
  // This queue's words in the shadow doorbell and event index buffers; null when not in use.
  volatile std::uint32_t* shadow_sq_ = nullptr;
  volatile std::uint32_t* shadow_cq_ = nullptr;
  volatile std::uint32_t* event_sq_ = nullptr;
  volatile std::uint32_t* event_cq_ = nullptr;
  Layout layout_;
  dma::DmaBuffer memory_;  // laid out by layout_, page aligned
  std::uint32_t retries_;  // ControllerOptions::retries
  bool sgl_;        // the controller takes SGLs for NVM commands (SGLS bits 1:0 01b or 10b)
  bool sgl_dword_;  // ... with dword-aligned addresses and lengths only (10b)
  bool sgl_mptr_;   // ... and with a contiguous metadata buffer in MPTR (bit 17)
  Sqe* sq_;
  volatile Cqe* cq_;
  std::uint64_t* prp_lists_;
  std::uint64_t prp_lists_iova_;

  // Worker-only state, stored on every batch: on lines of its own, apart from the fixed facts
  // above that every submit reads on the submitter's thread.
  alignas(kCacheLine) std::vector<Slot> slots_;  // index = command id
  std::vector<std::uint16_t> free_;  // free slots (a stack)
  std::vector<IoRequest*> retry_;    // requests to send again (a stack; reserved: never allocates)
  std::uint32_t sq_tail_ = 0;  // 32 bits: a queue may have 65536 entries
  std::uint32_t cq_head_ = 0;
  std::uint16_t phase_ = 1;
  bool dead_ = false;     // fail_in_flight ran: the completion queue is no longer read
  bool deleted_ = false;  // gone from the controller: its doorbells must not be written

  // ~IoQueue began: the worker is paused too (see paused()).
  std::atomic<bool> destroying_{false};
  // submit() enters through the gate, on a line of its own: bit 31 is set by close() (submits
  // refuse from then on), bits 30:0 count the submits under way. Entering is a CAS that fails
  // once the bit is set, so after close() the count only falls: close() waits for the submits
  // already in, never for new ones, however many threads keep trying.
  static constexpr std::uint32_t kClosedBit = 1U << 31;
  static constexpr std::uint32_t kMsixMaskBit = 1U;  // MSI-X Vector Control bit 0
  alignas(kCacheLine) std::atomic<std::uint32_t> gate_{0};

  bool registered_ = false;  // the host lists it (set by the host in open, also when that fails)
  std::uint64_t device_generation_ = 0;  // written under the host's lock
  std::atomic<bool> timed_out_{false};
  std::atomic<std::uint32_t> late_cid_{0};  // published by timed_out_'s release store
  std::atomic<bool> check_pending_{false};  // a check_ages task is posted and not yet run
  std::uint32_t check_max_age_ = 0;         // its argument, written before it is posted
  // Stored by the worker on every batch and reap: not on the gate's line, which submitters
  // write. Last: the class's alignment pads the rest of its line.
  alignas(kCacheLine) IoQueueStats stats_;
};

}  // namespace vfe::nvme
