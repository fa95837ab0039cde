#include "drivers/nvme/io_queue.hpp"

#include <cerrno>
#include <cstring>
#include <thread>

#include "base/log.hpp"
#include "base/units.hpp"
#include "drivers/nvme/io_queue_internal.hpp"
#include "mmio/barrier.hpp"

namespace vfe::nvme {
namespace {

using detail::bump;
using detail::kCidSlotBits;
using detail::kCidSlotMask;

constexpr std::uint64_t kMaxBlocksPerCommand = 65536;  // NLB is a 0's based 16-bit field
constexpr std::uint32_t kFua = 1U << 30;                // Command Dword 12: Force Unit Access
constexpr std::uint32_t kDeallocate = 1U << 2;          // Dataset Management, Command Dword 11: AD

std::uint32_t block_shift(const NamespaceInfo& ns) noexcept {
  return static_cast<std::uint32_t>(__builtin_ctz(ns.block_size));
}

std::uint64_t data_bytes(std::span<const DataSegment> data) noexcept {
  std::uint64_t bytes = 0;
  for (const DataSegment& s : data) {
    bytes += s.length;
  }
  return bytes;
}

// Dataset Management with Attribute Deallocate (NVMe 1.4 §6.7): the range list by PRPs, NR.
void fill_deallocate(const IoRequest& req, std::uint32_t page_size, std::uint64_t* prp_list,
                     std::uint64_t prp_list_iova, Sqe& cmd) noexcept {
  const std::uint64_t bytes = data_bytes(req.data);
  const PrpPointers p = build_prps(req.data, page_size, 0, bytes, prp_list, prp_list_iova);
  cmd.prp1 = p.prp1;
  cmd.prp2 = p.prp2;
  cmd.cdw10 = static_cast<std::uint32_t>(bytes / sizeof(DsmRange) - 1);  // NR, 0's based
  cmd.cdw11 = kDeallocate;
}

// A passthrough command as its caller composed it; the data (at most one command's worth) by PRPs.
void fill_passthrough(const IoRequest& req, std::uint32_t page_size, std::uint64_t* prp_list,
                      std::uint64_t prp_list_iova, Sqe& cmd) noexcept {
  const PassthroughCommand& pt = *req.passthrough;
  cmd.opcode = pt.opcode;
  cmd.cdw2 = pt.cdw2;
  cmd.cdw3 = pt.cdw3;
  cmd.cdw10 = pt.cdw10;
  cmd.cdw11 = pt.cdw11;
  cmd.cdw12 = pt.cdw12;
  cmd.cdw13 = pt.cdw13;
  cmd.cdw14 = pt.cdw14;
  cmd.cdw15 = pt.cdw15;
  if (const std::uint64_t bytes = data_bytes(req.data); bytes != 0) {
    const PrpPointers p = build_prps(req.data, page_size, 0, bytes, prp_list, prp_list_iova);
    cmd.prp1 = p.prp1;
    cmd.prp2 = p.prp2;
  }
}

}  // namespace

IoQueue::Layout IoQueue::layout(std::uint32_t entries, std::uint32_t page_size) noexcept {
  Layout l;
  l.cq = align_up(entries * sizeof(Sqe), page_size);
  l.prp_lists = l.cq + align_up(entries * sizeof(Cqe), page_size);
  l.bytes = l.prp_lists + std::uint64_t{entries - 1} * page_size;
  return l;
}

IoQueue::IoQueue(QueueHost& host, const QueueParams& params, std::uint16_t qid, const IoQueueOptions& options,
                 dma::DmaBuffer memory)
    : engine::QueuePair(options.submission_capacity),
      host_(&host),
      bar_(params.bar),
      qid_(qid),
      entries_(options.entries),
      page_size_(params.page_size),
      max_transfer_(params.max_transfer),
      // §3.1.24: SQ y tail doorbell at 1000h + (2y) x stride, CQ y head at 1000h + (2y + 1) x stride.
      sq_doorbell_(reg::kDoorbells + 2ULL * qid * params.doorbell_stride),
      cq_doorbell_(reg::kDoorbells + (2ULL * qid + 1) * params.doorbell_stride),
      layout_(layout(entries_, page_size_)),
      memory_(std::move(memory)),
      retries_(params.retries),
      sq_(memory_.as<Sqe>()),
      cq_(reinterpret_cast<volatile Cqe*>(memory_.as<std::uint8_t>() + layout_.cq)),
      prp_lists_(reinterpret_cast<std::uint64_t*>(memory_.as<std::uint8_t>() + layout_.prp_lists)),
      prp_lists_iova_(dma::to_u64(memory_.iova_at(layout_.prp_lists))),
      slots_(options.entries - 1) {
  // One command fewer than entries: a full submission queue is then never mistaken for an empty
  // one (§4.1.2), and a free slot always has a free submission queue entry.
  free_.reserve(slots_.size());
  // Each request put aside holds or held a slot, and none is taken while some wait (see
  // submit_to_device): this many never allocate.
  retry_.reserve(slots_.size());
  empty_rings();
}

Result<std::unique_ptr<IoQueue>> IoQueue::open(QueueHost& host, std::uint16_t qid, const IoQueueOptions& options,
                                               dma::DmaBuffer memory, engine::Worker& worker, int eventfd) {
  std::unique_ptr<IoQueue> q(new IoQueue(host, host.queue_params(), qid, options, std::move(memory)));
  // Attached first (the worker does nothing with it until it exists on the device: its CQ is
  // empty and nothing is submitted yet), so that the host makes it on the device and lists it in
  // one step that a reset cannot split.
  VFE_TRY(q->attach(worker, options.completion, eventfd));
  auto added = host.add(*q, q->registered_);
  if (!added) {
    return std::move(added).error();  // ~IoQueue frees what the device cannot use, keeps the rest
  }
  return q;
}

IoQueue::~IoQueue() {
  close();
  // From here the worker neither submits nor reaps (paused): once unlisted, a reset no longer
  // re-creates the queue, and its doorbells could name a queue the device does not have.
  destroying_.store(true, std::memory_order_relaxed);
  if (registered_) {
    host_->unregister(*this);  // from here on neither the watchdog nor a failure looks at it
  }
  if (worker() != nullptr) {
    if (auto r = detach(); !r) {
      log_error("nvme queue {}: {}", qid_, r.error().message());
    }
  }
  // Deleted on the controller, or the controller stopped: it no longer uses our memory.
  const bool device_done = !registered_ || host_->retire(*this);
  // What the controller completed before the deletion counts; the rest is cancelled. This runs
  // on the destroying thread, which now is the only one touching the queue.
  deleted_ = true;
  if (device_done) {
    if (!dead_) {
      static_cast<void>(reap());
    }
    fail_in_flight(-ECANCELED);
  } else {
    abandon();
  }
  drain_waiting(  // never sent to the device, or (abandoned) partly: those stay
      [](engine::Request* r, void* self) noexcept {
        auto& req = *static_cast<IoRequest*>(r);
        if (req.progress.in_flight != 0) {
          return;  // only after abandon(): some of its commands are still on the device
        }
        if (req.progress.error == 0) {
          req.progress.error = -ECANCELED;
        }
        static_cast<IoQueue*>(self)->complete(req);
      },
      this);
  if (device_done) {
    host_->release_qid(qid_);  // last: a new queue with this ID may now be made
  }
}

// ~IoQueue when the controller failed and its DMA could not be stopped: the commands it holds may
// still write their requests' buffers and this queue's memory. Neither is handed back (the
// requests with a command on the device never complete), and the queue ID stays taken (the
// queue may still exist on the device). Requests with nothing on the device complete.
void IoQueue::abandon() noexcept {
  std::size_t kept = 0;
  for (const Slot& s : slots_) {
    kept += s.req != nullptr ? 1 : 0;
  }
  log_error("nvme queue {}: the controller's DMA was never stopped; its memory and the {} command(s) on the "
            "device are abandoned",
            qid_, kept);
  memory_.abandon();
  for (IoRequest* req : retry_) {
    if (req->progress.in_flight == 0) {
      if (req->progress.error == 0) {
        req->progress.error = -ECANCELED;
      }
      complete(*req);
    }
  }
  retry_.clear();
}

int IoQueue::validate(const IoRequest& req) const noexcept {
  const NamespaceInfo* ns = host_->find_namespace(req.nsid);
  if (ns == nullptr) {
    return -EINVAL;
  }
  if (ns->metadata_bytes != 0) {
    return -EOPNOTSUPP;  // formats with metadata are not supported by this driver
  }
  if (req.passthrough != nullptr) {
    return validate_passthrough(req);
  }
  switch (req.opcode) {
    case IoOpcode::flush:
      return req.blocks == 0 && req.data.empty() && !req.fua ? 0 : -EINVAL;
    case IoOpcode::write_zeroes:
      if (!host_->supports_write_zeroes()) {
        return -EOPNOTSUPP;
      }
      return req.blocks != 0 && req.data.empty() && req.lba + req.blocks > req.lba ? 0 : -EINVAL;
    case IoOpcode::dataset_management: {
      if (!host_->supports_dataset_management()) {
        return -EOPNOTSUPP;
      }
      const std::uint64_t bytes = data_bytes(req.data);
      const bool ok = req.blocks == 0 && !req.fua && bytes != 0 && bytes % sizeof(DsmRange) == 0 &&
                      bytes <= kMaxDsmRanges * sizeof(DsmRange) &&
                      check_prp_layout(req.data, page_size_) == PrpLayoutError::none;
      return ok ? 0 : -EINVAL;
    }
    case IoOpcode::compare:
      if (!host_->supports_compare()) {
        return -EOPNOTSUPP;
      }
      [[fallthrough]];
    case IoOpcode::read:
    case IoOpcode::write: {
      const std::uint32_t shift = block_shift(*ns);
      if (req.blocks == 0 || req.lba + req.blocks < req.lba || req.blocks > (~0ULL >> shift)) {
        return -EINVAL;
      }
      if (data_bytes(req.data) != req.blocks << shift ||
          check_prp_layout(req.data, page_size_) != PrpLayoutError::none) {
        return -EINVAL;
      }
      return 0;
    }
  }
  return -EINVAL;
}

// One command, as composed: data only where the opcode says it moves some, and no more than
// one command carries (the driver cannot know how to split a command it does not know).
int IoQueue::validate_passthrough(const IoRequest& req) const noexcept {
  const std::uint64_t bytes = data_bytes(req.data);
  if (req.blocks != 0) {
    return -EINVAL;
  }
  if (bytes == 0) {
    return req.data.empty() ? 0 : -EINVAL;
  }
  if ((req.passthrough->opcode & 3U) == 0 || check_prp_layout(req.data, page_size_) != PrpLayoutError::none) {
    return -EINVAL;
  }
  const std::uint64_t lead = data_address(req.data, 0) & (page_size_ - 1);
  return lead + bytes <= max_transfer_ ? 0 : -EINVAL;
}

void IoQueue::close() noexcept {
  gate_.fetch_or(kClosedBit, std::memory_order_relaxed);
  // All on one atomic: a submit whose CAS came before the bit is counted, and its release
  // decrement, read here with acquire, hands over what it put in the ring.
  while ((gate_.load(std::memory_order_acquire) & ~kClosedBit) != 0) {
    std::this_thread::yield();
  }
}

int IoQueue::submit(IoRequest& req) noexcept {
  std::uint32_t gate = gate_.load(std::memory_order_relaxed);
  do {
    if ((gate & kClosedBit) != 0) {
      return -ECANCELED;
    }
  } while (!gate_.compare_exchange_weak(gate, gate + 1, std::memory_order_relaxed, std::memory_order_relaxed));
  const int rc = submit_counted(req);
  gate_.fetch_sub(1, std::memory_order_release);
  return rc;
}

int IoQueue::submit_counted(IoRequest& req) noexcept {
  if (const int err = host_->failure_errno(); err != 0) {
    return -err;
  }
  if (const int err = validate(req); err != 0) {
    return err;
  }
  req.status = Status{};
  req.progress = IoRequest::Progress{};
  // validate() found the namespace: remember its block size so the worker looks nothing up.
  req.progress.block_shift = static_cast<std::uint8_t>(block_shift(*host_->find_namespace(req.nsid)));
  return try_submit(&req) ? 0 : -EAGAIN;
}

// Puts the next command of `req` in the submission queue (NVM Command Set §3.2: Flush, Read,
// Write, Compare, Write Zeroes, Dataset Management; or the caller's own). The doorbell is the caller's, once per batch.
IoQueue::Issue IoQueue::issue_next(IoRequest& req) noexcept {
  if (free_.empty()) {
    return Issue::no_slot;
  }
  const std::uint16_t slot = free_.back();
  Sqe cmd{};
  cmd.opcode = static_cast<std::uint8_t>(req.opcode);
  cmd.nsid = req.nsid;
  std::uint64_t n = 0;  // blocks in this command
  if (req.passthrough != nullptr) {
    fill_passthrough(req, page_size_, prp_lists_ + slot * (page_size_ / 8), prp_lists_iova_ + slot * page_size_,
                     cmd);
  } else if (req.opcode == IoOpcode::dataset_management) {
    fill_deallocate(req, page_size_, prp_lists_ + slot * (page_size_ / 8), prp_lists_iova_ + slot * page_size_,
                    cmd);
  } else if (req.opcode != IoOpcode::flush) {
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
      const PrpPointers p = build_prps(req.data, page_size_, offset, n << shift,
                                       prp_lists_ + slot * (page_size_ / 8), prp_lists_iova_ + slot * page_size_);
      cmd.prp1 = p.prp1;
      cmd.prp2 = p.prp2;
    }
    const std::uint64_t slba = req.lba + req.progress.next_block;
    cmd.cdw10 = static_cast<std::uint32_t>(slba);
    cmd.cdw11 = static_cast<std::uint32_t>(slba >> 32);
    cmd.cdw12 = static_cast<std::uint32_t>(n - 1) | (req.fua ? kFua : 0U);  // NLB, 0's based
  }
  free_.pop_back();
  Slot& s = slots_[slot];
  s.generation = static_cast<std::uint16_t>((s.generation + 1) & 0xfU);
  cmd.cid = static_cast<std::uint16_t>((s.generation << kCidSlotBits) | slot);
  req.progress.next_block += n;
  req.progress.issued_all = req.progress.next_block == req.blocks;
  std::memcpy(&sq_[sq_tail_], &cmd, sizeof(cmd));
  sq_tail_ = sq_tail_ + 1 == entries_ ? 0 : sq_tail_ + 1;
  s.req = &req;
  s.epoch = host_->epoch();
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
    if (req.progress.error != 0 || req.progress.retry) {
      req.progress.issued_all = true;  // it fails or goes again as a whole: issue no more of it
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

// A reset under way, or the queue being destroyed (see ~IoQueue). destroying_ is read relaxed:
// it is a hint that spares the device commands about to be cancelled. What ~IoQueue relies on is
// detach(), whose hand-over with the worker orders everything the worker did before it; a
// command the worker sends before it sees the flag is deleted with the SQ and reaped there.
bool IoQueue::paused() const noexcept {
  return host_->state() == ControllerState::resetting || destroying_.load(std::memory_order_relaxed);
}

std::size_t IoQueue::submit_to_device(std::span<engine::Request*> reqs) noexcept {
  if (paused()) {
    return 0;  // they wait (in the ring, then -EAGAIN) until the controller is back
  }
  const int failed = host_->failure_errno();
  std::uint64_t issued = issue_retries(failed);
  std::size_t taken = 0;
  // New requests only once every request put aside is on its way: that bounds retry_.
  for (engine::Request* r : reqs) {
    auto& req = *static_cast<IoRequest*>(r);
    if (!retry_.empty() || !issue_rest(req, failed, issued)) {
      break;
    }
    ++taken;
    if (req.progress.in_flight == 0) {
      finish_request(req);  // failed before any command of it was in flight
    }
  }
  ring_sq(issued);
  return taken;
}

void IoQueue::ring_sq(std::uint64_t issued) noexcept {
  if (issued != 0) {
    bar_->write32_db(sq_doorbell_, sq_tail_);  // io_wmb inside: the entries before the doorbell
    bump(stats_.commands, issued);
    bump(stats_.sq_doorbells);
  }
}

// Sends the requests put aside, as far as slots allow; returns the commands issued.
std::uint64_t IoQueue::issue_retries(int failed) noexcept {
  std::uint64_t issued = 0;
  while (!retry_.empty()) {
    IoRequest& req = *retry_.back();
    if (!issue_rest(req, failed, issued)) {
      break;  // partly issued: it stays on top, and the rest goes when slots are free
    }
    retry_.pop_back();
    if (req.progress.in_flight == 0) {
      finish_request(req);
    }
  }
  return issued;
}

std::size_t IoQueue::reap_completions() noexcept {
  if (dead_ || paused()) {
    return 0;  // a reset collects the completions itself (requeue_in_flight)
  }
  const std::size_t n = reap();
  if (!retry_.empty()) {
    ring_sq(issue_retries(host_->failure_errno()));  // slots came free
  }
  return n;
}

std::size_t IoQueue::reap() noexcept {
  std::size_t n = 0;
  for (;;) {
    const std::uint16_t status = cq_[cq_head_].status;
    if ((status & 1U) != phase_) {
      break;  // §4.6: an entry is new while its phase tag matches the current pass
    }
    mmio::io_rmb();  // read the entry's other fields only after its phase tag
    const std::uint16_t cid = cq_[cq_head_].cid;
    const std::uint16_t slot = cid & kCidSlotMask;
    if (slot < slots_.size() && slots_[slot].req != nullptr && slots_[slot].generation == cid >> kCidSlotBits) {
      if (PassthroughCommand* pt = slots_[slot].req->passthrough; pt != nullptr) {
        pt->result = cq_[cq_head_].dw0;  // command specific: the caller's to read
      }
      finish_command(slot, 0, Status::from_cqe(status));
    } else {
      log_error("nvme queue {}: completion for command id {:#x} that is not in flight; ignored", qid_, cid);
    }
    if (++cq_head_ == entries_) {
      cq_head_ = 0;
      phase_ ^= 1U;
    }
    ++n;
  }
  // Not while paused: the controller is being reset and the queue does not exist on it.
  if (n != 0 && !deleted_ && !paused()) {
    bar_->write32(cq_doorbell_, cq_head_);  // the entries read may now be reused
    bump(stats_.cq_doorbells);
  }
  return n;
}

void IoQueue::finish_command(std::uint16_t slot, int err, Status st) noexcept {
  IoRequest& req = *slots_[slot].req;
  slots_[slot].req = nullptr;
  free_.push_back(slot);
  if (req.progress.error == 0) {
    // §4.6.1.2: without DNR the same command may succeed again; not on a queue being deleted
    // (its commands come back aborted by the deletion, and go nowhere).
    if (worth_retry(st) && req.progress.attempts < retries_ && !deleted_) {
      req.progress.retry = true;
    } else if (!st.ok()) {
      req.status = st;
      req.progress.error = -to_errno(st);
    } else if (err != 0) {
      req.progress.error = err;
    }
  }
  if (--req.progress.in_flight == 0 && req.progress.issued_all) {
    finish_request(req);
  }
}

// Nothing of `req` is in flight any more: it completes, or goes again from its first block.
void IoQueue::finish_request(IoRequest& req) noexcept {
  if (req.progress.error != 0 || !req.progress.retry) {
    complete(req);
    return;
  }
  put_aside(req);
  retry_.push_back(&req);
}

void IoQueue::put_aside(IoRequest& req) noexcept {
  ++req.progress.attempts;
  req.progress.retry = false;
  req.progress.next_block = 0;
  req.progress.issued_all = false;
  req.status = Status{};
  bump(stats_.retries);
}

void IoQueue::complete(IoRequest& req) noexcept {
  bump(stats_.requests);
  if (req.progress.error != 0) {
    bump(stats_.errors);
  }
  req.on_complete(&req, req.progress.error);
}

}  // namespace vfe::nvme
