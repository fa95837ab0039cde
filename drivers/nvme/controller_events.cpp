// Asynchronous events (NVMe 1.4 §5.2): Asynchronous Event Requests wait in the admin queue, as
// many as AERL allows (at most AdminQueue::kMaxPosted), across resets; the watchdog collects
// their completions, reads the log page each names, asks again, re-checks the namespaces after a
// namespace change, and hands the event to the application.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "base/log.hpp"
#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/status.hpp"

namespace vfe::nvme {
namespace {

// §5.21.1.11 Asynchronous Event Configuration: the SMART / health critical warnings (bits 4:0;
// bit 5, persistent memory region read only, from NVMe 1.4; 7:6 are reserved), and the namespace
// attribute (bit 8) and firmware activation (bit 9) notices the controller offers (OAES).
constexpr std::uint32_t kHealthWarnings = 0x1fU;
constexpr std::uint32_t kHealthWarnings14 = 0x3fU;
constexpr std::uint32_t kOfferedNotices = (1U << 8) | (1U << 9);
constexpr std::uint32_t kVersion14 = 0x00010400;

Sqe event_request() {
  Sqe cmd{};
  cmd.opcode = admin::kAsyncEventRequest;
  return cmd;
}

}  // namespace

Result<void> Controller::arm_events() {
  Sqe config{};
  config.opcode = admin::kSetFeatures;
  config.cdw10 = feature::kAsyncEventConfig;
  config.cdw11 = (version_ >= kVersion14 ? kHealthWarnings14 : kHealthWarnings) | (identity_.oaes & kOfferedNotices);
  if (auto r = admin(config, "set features: asynchronous event configuration"); !r) {
    if (admin_->broken()) {
      return std::move(r).error();  // no answer: the controller is not usable
    }
    // Error events need no configuration: the requests still go out.
    log_warn("nvme {}: {}; only error events will be reported", device_->bdf().to_string(), r.error().message());
  }
  return top_up_events();
}

Result<void> Controller::top_up_events() {
  const std::size_t wanted = std::min<std::size_t>(identity_.aerl + 1U, AdminQueue::kMaxPosted);
  while (admin_->posted() < wanted) {
    VFE_TRY(admin_->post(event_request(), "asynchronous event request"));
  }
  return ok();
}

// Watchdog thread, every tick: a completion queue read when nothing happened.
void Controller::handle_events() noexcept {
  if (state() != ControllerState::running || released()) {
    return;
  }
  for (const Cqe& c : admin_->take_posted()) {
    if (state() != ControllerState::running) {
      return;  // an event before failed it, or a reset began: log pages wait for nobody now
    }
    if (const Status st = Status::from_cqe(c.status); !st.ok()) {
      // Aborted by a reset (arm_events asks again), or refused: nothing happened.
      log_warn("nvme {}: an asynchronous event request ended with {}", device_->bdf().to_string(), to_string(st));
      continue;
    }
    handle_event(AsyncEvent::from_dw0(c.dw0));
  }
}

void Controller::handle_event(AsyncEvent ev) noexcept {
  const std::string bdf = device_->bdf().to_string();
  stats_.events.fetch_add(1, std::memory_order_relaxed);
  if (const std::uint32_t bytes = event_log_bytes(ev.log_page); bytes != 0) {
    auto log = read_log(ev.log_page, bytes);
    if (log) {
      ev.log = std::move(*log);
    } else {
      log_warn("nvme {}: reading log page {:#04x} for an event: {}", bdf, ev.log_page, log.error().message());
    }
  }
  // After the page was read: the controller reports nothing more of this type until then. (An
  // event kept across a reset finds the requests topped up already.)
  if (auto r = top_up_events(); !r) {
    log_warn("nvme {}: {}", bdf, r.error().message());
  }
  log_warn("nvme {}: asynchronous event: {}", bdf, ev.describe());
  if (ev.namespaces_changed()) {
    // Requests must not land on a namespace that changed size or format (as after a reset).
    if (auto r = check_namespaces(); !r) {
      fail(r.error().is(ENODEV) ? ENODEV : ESTALE, r.error().message());
    }
  }
  if (options_.on_event) {
    options_.on_event(ev);
  }
}

}  // namespace vfe::nvme
