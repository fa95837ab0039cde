#pragma once
/// \file
/// The contract between an NVMe controller and its I/O queues, from both sides: `QueueHost` is
/// all a queue may use of its controller, `HostedQueue` all the controller may do to a queue.
/// Neither class needs the other's definition, and neither is the other's friend.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.hpp"
#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/spec.hpp"
#include "mmio/region.hpp"

namespace vfe::nvme {

/// Whether a controller serves I/O: `resetting` while it recovers from a fault (requests wait),
/// `failed` for good (see `Controller::failure()`), or `shut_down`.
enum class ControllerState { running, resetting, failed, shut_down };

class HostedQueue;

/// What a queue needs to know of its controller's bring-up to lay itself out.
struct QueueParams {
  mmio::Bar* bar = nullptr;            ///< BAR0, for the doorbells
  std::uint32_t page_size = 4096;      ///< CC.MPS: PRP entries and list pages
  std::uint64_t max_transfer = 0;      ///< bytes one command may move (MDTS)
  std::uint32_t doorbell_stride = 4;   ///< CAP.DSTRD in bytes
  std::uint32_t retries = 5;           ///< attempts a failed request gets again
  std::uint32_t sgls = 0;              ///< Identify Controller SGLS: SGL support (bits 1:0)
  /// The shadow doorbell and event index buffers (§5.8 Doorbell Buffer Config), laid out as the
  /// doorbell registers are (SQ y at 2y x stride bytes, CQ y after it); null when not in use.
  volatile std::uint32_t* shadow_doorbells = nullptr;
  volatile std::uint32_t* event_indexes = nullptr;
  /// Where the MSI-X table starts in `bar`, when it is there (PCI 3.0 §6.8.2.6); an adaptive
  /// queue masks its vector in it while its worker polls. Unset: the table is in another BAR.
  std::optional<std::uint32_t> msix_table;
};

/// The controller as its I/O queues see it. The data path reads the state, the failure errno,
/// the watchdog's clock and the namespace table inline (the atomics live here, the hot ones each
/// on a cache line of its own, so the watchdog's clock does not move under the state every poll
/// reads); the setup path goes through the virtual calls.
class QueueHost {
 public:
  QueueHost(const QueueHost&) = delete;
  QueueHost& operator=(const QueueHost&) = delete;

  [[nodiscard]] ControllerState state() const noexcept { return state_.load(std::memory_order_acquire); }
  /// The errno outstanding requests get once the controller failed (0 while it runs).
  [[nodiscard]] int failure_errno() const noexcept { return fail_errno_.load(std::memory_order_acquire); }
  /// Watchdog ticks so far; a queue stamps commands with it (relaxed: a clock, not a flag).
  [[nodiscard]] std::uint32_t epoch() const noexcept { return epoch_.load(std::memory_order_relaxed); }
  /// The active namespaces, in ID order (fixed after bring-up: a reset that changes one fails
  /// the controller instead).
  [[nodiscard]] const std::vector<NamespaceInfo>& namespaces() const noexcept { return namespaces_; }
  /// The namespace with ID `nsid`, or nullptr. A binary search: the table is in ID order, and
  /// every submit looks its namespace up.
  [[nodiscard]] const NamespaceInfo* find_namespace(std::uint32_t nsid) const noexcept {
    const auto it = std::lower_bound(namespaces_.begin(), namespaces_.end(), nsid,
                                     [](const NamespaceInfo& ns, std::uint32_t id) { return ns.nsid < id; });
    return it != namespaces_.end() && it->nsid == nsid ? &*it : nullptr;
  }
  /// Identify Controller ONCS: Write Zeroes.
  [[nodiscard]] bool supports_write_zeroes() const noexcept { return write_zeroes_; }
  /// Identify Controller ONCS: Dataset Management.
  [[nodiscard]] bool supports_dataset_management() const noexcept { return dataset_management_; }
  /// ONCS bit 0: Compare.
  [[nodiscard]] bool supports_compare() const noexcept { return compare_; }

  /// The controller's bring-up facts a queue is laid out by.
  [[nodiscard]] virtual QueueParams queue_params() noexcept = 0;
  /// Runs an admin command (a queue creates and deletes itself on the device with these).
  [[nodiscard]] virtual Result<Cqe> admin(const Sqe& cmd, const char* what) = 0;
  /// A new queue, attached to its worker: the host creates it on the device (create_on_device
  /// with the host's reset count) and lists it, in one step no reset or failure can split.
  /// `listed` says whether the queue is listed, also on failure: a creation the controller never
  /// answered fails it, and the queue may exist on the device, so it is listed and goes as any
  /// other (unregister, then retire says whether its memory is safe).
  [[nodiscard]] virtual Result<void> add(HostedQueue& q, bool& listed) = 0;
  /// ~IoQueue, in this order: out of the watchdog's and failures' sight (if listed); deleted on
  /// the device, or false when the device may still use the queue's memory (a failed controller
  /// whose DMA could not be stopped); its ID free again (the queue owns its ID from the start,
  /// and gives it back unless retire said false).
  virtual void unregister(HostedQueue& q) noexcept = 0;
  [[nodiscard]] virtual bool retire(HostedQueue& q) noexcept = 0;
  virtual void release_qid(std::uint16_t qid) noexcept = 0;

 protected:
  QueueHost() = default;
  ~QueueHost() = default;

  alignas(64) std::atomic<ControllerState> state_{ControllerState::running};
  std::atomic<int> fail_errno_{0};
  alignas(64) std::atomic<std::uint32_t> epoch_{0};  // written every watchdog tick
  alignas(64) std::vector<NamespaceInfo> namespaces_;
  bool write_zeroes_ = false;
  bool dataset_management_ = false;
  bool compare_ = false;
};

/// An I/O queue as its controller's watchdog and recovery see it. Each call that touches the
/// queue's commands runs on the queue's worker (and waits for it); the others are thread-safe.
class HostedQueue {
 public:
  HostedQueue(const HostedQueue&) = delete;
  HostedQueue& operator=(const HostedQueue&) = delete;

  [[nodiscard]] virtual std::uint16_t queue_id() const noexcept = 0;
  /// §5.3 Create I/O Completion Queue, then §5.4 Create I/O Submission Queue; `generation` is
  /// the host's reset count it now belongs to.
  [[nodiscard]] virtual Result<void> create_on_device(std::uint64_t generation) = 0;
  /// §5.6 Delete I/O Submission Queue (the controller aborts its commands), then §5.5 the CQ.
  [[nodiscard]] virtual Result<void> delete_on_device() = 0;
  /// The host's reset count when the queue was last created on the device.
  [[nodiscard]] virtual std::uint64_t device_generation() const noexcept = 0;
  /// With the controller's DMA stopped for good: every command in flight, and every request
  /// waiting to be sent again, completes with `err` (negative errno); the completion queue is no
  /// longer read.
  [[nodiscard]] virtual Result<void> fail_requests(int err) = 0;
  /// During a reset, with DMA stopped: reaps what the controller completed, then puts every
  /// request in flight aside to be sent again (or fails it with `err` once out of retries).
  [[nodiscard]] virtual Result<void> requeue_requests(int err) = 0;
  /// Once the queue exists on the device again: sends the requests put aside.
  [[nodiscard]] virtual Result<void> restart_requests() = 0;
  /// Asks the worker to look for commands older than `max_age` ticks (no wait; skipped when a
  /// check is pending or the worker's task ring is full).
  virtual void post_age_check(std::uint32_t max_age) noexcept = 0;
  /// The ID of the oldest command the last check found too old, if any.
  [[nodiscard]] virtual std::optional<std::uint16_t> late_command() const noexcept = 0;

 protected:
  HostedQueue() = default;
  ~HostedQueue() = default;
};

}  // namespace vfe::nvme
