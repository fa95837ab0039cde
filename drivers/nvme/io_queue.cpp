#include "drivers/nvme/io_queue.hpp"

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "drivers/nvme/controller.hpp"
#include "mmio/barrier.hpp"

namespace vfe::nvme {
namespace {

constexpr std::uint64_t kMaxBlocksPerCommand = 65536;  // NLB is a 0's based 16-bit field

// Counters have one writer (the worker): a plain load and store, no locked instruction.
void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

std::uint32_t block_shift(const NamespaceInfo& ns) noexcept {
  return static_cast<std::uint32_t>(__builtin_ctz(ns.block_size));
}

}  // namespace

IoQueue::IoQueue(Controller& ctrl, std::uint16_t qid, const IoQueueOptions& options, dma::DmaBuffer memory,
                 std::uint64_t sq_bytes, std::uint64_t cq_bytes)
    : engine::QueuePair(options.submission_capacity),
      ctrl_(&ctrl),
      bar_(&ctrl.bar()),
      qid_(qid),
      entries_(options.entries),
      page_size_(ctrl.page_size()),
      max_transfer_(ctrl.max_transfer_bytes()),
      // §3.1.24: SQ y tail doorbell at 1000h + (2y) x stride, CQ y head at 1000h + (2y + 1) x stride.
      sq_doorbell_(reg::kDoorbells + 2ULL * qid * ctrl.cap().doorbell_stride()),
      cq_doorbell_(reg::kDoorbells + (2ULL * qid + 1) * ctrl.cap().doorbell_stride()),
      memory_(std::move(memory)),
      cq_offset_(sq_bytes),
      sq_(memory_.as<Sqe>()),
      cq_(reinterpret_cast<volatile Cqe*>(memory_.as<std::uint8_t>() + sq_bytes)),
      prp_lists_(reinterpret_cast<std::uint64_t*>(memory_.as<std::uint8_t>() + sq_bytes + cq_bytes)),
      prp_lists_iova_(dma::to_u64(memory_.iova_at(sq_bytes + cq_bytes))),
      slots_(options.entries - 1) {
  // One command fewer than entries: a full submission queue is then never mistaken for an empty
  // one (§4.1.2), and a free command ID always has a free submission slot.
  free_.reserve(slots_.size());
  for (std::size_t cid = slots_.size(); cid-- > 0;) {
    free_.push_back(static_cast<std::uint16_t>(cid));
  }
}

IoQueue::~IoQueue() {
  closing_.store(true, std::memory_order_release);
  if (registered_) {
    ctrl_->unregister(*this);  // from here on neither the watchdog nor fail() looks at it
  }
  if (worker() != nullptr) {
    if (auto r = detach(); !r) {
      log_error("nvme queue {}: {}", qid_, r.error().message());
    }
  }
  if (registered_) {
    ctrl_->retire(qid_);  // deleted on the controller (or it stopped): it no longer uses our memory
  }
  // What the controller completed before the deletion counts; the rest is cancelled. This runs
  // on the destroying thread, which now is the only one touching the queue.
  deleted_ = true;
  reap_completions();
  fail_in_flight(-ECANCELED);
  drain_waiting(
      [](engine::Request* r, void* self) noexcept {
        auto& req = *static_cast<IoRequest*>(r);
        if (req.progress.error == 0) {
          req.progress.error = -ECANCELED;
        }
        static_cast<IoQueue*>(self)->complete(req);
      },
      this);
  if (registered_) {
    ctrl_->release_qid(qid_);  // last: a new queue with this ID may now be made
  }
}

int IoQueue::validate(const IoRequest& req) const noexcept {
  const NamespaceInfo* ns = ctrl_->find_namespace(req.nsid);
  if (ns == nullptr) {
    return -EINVAL;
  }
  if (ns->metadata_bytes != 0) {
    return -EOPNOTSUPP;  // formats with metadata are not supported by this driver
  }
  switch (req.opcode) {
    case IoOpcode::flush:
      return req.blocks == 0 && req.data.empty() ? 0 : -EINVAL;
    case IoOpcode::write_zeroes:
      if (!ctrl_->identity().supports_write_zeroes()) {
        return -EOPNOTSUPP;
      }
      return req.blocks != 0 && req.data.empty() && req.lba + req.blocks > req.lba ? 0 : -EINVAL;
    case IoOpcode::read:
    case IoOpcode::write: {
      const std::uint32_t shift = block_shift(*ns);
      if (req.blocks == 0 || req.lba + req.blocks < req.lba || req.blocks > (~0ULL >> shift)) {
        return -EINVAL;
      }
      std::uint64_t bytes = 0;
      for (const DataSegment& s : req.data) {
        bytes += s.length;
      }
      if (bytes != req.blocks << shift || check_prp_layout(req.data, page_size_) != PrpLayoutError::none) {
        return -EINVAL;
      }
      return 0;
    }
  }
  return -EINVAL;
}

int IoQueue::submit(IoRequest& req) noexcept {
  if (closing_.load(std::memory_order_acquire)) {
    return -ECANCELED;
  }
  if (const int err = ctrl_->failure_errno(); err != 0) {
    return -err;
  }
  if (const int err = validate(req); err != 0) {
    return err;
  }
  req.status = Status{};
  req.progress = IoRequest::Progress{};
  // validate() found the namespace: remember its block size so the worker looks nothing up.
  req.progress.block_shift = static_cast<std::uint8_t>(block_shift(*ctrl_->find_namespace(req.nsid)));
  return try_submit(&req) ? 0 : -EAGAIN;
}

// Puts the next command of `req` in the submission queue (NVM Command Set §3.2: Flush, Read,
// Write, Write Zeroes). The doorbell is the caller's, once per batch.
IoQueue::Issue IoQueue::issue_next(IoRequest& req) noexcept {
  if (free_.empty()) {
    return Issue::no_slot;
  }
  Sqe cmd{};
  cmd.opcode = static_cast<std::uint8_t>(req.opcode);
  cmd.nsid = req.nsid;
  std::uint64_t n = 0;  // blocks in this command
  if (req.opcode != IoOpcode::flush) {
    const std::uint32_t shift = req.progress.block_shift;
    n = std::min(req.blocks - req.progress.next_block, kMaxBlocksPerCommand);
    if (req.opcode != IoOpcode::write_zeroes) {
      // As many blocks as fit in max_transfer_ bytes' worth of pages, counted from the page the
      // first byte is in.
      const std::uint64_t offset = req.progress.next_block << shift;
      const std::uint64_t lead = data_address(req.data, offset) & (page_size_ - 1);
      n = std::min(n, (max_transfer_ - lead) >> shift);
      if (n == 0) {
        return Issue::refused;  // a block does not fit in MDTS from where its data starts
      }
      const std::uint64_t slot = free_.back();
      const PrpPointers p = build_prps(req.data, page_size_, offset, n << shift,
                                       prp_lists_ + slot * (page_size_ / 8), prp_lists_iova_ + slot * page_size_);
      cmd.prp1 = p.prp1;
      cmd.prp2 = p.prp2;
    }
    const std::uint64_t slba = req.lba + req.progress.next_block;
    cmd.cdw10 = static_cast<std::uint32_t>(slba);
    cmd.cdw11 = static_cast<std::uint32_t>(slba >> 32);
    cmd.cdw12 = static_cast<std::uint32_t>(n - 1);  // NLB, 0's based
  }
  const std::uint16_t cid = free_.back();
  free_.pop_back();
  cmd.cid = cid;
  req.progress.next_block += n;
  req.progress.issued_all = req.progress.next_block == req.blocks;
  std::memcpy(&sq_[sq_tail_], &cmd, sizeof(cmd));
  sq_tail_ = sq_tail_ + 1 == entries_ ? 0 : sq_tail_ + 1;
  slots_[cid] = Slot{&req, ctrl_->epoch()};
  ++req.progress.in_flight;
  return Issue::issued;
}

// Issues what is left of `req`; false when the command slots ran out first (the rest of it is
// issued on a later call). `failed`: the controller's failure errno, or 0.
bool IoQueue::issue_rest(IoRequest& req, int failed, std::uint64_t& issued) noexcept {
  while (!req.progress.issued_all) {
    if (failed != 0 && req.progress.error == 0) {
      req.progress.error = -failed;
    }
    if (req.progress.error != 0) {
      req.progress.issued_all = true;  // a failed part fails the request: issue no more of it
      break;
    }
    switch (issue_next(req)) {
      case Issue::issued:
        ++issued;
        break;
      case Issue::no_slot:
        return false;
      case Issue::refused:
        req.progress.error = -EINVAL;
        break;
    }
  }
  return true;
}

std::size_t IoQueue::submit_to_device(std::span<engine::Request*> reqs) noexcept {
  const int failed = ctrl_->failure_errno();
  std::size_t taken = 0;
  std::uint64_t issued = 0;
  for (engine::Request* r : reqs) {
    auto& req = *static_cast<IoRequest*>(r);
    if (!issue_rest(req, failed, issued)) {
      break;
    }
    ++taken;
    if (req.progress.in_flight == 0) {
      complete(req);  // failed before any command of it was in flight
    }
  }
  if (issued != 0) {
    bar_->write32_db(sq_doorbell_, sq_tail_);  // io_wmb inside: the entries before the doorbell
    bump(stats_.commands, issued);
    bump(stats_.sq_doorbells);
  }
  return taken;
}

std::size_t IoQueue::reap_completions() noexcept {
  if (dead_) {
    return 0;
  }
  std::size_t n = 0;
  for (;;) {
    const std::uint16_t status = cq_[cq_head_].status;
    if ((status & 1U) != phase_) {
      break;  // §4.6: an entry is new while its phase tag matches the current pass
    }
    mmio::io_rmb();  // read the entry's other fields only after its phase tag
    const std::uint16_t cid = cq_[cq_head_].cid;
    if (cid < slots_.size() && slots_[cid].req != nullptr) {
      finish_command(cid, 0, Status::from_cqe(status));
    } else {
      log_error("nvme queue {}: completion for command id {} that is not in flight; ignored", qid_, cid);
    }
    if (++cq_head_ == entries_) {
      cq_head_ = 0;
      phase_ ^= 1U;
    }
    ++n;
  }
  if (n != 0 && !deleted_) {
    bar_->write32(cq_doorbell_, cq_head_);  // the entries read may now be reused
    bump(stats_.cq_doorbells);
  }
  return n;
}

void IoQueue::finish_command(std::uint16_t cid, int err, Status st) noexcept {
  IoRequest& req = *slots_[cid].req;
  slots_[cid].req = nullptr;
  free_.push_back(cid);
  if (req.progress.error == 0) {
    if (!st.ok()) {
      req.status = st;
      req.progress.error = -to_errno(st);
    } else if (err != 0) {
      req.progress.error = err;
    }
  }
  if (--req.progress.in_flight == 0 && req.progress.issued_all) {
    complete(req);
  }
}

void IoQueue::complete(IoRequest& req) noexcept {
  bump(stats_.requests);
  if (req.progress.error != 0) {
    bump(stats_.errors);
  }
  req.on_complete(&req, req.progress.error);
}

void IoQueue::fail_in_flight(int err) noexcept {
  dead_ = true;
  for (std::size_t cid = 0; cid < slots_.size(); ++cid) {
    if (slots_[cid].req != nullptr) {
      finish_command(static_cast<std::uint16_t>(cid), err, Status{});
    }
  }
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
  // Read here, after every stamp this thread wrote: no stamp is newer than `now`.
  const std::uint32_t now = ctrl_->epoch();
  for (const Slot& s : slots_) {
    if (s.req != nullptr && now - s.epoch > check_max_age_) {
      timed_out_.store(true, std::memory_order_release);
      break;
    }
  }
  check_pending_.store(false, std::memory_order_release);
}

}  // namespace vfe::nvme
