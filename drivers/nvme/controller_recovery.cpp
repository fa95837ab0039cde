// The watchdog and what it does when something goes wrong: a fatal status, a reset nobody asked
// for or a command that is too old make it reset the controller and go on; what cannot be
// recovered fails it for good (see the class comment in controller.hpp).
#include <fmt/format.h>

#include <cerrno>

#include "base/log.hpp"
#include "drivers/nvme/controller.hpp"
#include "mmio/config_space.hpp"
#include "mmio/pci_caps.hpp"

namespace vfe::nvme {

std::string Controller::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

void Controller::fail(int err, const std::string& why) {
  // Held to the end: a queue being retired, or a second caller, waits here until DMA stopped.
  std::lock_guard failing(fail_mu_);
  fail_locked(err, why);
}

// fail_mu_ held.
void Controller::fail_locked(int err, const std::string& why) {
  if (!mark_failed(err, why)) {
    return;
  }
  // Stop the controller's DMA before anyone is told that their buffers are free again.
  dma_stopped_ = stop_dma();
  if (!dma_stopped_) {
    log_error("nvme {}: the controller's DMA could not be stopped; its requests stay in flight and their "
              "buffers must not be reused",
              device_->bdf().to_string());
  }
  settle_failure(err);
}

// fail_mu_ held.
void Controller::settle_failure(int err) noexcept {
  if (dma_stopped_ && !queues_settled_) {
    queues_settled_ = true;
    fail_queues(err);
  }
}

bool Controller::mark_failed(int err, const std::string& why) {
  {
    std::lock_guard lock(mu_);
    const ControllerState s = state();
    if (s == ControllerState::failed || s == ControllerState::shut_down) {
      return false;
    }
    failure_ = why;
    fail_errno_.store(err, std::memory_order_release);
    state_.store(ControllerState::failed, std::memory_order_release);
  }
  log_error("nvme {}: {}; failing every outstanding request", device_->bdf().to_string(), why);
  return true;
}

void Controller::fail_queues(int err) noexcept {
  table_.for_each([err](HostedQueue& q) {
    if (auto r = q.fail_requests(-err); !r) {
      log_error("nvme: failing queue {}: {}", q.queue_id(), r.error().message());
    }
  });
}

// §3.1.5: clearing CC.EN resets the controller, which stops processing commands; when it does
// not get there within CAP.TO, a function level reset does, and failing that, Bus Master Enable
// cleared (as Linux does before it cancels requests). True once one of them is confirmed, or
// the function is gone; false when the controller may still DMA.
bool Controller::stop_dma() noexcept {
  if (bar_->read32(reg::kCsts) != ~0U) {
    auto r = stop_for_reset();
    if (r) {
      return true;
    }
    log_error("nvme {}: {}", device_->bdf().to_string(), r.error().message());
  }
  if (clear_bus_master()) {
    log_warn("nvme {}: bus mastering is off (read back): the device can no longer DMA", device_->bdf().to_string());
    return true;
  }
  return false;
}

// Bus Master Enable cleared and read back clear; or no function answers (vendor ID all ones).
bool Controller::clear_bus_master() noexcept {
  auto config = mmio::ConfigSpace::open(*device_);
  if (!config) {
    log_error("nvme {}: {}", device_->bdf().to_string(), config.error().message());
    return false;
  }
  if (auto vendor = config->read16(mmio::pci::kVendorId); vendor && *vendor == 0xffff) {
    return true;  // gone: nothing left that could DMA
  }
  if (auto r = config->disable_bus_master(); !r) {
    log_error("nvme {}: {}", device_->bdf().to_string(), r.error().message());
    return false;
  }
  return true;
}

// Watchdog thread. `err` is what the requests get that run out of retries on the way.
void Controller::recover(int err, const std::string& why) {
  std::lock_guard failing(fail_mu_);
  if (state() != ControllerState::running) {
    return;
  }
  if (!reset_budget_.spend(ResetBudget::Clock::now())) {
    return fail_locked(err, fmt::format("{}, and the controller was reset {} times within {} ms already", why,
                                        options_.max_resets, options_.reset_window.count()));
  }
  const std::string bdf = device_->bdf().to_string();
  log_warn("nvme {}: {}; resetting the controller", bdf, why);
  stats_.resets.fetch_add(1, std::memory_order_relaxed);
  // From here the workers neither submit nor reap (IoQueue::paused); the submitters' requests wait.
  state_.store(ControllerState::resetting, std::memory_order_release);
  ++reset_count_;
  abort_.reset();  // whatever was aborted goes again from the start
  if (auto r = stop_for_reset(); !r) {
    return fail_locked(err, fmt::format("{}; the reset could not stop the controller: {}", why, r.error().message()));
  }
  requeue_queues(-err);
  if (auto r = reinitialize(); !r) {
    return fail_locked(err, fmt::format("{}; the controller did not come back from its reset: {}", why,
                                        r.error().message()));
  }
  state_.store(ControllerState::running, std::memory_order_release);
  restart_queues();
  log_warn("nvme {}: the controller is back after its reset; I/O goes on", bdf);
}

// Stopped by a controller reset that is confirmed: CC.EN = 0 and CSTS.RDY = 0 (§3.1.5), or a
// function level reset and then the same. A reset needs this before it enables the controller
// again; bus mastering switched off is not enough (the controller would go on once it is back on).
Result<void> Controller::stop_for_reset() {
  if (bar_->read32(reg::kCsts) == ~0U) {
    return Error::from_errno(ENODEV, "reset the controller", "CSTS reads all ones: the device is gone");
  }
  auto r = disable();
  if (r) {
    return ok();
  }
  log_error("nvme {}: {}; resetting the function", device_->bdf().to_string(), r.error().message());
  VFE_TRY(device_->reset());
  return disable();  // after an FLR the controller is disabled: this confirms it
}

// Every queue's worker collects what was in flight, with DMA stopped.
void Controller::requeue_queues(int err) noexcept {
  table_.for_each([err](HostedQueue& q) {
    if (auto r = q.requeue_requests(err); !r) {
      log_error("nvme: collecting queue {} for its reset: {}", q.queue_id(), r.error().message());
    }
  });
}

// §7.3.1 after a controller reset: bus mastering (an FLR or the fault may have cleared it), the
// admin queue and CC, the namespaces as they were, the number of queues, every I/O queue.
Result<void> Controller::reinitialize() {
  VFE_TRY_ASSIGN(auto config, mmio::ConfigSpace::open(*device_));
  VFE_TRY(config.enable_bus_master());
  VFE_TRY(bring_up());
  VFE_TRY(check_namespaces());
  VFE_TRY_ASSIGN(const std::uint32_t granted, request_queues(io_queue_limit_));
  VFE_TRY(configure_shadow_doorbells());  // a reset turned them off
  Result<void> made = ok();
  table_.for_each([&](HostedQueue& q) {
    if (!made) {
      return;
    }
    if (q.queue_id() > granted) {
      made = Error::from_errno(EIO, "re-create I/O queues",
                               fmt::format("queue {} exists, but the controller now grants only {}", q.queue_id(),
                                           granted));
      return;
    }
    made = q.create_on_device(reset_count_);
  });
  VFE_TRY(std::move(made));
  return arm_events();  // the reset dropped the event requests
}

// A namespace that changed size or format since bring-up would put requests on the wrong
// blocks: the controller fails instead (re-open it to see the new layout).
Result<void> Controller::check_namespaces() {
  VFE_TRY_ASSIGN(const auto now, identify_namespaces());
  for (const NamespaceInfo& was : namespaces_) {
    const auto it = std::find_if(now.begin(), now.end(), [&](const NamespaceInfo& n) { return n.nsid == was.nsid; });
    if (it == now.end()) {
      return Error::from_errno(ENODEV, "identify namespaces after a reset",
                               fmt::format("namespace {} is gone", was.nsid));
    }
    if (it->size_blocks != was.size_blocks || it->block_size != was.block_size ||
        it->metadata_bytes != was.metadata_bytes || it->extended_lba != was.extended_lba ||
        it->pi_type != was.pi_type || it->pi_first != was.pi_first || it->pi_format != was.pi_format) {
      return Error::from_errno(ESTALE, "identify namespaces after a reset",
                               fmt::format("namespace {} changed from {} blocks of {} bytes to {} of {}; re-open "
                                           "the controller",
                                           was.nsid, was.size_blocks, was.block_size, it->size_blocks,
                                           it->block_size));
    }
  }
  return ok();
}

void Controller::restart_queues() noexcept {
  table_.for_each([](HostedQueue& q) {
    if (auto r = q.restart_requests(); !r) {
      log_error("nvme: restarting queue {} after its reset: {}", q.queue_id(), r.error().message());
    }
  });
}

void Controller::watchdog() noexcept {
  std::unique_lock lock(mu_);
  while (!stop_watchdog_) {
    watchdog_cv_.wait_for(lock, options_.watchdog_period);
    if (stop_watchdog_) {
      break;
    }
    lock.unlock();
    epoch_.fetch_add(1, std::memory_order_relaxed);
    if (device_requested()) {
      on_device_request();
    }
    check_health();
    handle_events();
    lock.lock();
  }
}

void Controller::check_health() noexcept {
  if (state() != ControllerState::running) {
    return;
  }
  const std::uint32_t csts = bar_->read32(reg::kCsts);
  if (csts == ~0U) {
    return fail(ENODEV, "the controller no longer answers (CSTS reads all ones): surprise removal or a dead link");
  }
  if ((csts & csts::kFatal) != 0) {
    return recover(EIO, "the controller reports a fatal status (CSTS.CFS)");
  }
  if ((csts & csts::kReady) == 0) {
    return recover(EIO, fmt::format("the controller was reset behind the driver's back (CSTS.RDY is 0: an FLR, or "
                                    "another user; CSTS {:#x}, CC {:#x})",
                                    csts, bar_->read32(reg::kCc)));
  }
  if (admin_->broken_now()) {
    return recover(EIO, "an admin command got no answer, or the answer of another: the admin queue is out of step");
  }
  const std::uint32_t max_age = timeout_ticks();
  int late_qid = -1;
  std::uint16_t late_cid = 0;
  table_.for_each([&](HostedQueue& q) {
    // The first late queue; the aborted command's queue, when it is late.
    if (const auto cid = q.late_command(); cid && (late_qid < 0 || (abort_ && q.queue_id() == abort_->qid))) {
      late_qid = q.queue_id();
      late_cid = *cid;
    }
    q.post_age_check(max_age);
  });
  if (late_qid < 0) {
    abort_.reset();  // nothing late (an aborted command completed and went again)
    return;
  }
  on_late_command(static_cast<std::uint16_t>(late_qid), late_cid);
}

// As Linux's nvme_timeout: abort the late command first, and reset when the Abort goes
// unanswered or that command is still late one io_timeout later, whether or not the controller
// agreed to abort it (one that refuses may still finish the command). Once it is done, the next
// late command gets an Abort of its own. (A queue reports its oldest late command.)
void Controller::on_late_command(std::uint16_t qid, std::uint16_t cid) noexcept {
  const std::uint32_t now = epoch();
  if (abort_) {
    if (static_cast<std::int32_t>(now - abort_->deadline) < 0) {
      return;  // the abort, or the command, is still under way
    }
    const AbortSent sent = *abort_;
    abort_.reset();
    if (sent.qid == qid && sent.cid == cid) {
      return recover(ETIMEDOUT, fmt::format("command {:#x} on I/O queue {} is still there {} ms after its Abort",
                                            cid, qid, options_.io_timeout.count()));
    }
  }
  stats_.timeouts.fetch_add(1, std::memory_order_relaxed);
  if (abort_command(qid, cid)) {
    abort_ = AbortSent{now + timeout_ticks(), qid, cid};
    return;
  }
  recover(ETIMEDOUT, fmt::format("a command on I/O queue {} did not complete within {} ms, and the Abort for it "
                                 "failed",
                                 qid, options_.io_timeout.count()));
}

// §5.1 Abort (command ID in bits 31:16, SQ ID in 15:0). True when the controller answered it
// (a timed-out admin queue is no answer).
// Dword 0 bit 0 clear: the command completes with status Command Abort Requested, which has no
// DNR, so its request goes again; set: the controller did not abort it.
bool Controller::abort_command(std::uint16_t qid, std::uint16_t cid) noexcept {
  Sqe cmd{};
  cmd.opcode = admin::kAbort;
  cmd.cdw10 = (static_cast<std::uint32_t>(cid) << 16) | qid;
  auto r = admin(cmd, "abort a late command");
  if (!r) {
    log_warn("nvme {}: {}", device_->bdf().to_string(), r.error().message());
    // An error status is an answer (the queue may be gone by now): the command gets its time.
    return !admin_->broken();
  }
  if ((r->dw0 & 1U) != 0) {
    stats_.aborts_refused.fetch_add(1, std::memory_order_relaxed);
    log_warn("nvme {}: command {:#x} on queue {} is older than {} ms and the controller did not abort it; "
             "waiting another {} ms",
             device_->bdf().to_string(), cid, qid, options_.io_timeout.count(), options_.io_timeout.count());
    return true;
  }
  stats_.aborts.fetch_add(1, std::memory_order_relaxed);
  log_warn("nvme {}: aborted command {:#x} on queue {}, which was older than {} ms", device_->bdf().to_string(), cid,
           qid, options_.io_timeout.count());
  return true;
}

}  // namespace vfe::nvme
