#include "drivers/nvme/io_queue.hpp"

#include <cerrno>
#include <cstring>
#include <thread>

#include "base/log.hpp"
#include "base/units.hpp"
#include "drivers/nvme/io_queue_internal.hpp"
#include "mmio/barrier.hpp"

namespace vfe::nvme {
using detail::bump;
using detail::kCidSlotBits;
using detail::kCidSlotMask;

IoQueue::Layout IoQueue::layout(std::uint32_t entries, std::uint32_t page_size, std::uint64_t max_transfer) noexcept {
  Layout l;
  l.cq = align_up(entries * sizeof(Sqe), page_size);
  l.prp_lists = l.cq + align_up(entries * sizeof(Cqe), page_size);
  // Each command slot gets the list pages a command of max_transfer needs, as far as the queue's
  // memory stays within one 2 MiB hugepage (what no-IOMMU mode can map; deeper queues keep one
  // page a slot). The queue then carries at most what its slots' pages describe.
  const std::uint64_t slots = entries - 1;
  // A command touches at most max_transfer's pages (issue_next counts from the first byte's page).
  const std::size_t needed = prp_list_pages(static_cast<std::size_t>(max_transfer / page_size), page_size);
  const std::uint64_t room = l.prp_lists < kHugePage ? (kHugePage - l.prp_lists) / (slots * page_size) : 0;
  const std::uint64_t pages = std::max<std::uint64_t>(1, std::min<std::uint64_t>(needed, room));
  const std::uint64_t per_page = page_size / sizeof(std::uint64_t);
  const std::uint64_t list_entries = pages == 1 ? per_page : pages * (per_page - 1) + 1;
  l.list = pages * page_size;
  l.max_transfer = std::min(max_transfer, (list_entries + 1) * page_size);  // PRP1's page and the list's
  l.bytes = l.prp_lists + slots * l.list;
  return l;
}

IoQueue::IoQueue(QueueHost& host, const QueueParams& params, std::uint16_t qid, const IoQueueOptions& options,
                 dma::DmaBuffer memory)
    : engine::QueuePair(options.submission_capacity),
      host_(&host),
      qid_(qid),
      entries_(options.entries),
      page_size_(params.page_size),
      // §3.1.24: SQ y tail doorbell at 1000h + (2y) x stride, CQ y head at 1000h + (2y + 1) x stride.
      sq_doorbell_(*params.bar, reg::kDoorbells + 2ULL * qid * params.doorbell_stride),
      cq_doorbell_(*params.bar, reg::kDoorbells + (2ULL * qid + 1) * params.doorbell_stride),
      layout_(layout(entries_, page_size_, params.max_transfer)),
      memory_(std::move(memory)),
      retries_(params.retries),
      sgl_((params.sgls & 3U) == 1 || (params.sgls & 3U) == 2),  // 11b is reserved
      sgl_dword_((params.sgls & 3U) == 2),
      sgl_mptr_((params.sgls & (1U << 17)) != 0),
      sq_(memory_.as<Sqe>()),
      cq_(reinterpret_cast<volatile Cqe*>(memory_.as<std::uint8_t>() + layout_.cq)),
      prp_lists_(reinterpret_cast<std::uint64_t*>(memory_.as<std::uint8_t>() + layout_.prp_lists)),
      prp_lists_iova_(dma::to_u64(memory_.iova_at(layout_.prp_lists))),
      slots_(options.entries - 1) {
  if (params.msix_table && options.completion == engine::CompletionMode::adaptive) {
    // PCI 3.0 §6.8.2: 16-byte entries, Vector Control last; the CQ's vector IV is the queue ID.
    vector_control_ = mmio::Register32(*params.bar, *params.msix_table + 16ULL * qid + 12);
    vector_control_rest_ = vector_control_.is_mapped() ? vector_control_.read() & ~kMsixMaskBit : 0;
  }
  if (params.shadow_doorbells != nullptr) {
    // The buffers mirror the doorbell registers: word (2 qid) x stride / 4 for the SQ, the next
    // stride for the CQ.
    const std::size_t sq_word = 2ULL * qid * params.doorbell_stride / 4;
    const std::size_t cq_word = sq_word + params.doorbell_stride / 4;
    shadow_sq_ = params.shadow_doorbells + sq_word;
    shadow_cq_ = params.shadow_doorbells + cq_word;
    event_sq_ = params.event_indexes + sq_word;
    event_cq_ = params.event_indexes + cq_word;
  }
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
  const NamespaceInfo* ns = host_->find_namespace(req.nsid);
  if (ns == nullptr) {
    return -EINVAL;
  }
  if (const int err = validate(req, *ns); err != 0) {
    return err;
  }
  req.status = Status{};
  req.progress = IoRequest::Progress{};
  // Data PRPs cannot describe goes by SGLs (validate() let it through only where they serve).
  req.progress.sgl = req.passthrough == nullptr && req.opcode != IoOpcode::dataset_management && !req.data.empty() &&
                     check_prp_layout(req.data, page_size_) != PrpLayoutError::none;
  if (req.passthrough != nullptr) {
    req.passthrough->result = 0;  // not a previous run's answer if this one never gets one
  }
  // What the worker needs of the namespace, so it looks nothing up.
  req.progress.data_unit = ns->data_unit(req.protection.pract);
  req.progress.meta_unit = static_cast<std::uint16_t>(ns->metadata_unit(req.protection.pract));
  req.progress.pi_type = ns->pi_type;
  return try_submit(&req) ? 0 : -EAGAIN;
}

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
  if (issued == 0) {
    return;
  }
  bump(stats_.commands, issued);
  if (shadow_sq_ != nullptr) {
    mmio::io_wmb();  // the entries before the shadow tail that announces them
    if (!needs_mmio(shadow_sq_, event_sq_, sq_tail_)) {
      return;
    }
  }
  sq_doorbell_.write_db(sq_tail_);  // io_wmb inside: the entries before the doorbell
  bump(stats_.sq_doorbells);
}

// Adaptive mode (engine::QueuePair::mask_interrupt): while the worker polls, the vector's Mask
// Bit holds its interrupts pending in the device (PCI 3.0 §6.8.2.9), which raises them when it is
// cleared. A plain store to the mmap'd table, only where the kernel lets it be mapped
// (VFIO_REGION_INFO_CAP_MSIX_MAPPABLE); elsewhere interrupts stay on.
// Not while the controller is being reset (the BAR may be out of reach until that ends). An
// unmask skipped then is written at the worker's next turn from polling to sleeping, which comes
// before it sleeps with anything this queue sent after the reset. A queue being destroyed does
// write: the worker unmasks it as it removes it, and the vector goes to the next queue with this ID.
void IoQueue::mask_interrupt(bool masked) noexcept {
  if (vector_control_.is_mapped() && host_->state() != ControllerState::resetting) {
    vector_control_.write(vector_control_rest_ | (masked ? kMsixMaskBit : 0U));
    bump(stats_.interrupt_mask_writes);
  }
}

void IoQueue::ring_cq() noexcept {
  if (shadow_cq_ != nullptr) {
    mmio::io_rmb();  // the entries read before the shadow head that frees them (needs_mmio fences after)
    if (!needs_mmio(shadow_cq_, event_cq_, cq_head_)) {
      return;
    }
  }
  cq_doorbell_.write(cq_head_);  // the entries read may now be reused
  bump(stats_.cq_doorbells);
}

// Shadow doorbells (NVMe 1.4 §5.8; the event index rule of virtio): `value` goes to the shadow
// doorbell, and the MMIO doorbell is needed only when the controller's event index lies in
// [old value, value), i.e. it asked to be told once the doorbell passed it. Otherwise the
// controller is still working through the queue and reads the shadow again before it stops.
bool IoQueue::needs_mmio(volatile std::uint32_t* shadow, volatile std::uint32_t* event,
                         std::uint32_t value) noexcept {
  const auto old = static_cast<std::uint16_t>(*shadow);
  *shadow = value;
  // The shadow store before the event index load: the controller orders its side the same way
  // (it writes the event index, then reads the shadow), so one of the two sees the other.
  mmio::io_mb();
  const auto idx = static_cast<std::uint16_t>(*event);
  const auto now = static_cast<std::uint16_t>(value);
  if (static_cast<std::uint16_t>(now - idx - 1) < static_cast<std::uint16_t>(now - old)) {
    return true;
  }
  bump(stats_.doorbells_elided);
  return false;
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
    ring_cq();
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
