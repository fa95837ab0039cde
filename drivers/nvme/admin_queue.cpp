#include "drivers/nvme/admin_queue.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "drivers/nvme/status.hpp"
#include "mmio/barrier.hpp"

namespace vfe::nvme {

void AdminQueue::reset() noexcept {
  std::lock_guard lock(mu_);
  std::memset(static_cast<void*>(sq_), 0, sizeof(Sqe) * entries_);
  std::memset(static_cast<void*>(cq_), 0, sizeof(Cqe) * entries_);
  sq_tail_ = cq_head_ = next_cid_ = 0;
  phase_ = 1;  // §4.6: the controller posts the first pass with phase 1 over zeroed entries
  broken_ = false;
}

bool AdminQueue::completion_ready() const noexcept {
  const volatile Cqe& e = cq_[cq_head_];
  return (e.status & 1U) == phase_;
}

Result<Cqe> AdminQueue::execute(Sqe cmd, std::chrono::milliseconds timeout, const char* what) {
  std::lock_guard lock(mu_);
  if (broken_) {
    return Error::from_errno(EIO, what,
                             "an earlier admin command timed out; the controller must be reset");
  }
  cmd.cid = next_cid_++;
  std::memcpy(&sq_[sq_tail_], &cmd, sizeof(cmd));
  sq_tail_ = static_cast<std::uint16_t>((sq_tail_ + 1) % entries_);
  // write32_db orders the entry before the doorbell for the device (io_wmb).
  bar_->write32_db(reg::kDoorbells, sq_tail_);

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (unsigned spins = 0; !completion_ready(); ++spins) {
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
  // The phase tag says the device wrote the entry; read the rest only after the tag (the
  // device's writes arrive in order, so only load reordering must be stopped).
  mmio::io_rmb();
  Cqe cqe;
  std::memcpy(&cqe, const_cast<const Cqe*>(&cq_[cq_head_]), sizeof(cqe));
  if (++cq_head_ == entries_) {
    cq_head_ = 0;
    phase_ ^= 1U;
  }
  bar_->write32(reg::kDoorbells + stride_, cq_head_);  // CQ 0 head: the entry may be reused
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
