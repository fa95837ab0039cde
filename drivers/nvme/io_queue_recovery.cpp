// An I/O queue across faults: the watchdog's age checks, a controller reset (the requests in
// flight put aside, the queue emptied, re-created on the device and restarted), failing for good,
// and the queue's create and delete commands (see io_queue.hpp).
#include <cstring>

#include "base/log.hpp"
#include "drivers/nvme/io_queue.hpp"
#include "drivers/nvme/io_queue_internal.hpp"

namespace vfe::nvme {

using detail::bump;
using detail::kCidSlotBits;

void IoQueue::fail_in_flight(int err) noexcept {
  dead_ = true;
  for (std::size_t slot = 0; slot < slots_.size(); ++slot) {
    if (slots_[slot].req != nullptr) {
      finish_command(static_cast<std::uint16_t>(slot), err, Status{});
    }
  }
  // A request partly issued from retry_ had its commands finished above and completes here.
  while (!retry_.empty()) {
    IoRequest& req = *retry_.back();
    retry_.pop_back();
    if (req.progress.error == 0) {
      req.progress.error = err;
    }
    complete(req);
  }
}

void IoQueue::requeue_in_flight(int err) noexcept {
  static_cast<void>(reap());  // what the controller completed before it stopped counts
  for (Slot& s : slots_) {
    if (s.req == nullptr) {
      continue;
    }
    IoRequest& req = *s.req;
    s.req = nullptr;
    // Decided at its last slot only: once finished, the request may be freed or reused.
    if (--req.progress.in_flight != 0) {
      continue;
    }
    if (req.progress.error == 0) {
      if (req.progress.attempts >= retries_) {
        req.progress.error = err;
      } else {
        req.progress.retry = true;
      }
    }
    if (req.progress.issued_all) {
      finish_request(req);
    } else if (req.progress.error == 0) {
      // Partly issued: it waits in the submission batch or in retry_, which issue the rest; from
      // its first block again. (With an error, that same place completes it.)
      put_aside(req);
    }
  }
  empty_rings();
  timed_out_.store(false, std::memory_order_release);
}

// Every slot free, both rings at their start and the CQ's phase tags 0, as a new queue's.
void IoQueue::empty_rings() noexcept {
  free_.clear();
  for (std::size_t slot = slots_.size(); slot-- > 0;) {
    free_.push_back(static_cast<std::uint16_t>(slot));
  }
  std::memset(const_cast<Cqe*>(cq_), 0, std::uint64_t{entries_} * sizeof(Cqe));
  sq_tail_ = 0;
  cq_head_ = 0;
  phase_ = 1;
  if (shadow_sq_ != nullptr) {
    // The queue is not on the controller now; it is created next with head and tail 0, and the
    // controller takes the shadow words as they are then (a stale tail would replay commands).
    *shadow_sq_ = 0;
    *shadow_cq_ = 0;
    *event_sq_ = 0;
    *event_cq_ = 0;
  }
}

void IoQueue::restart() noexcept {
  ring_sq(issue_retries(host_->failure_errno()));
}

Result<void> IoQueue::fail_requests(int err) {
  return worker()->run_sync([this, err] { fail_in_flight(err); });
}

Result<void> IoQueue::requeue_requests(int err) {
  return worker()->run_sync([this, err] { requeue_in_flight(err); });
}

Result<void> IoQueue::restart_requests() {
  return worker()->run_sync([this] { restart(); });
}

std::optional<std::uint16_t> IoQueue::late_command() const noexcept {
  if (!timed_out_.load(std::memory_order_acquire)) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(late_cid_.load(std::memory_order_relaxed));
}

void IoQueue::post_age_check(std::uint32_t max_age) noexcept {
  if (worker() == nullptr || check_pending_.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  check_max_age_ = max_age;
  // The task ring's release/acquire hands check_max_age_ to the worker.
  if (!worker()->try_post([](void* self) { static_cast<IoQueue*>(self)->check_ages(); }, this)) {
    check_pending_.store(false, std::memory_order_release);
  }
}

void IoQueue::check_ages() noexcept {
  bool late = find_late();
  if (late) {
    // Look before counting it late (as nvme-pci does): a completion whose interrupt was lost is
    // in the CQ, and costs no abort or reset.
    if (const std::size_t found = reap_completions(); found != 0) {
      bump(stats_.watchdog_reaps, found);
      late = find_late();
    }
  }
  timed_out_.store(late, std::memory_order_release);
  check_pending_.store(false, std::memory_order_release);
}

// True when a command is older than check_max_age_ ticks; late_cid_ is then its ID.
bool IoQueue::find_late() noexcept {
  // Read here, after every stamp this thread wrote: no stamp is newer than `now`.
  const std::uint32_t now = host_->epoch();
  std::uint32_t oldest = check_max_age_;
  bool late = false;
  for (std::size_t slot = 0; slot < slots_.size(); ++slot) {
    const Slot& s = slots_[slot];
    if (s.req != nullptr && now - s.epoch > oldest) {  // the oldest: the one an Abort went for, if any
      oldest = now - s.epoch;
      late_cid_.store(static_cast<std::uint32_t>((s.generation << kCidSlotBits) | slot), std::memory_order_relaxed);
      late = true;
    }
  }
  return late;
}

// §5.3 Create I/O Completion Queue, then §5.4 Create I/O Submission Queue bound to it.
Result<void> IoQueue::create_on_device(std::uint64_t generation) {
  const bool interrupts = completion_mode() != engine::CompletionMode::polling;
  const std::uint32_t size_and_id = ((entries_ - 1) << 16) | qid_;
  Sqe cq{};
  cq.opcode = admin::kCreateCq;
  cq.prp1 = dma::to_u64(memory_.iova_at(layout_.cq));
  cq.cdw10 = size_and_id;
  // Physically contiguous (PC); with interrupts enabled (IEN) on vector IV = the queue ID.
  cq.cdw11 = 1U | (interrupts ? (2U | (static_cast<std::uint32_t>(qid_) << 16)) : 0U);
  VFE_TRY(host_->admin(cq, "create I/O completion queue"));
  Sqe sq{};
  sq.opcode = admin::kCreateSq;
  sq.prp1 = dma::to_u64(memory_.iova());
  sq.cdw10 = size_and_id;
  sq.cdw11 = 1U | (static_cast<std::uint32_t>(qid_) << 16);  // PC, CQID
  if (auto r = host_->admin(sq, "create I/O submission queue"); !r) {
    Sqe del{};
    del.opcode = admin::kDeleteCq;
    del.cdw10 = qid_;
    static_cast<void>(host_->admin(del, "delete I/O completion queue"));
    return std::move(r).error();
  }
  device_generation_ = generation;
  return ok();
}

Result<void> IoQueue::delete_on_device() {
  Sqe sq{};
  sq.opcode = admin::kDeleteSq;
  sq.cdw10 = qid_;
  VFE_TRY(host_->admin(sq, "delete I/O submission queue"));
  Sqe cq{};
  cq.opcode = admin::kDeleteCq;
  cq.cdw10 = qid_;
  VFE_TRY(host_->admin(cq, "delete I/O completion queue"));
  return ok();
}

}  // namespace vfe::nvme
