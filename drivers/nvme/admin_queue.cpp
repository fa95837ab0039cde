#include "drivers/nvme/admin_queue.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "drivers/nvme/status.hpp"
#include "mmio/barrier.hpp"

namespace vfe::nvme {

void AdminQueue::reset() noexcept {
  std::lock_guard lock(mu_);
  // The controller is disabled: what it wrote to the CQ stays. Events it reported that nobody
  // reaped yet happened; keep them with the others for take_posted (no doorbell: it is gone).
  while (posted_count_ > 0 && completion_ready()) {
    mmio::io_rmb();  // the rest of the entry only after its phase tag, as in reap_one
    Cqe c;
    std::memcpy(&c, const_cast<const Cqe*>(&cq_[cq_head_]), sizeof(c));
    static_cast<void>(take_if_posted(c));
    if (++cq_head_ == entries_) {
      cq_head_ = 0;
      phase_ ^= 1U;
    }
  }
  std::memset(static_cast<void*>(sq_), 0, sizeof(Sqe) * entries_);
  std::memset(static_cast<void*>(cq_), 0, sizeof(Cqe) * entries_);
  sq_tail_ = cq_head_ = next_cid_ = 0;
  phase_ = 1;  // §4.6: the controller posts the first pass with phase 1 over zeroed entries
  broken_ = false;
  posted_count_ = 0;  // a controller reset drops the requests it held; those that completed
                      // stay in posted_done_: their events happened, take_posted hands them out
}

bool AdminQueue::completion_ready() const noexcept {
  const volatile Cqe& e = cq_[cq_head_];
  return (e.status & 1U) == phase_;
}

// The next command id, never one a posted command still holds.
std::uint16_t AdminQueue::next_cid() noexcept {
  for (;;) {
    const std::uint16_t cid = next_cid_++;
    const auto end = posted_cids_.begin() + static_cast<std::ptrdiff_t>(posted_count_);
    if (std::find(posted_cids_.begin(), end, cid) == end) {
      return cid;
    }
  }
}

void AdminQueue::push(Sqe& cmd) noexcept {
  cmd.cid = next_cid();
  std::memcpy(&sq_[sq_tail_], &cmd, sizeof(cmd));
  sq_tail_ = static_cast<std::uint16_t>((sq_tail_ + 1) % entries_);
  // write32_db orders the entry before the doorbell for the device (io_wmb).
  bar_->write32_db(reg::kDoorbells, sq_tail_);
}

// The next completion, if the controller wrote one; the CQ 0 head doorbell then frees its entry.
bool AdminQueue::reap_one(Cqe& out) noexcept {
  if (!completion_ready()) {
    return false;
  }
  // The phase tag says the device wrote the entry; read the rest only after the tag (the
  // device's writes arrive in order, so only load reordering must be stopped).
  mmio::io_rmb();
  std::memcpy(&out, const_cast<const Cqe*>(&cq_[cq_head_]), sizeof(out));
  if (++cq_head_ == entries_) {
    cq_head_ = 0;
    phase_ ^= 1U;
  }
  bar_->write32(reg::kDoorbells + stride_, cq_head_);
  return true;
}

// A completion of a posted command is put aside for take_posted (true); others are not (false).
bool AdminQueue::take_if_posted(const Cqe& c) {
  const auto end = posted_cids_.begin() + static_cast<std::ptrdiff_t>(posted_count_);
  const auto it = std::find(posted_cids_.begin(), end, c.cid);
  if (it == end) {
    return false;
  }
  *it = posted_cids_[--posted_count_];
  posted_done_.push_back(c);
  return true;
}

Result<void> AdminQueue::post(Sqe cmd, const char* what) {
  std::lock_guard lock(mu_);
  if (broken_) {
    return Error::from_errno(EIO, what, "an earlier admin command timed out; the controller must be reset");
  }
  if (posted_count_ == kMaxPosted) {
    return Error::from_errno(EBUSY, what, fmt::format("{} commands are outstanding already", kMaxPosted));
  }
  posted_done_.reserve(kKeptMax);  // see kKeptMax
  push(cmd);
  posted_cids_[posted_count_++] = cmd.cid;
  return ok();
}

std::vector<Cqe> AdminQueue::take_posted() {
  // The watchdog calls this every tick: it must not wait out a slow admin command (up to CAP.TO),
  // which puts aside what arrives meanwhile itself. The next tick looks again.
  std::unique_lock lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) {
    return {};
  }
  Cqe c;
  while (!broken_ && reap_one(c)) {
    if (!take_if_posted(c)) {
      broken_ = true;  // nobody waits for it: the controller and this queue disagree
    }
  }
  std::vector<Cqe> out;
  if (!posted_done_.empty()) {  // nothing allocated on a tick when nothing came
    out.swap(posted_done_);
    posted_done_.reserve(kKeptMax);  // see kKeptMax
  }
  return out;
}

Result<Cqe> AdminQueue::execute(Sqe cmd, std::chrono::milliseconds timeout, const char* what) {
  std::lock_guard lock(mu_);
  if (broken_) {
    return Error::from_errno(EIO, what,
                             "an earlier admin command timed out; the controller must be reset");
  }
  push(cmd);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Cqe cqe;
  for (unsigned spins = 0;; ++spins) {
    if (reap_one(cqe)) {
      if (take_if_posted(cqe)) {
        continue;  // an event arrived meanwhile
      }
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      broken_ = true;
      const std::uint32_t csts = bar_->read32(reg::kCsts);
      return Error::from_errno(ETIMEDOUT, what,
                               fmt::format("no completion within {} ms (CSTS {:#x}{})", timeout.count(),
                                           csts, (csts & csts::kFatal) != 0 ? ": controller fatal status" : ""));
    }
    if (spins > 64) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
  if (cqe.cid != cmd.cid) {
    broken_ = true;
    return Error::from_errno(EIO, what,
                             fmt::format("completion for command id {} while waiting for {}; the "
                                         "controller must be reset", cqe.cid, cmd.cid));
  }
  const Status st = Status::from_cqe(cqe.status);
  if (!st.ok()) {
    return status_error(st, what, "the controller refused the command");
  }
  return cqe;
}

}  // namespace vfe::nvme
