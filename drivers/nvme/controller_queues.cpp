// I/O queues on the controller: creating them, and the controller's side of the QueueHost
// contract (queue_host.hpp): listing, deleting and freeing them.
#include <fmt/format.h>

#include <algorithm>

#include "base/log.hpp"
#include "base/scope_guard.hpp"
#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/io_queue.hpp"

namespace vfe::nvme {

Result<std::unique_ptr<IoQueue>> Controller::create_io_queue(engine::Worker& worker, const IoQueueOptions& options) {
  const std::uint32_t max_entries = std::min(cap_.mqes(), kMaxIoQueueEntries);
  if (options.entries < 2 || options.entries > max_entries) {
    return Error::invalid("create I/O queue",
                          fmt::format("{} entries is outside what the controller and this driver allow (2 to "
                                      "{}: CAP.MQES, and {} at most)",
                                      options.entries, max_entries, kMaxIoQueueEntries));
  }
  const bool interrupts = options.completion != engine::CompletionMode::polling;
  VFE_TRY_ASSIGN(const std::uint16_t qid, table_.claim(interrupts, irqs_ ? irqs_->count() : 0));
  auto release = ScopeGuard([&]() noexcept { table_.release(qid); });
  const std::uint64_t bytes = IoQueue::memory_bytes(options.entries, page_size());
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, bytes, {.hugepages = true, .numa_node = options.numa_node}));
  release.dismiss();  // from here the queue owns its ID, also when open fails: it frees it when it goes
  return IoQueue::open(*this, qid, options, std::move(mem), worker, interrupts ? irqs_->eventfd(qid) : -1);
}

QueueParams Controller::queue_params() noexcept {
  return {.bar = &*bar_,
          .page_size = page_size(),
          .max_transfer = max_transfer_,
          .doorbell_stride = cap_.doorbell_stride(),
          .retries = options_.retries};
}

Result<void> Controller::add(HostedQueue& q, bool& listed) {
  std::lock_guard failing(fail_mu_);
  if (state() != ControllerState::running) {
    return Error::from_errno(ENODEV, "create I/O queue", "the controller is not running: " + failure());
  }
  if (auto r = q.create_on_device(reset_count_); !r) {
    if (admin_->broken()) {
      // The controller did not answer: it may have made the queue and may use its memory. Listed,
      // the queue is failed with the others and retire() tells ~IoQueue whether DMA stopped.
      table_.add(q);
      listed = true;
      fail_locked(EIO, fmt::format("creating I/O queue {}: {}", q.queue_id(), r.error().message()));
    }
    return std::move(r).error();
  }
  table_.add(q);
  listed = true;
  return ok();
}

void Controller::unregister(HostedQueue& q) noexcept { table_.remove(q); }

bool Controller::retire(HostedQueue& q) noexcept {
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

void Controller::release_qid(std::uint16_t qid) noexcept { table_.release(qid); }

}  // namespace vfe::nvme
