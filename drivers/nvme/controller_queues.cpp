// I/O queues on the controller: creating them, and the controller's side of the QueueHost
// contract (queue_host.hpp): listing, deleting and freeing them.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/log.hpp"
#include "base/units.hpp"
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
  const std::uint64_t bytes = IoQueue::memory_bytes(options.entries, page_size(), max_transfer_);
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, bytes, {.hugepages = true, .numa_node = options.numa_node}));
  release.dismiss();  // from here the queue owns its ID, also when open fails: it frees it when it goes
  return IoQueue::open(*this, qid, options, std::move(mem), worker, interrupts ? irqs_->eventfd(qid) : -1);
}

QueueParams Controller::queue_params() noexcept {
  return {.bar = &*bar_,
          .page_size = page_size(),
          .max_transfer = max_transfer_,
          .doorbell_stride = cap_.doorbell_stride(),
          .retries = options_.retries,
          .sgls = identity_.sgls,
          .shadow_doorbells = shadow_mem_ ? shadow_mem_->as<std::uint32_t>() : nullptr,
          .event_indexes = shadow_mem_ ? shadow_mem_->as<std::uint32_t>() + shadow_half_ / 4 : nullptr,
          .msix_table = msix_table_};
}

// §5.8 Doorbell Buffer Config, where the controller has it (OACS bit 8) and the options want it:
// one buffer of shadow doorbells and one of event indexes, each laid out as the doorbell
// registers for queues 0 to io_queue_limit_. A controller that refuses it runs without.
Result<void> Controller::set_up_shadow_doorbells() {
  if (!options_.shadow_doorbells || !identity_.supports_doorbell_buffer_config()) {
    return ok();
  }
  shadow_half_ = align_up((io_queue_limit_ + 1ULL) * 2 * cap_.doorbell_stride(), page_size());
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, 2 * shadow_half_));
  shadow_mem_.emplace(std::move(mem));
  if (auto r = configure_shadow_doorbells(); !r) {
    if (admin_->broken()) {
      return r;  // no answer: the controller may still write there (bring-up stops its DMA first)
    }
    log_warn("nvme {}: {}; using the doorbell registers only", device_->bdf().to_string(), r.error().message());
    shadow_mem_.reset();  // refused with a status: the controller does not use it
  }
  return ok();
}

// Zeroes both buffers (no queue exists on the controller now, or each is created again next with
// head and tail 0) and hands them to the controller; at bring-up and after each reset, which
// turns them off (§5.8).
Result<void> Controller::configure_shadow_doorbells() {
  if (!shadow_mem_) {
    return ok();
  }
  std::memset(shadow_mem_->data(), 0, 2 * shadow_half_);
  Sqe cmd{};
  cmd.opcode = admin::kDoorbellBufferConfig;
  cmd.prp1 = dma::to_u64(shadow_mem_->iova());                // shadow doorbells, page aligned
  cmd.prp2 = dma::to_u64(shadow_mem_->iova_at(shadow_half_));  // event indexes, page aligned
  VFE_TRY(admin(cmd, "doorbell buffer config"));
  return ok();
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
