// I/O queues on the controller: queue IDs, and the queues' lives as the controller sees them.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/log.hpp"
#include "base/scope_guard.hpp"
#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/io_queue.hpp"

namespace vfe::nvme {

Result<std::uint16_t> Controller::claim_qid(bool needs_vector) {
  std::lock_guard lock(queues_mu_);
  for (std::size_t qid = 1; qid < qid_used_.size(); ++qid) {
    if (!qid_used_[qid]) {
      if (needs_vector && (!irqs_ || qid >= irqs_->count())) {
        break;
      }
      qid_used_[qid] = true;
      return static_cast<std::uint16_t>(qid);
    }
  }
  if (needs_vector && !irqs_) {
    return Error::not_supported("create I/O queue", "the controller has no MSI-X; use polling completion");
  }
  return Error::from_errno(EBUSY, "create I/O queue",
                           fmt::format("all {} I/O queues the controller granted{} are in use", io_queue_limit_,
                                       needs_vector ? " (with an MSI-X vector)" : ""));
}

Result<std::unique_ptr<IoQueue>> Controller::create_io_queue(engine::Worker& worker, const IoQueueOptions& options) {
  const std::uint32_t max_entries = std::min(cap_.mqes(), kMaxIoQueueEntries);
  if (options.entries < 2 || options.entries > max_entries) {
    return Error::invalid("create I/O queue",
                          fmt::format("{} entries is outside what the controller and this driver allow (2 to "
                                      "{}: CAP.MQES, and {} at most)",
                                      options.entries, max_entries, kMaxIoQueueEntries));
  }
  const bool interrupts = options.completion != engine::CompletionMode::polling;
  VFE_TRY_ASSIGN(const std::uint16_t qid, claim_qid(interrupts));
  auto release = ScopeGuard([&]() noexcept { release_qid(qid); });
  const std::uint64_t bytes = IoQueue::memory_bytes(options.entries, page_size());
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, bytes, {.hugepages = true, .numa_node = options.numa_node}));
  std::unique_ptr<IoQueue> q(new IoQueue(*this, qid, options, std::move(mem)));
  // Attached first (the worker does nothing with it until it exists on the device: its CQ is
  // empty and nothing is submitted yet), so that the device queue is made and registered under
  // fail_mu_ in one step that a reset cannot split.
  VFE_TRY(q->attach(worker, options.completion, interrupts ? irqs_->eventfd(qid) : -1));
  std::lock_guard failing(fail_mu_);
  if (const ControllerState s = state(); s != ControllerState::running) {
    return Error::from_errno(ENODEV, "create I/O queue", "the controller is not running: " + failure());
  }
  if (auto r = q->create_on_device(reset_count_); !r) {
    if (admin_->broken()) {
      // The controller did not answer: it may still use the queue memory, which goes next.
      fail_locked(EIO, "creating I/O queue " + std::to_string(qid) + ": " + r.error().message());
    }
    return std::move(r).error();
  }
  {
    std::lock_guard lock(queues_mu_);
    queues_.push_back(q.get());
  }
  release.dismiss();
  q->registered_ = true;
  return q;
}

void Controller::unregister(IoQueue& q) noexcept {
  std::lock_guard lock(queues_mu_);
  queues_.erase(std::remove(queues_.begin(), queues_.end(), &q), queues_.end());
}

bool Controller::retire(IoQueue& q) noexcept {
  // A fail(), reset or shutdown() under way finishes (and the controller has stopped, or is back)
  // before we look, and none begins while the queue is deleted.
  std::lock_guard failing(fail_mu_);
  if (state() != ControllerState::running) {
    return dma_stopped_;  // failed or shut down: the queue's memory is safe once DMA stopped
  }
  if (q.device_generation() != reset_count_) {
    return true;  // a reset since took it off the device, and it was unregistered before it was made again
  }
  if (auto r = q.delete_on_device(); !r) {
    // The controller may still write the queue's memory: stop it before that memory goes.
    fail_locked(EIO, r.error().message());
    return dma_stopped_;
  }
  return true;
}

void Controller::release_qid(std::uint16_t qid) noexcept {
  std::lock_guard lock(queues_mu_);
  qid_used_[qid] = false;
}

}  // namespace vfe::nvme
