// Hot-unplug: the controller gives its device back when the kernel asks for it (see the class
// comment in controller.hpp).
#include <fmt/format.h>
#include <linux/vfio.h>
#include <poll.h>
#include <unistd.h>

#include "base/log.hpp"
#include "drivers/nvme/controller.hpp"

namespace vfe::nvme {

// vfio-pci signals the request interrupt when the kernel wants the device back (its request
// callback, from a hot-unplug or an unbind), and again every 10 s until it gets it. Without the
// interrupt the removal waits for this process to close the device on its own; the watchdog's
// all-ones check still fails the controller then.
void Controller::watch_device_requests() noexcept {
  const auto info = device_->irq_info(VFIO_PCI_REQ_IRQ_INDEX);
  if (!info || info->count == 0) {
    log_warn("nvme {}: the kernel offers no device request interrupt; a hot-unplug waits until the "
             "controller is destroyed",
             device_->bdf().to_string());
    return;
  }
  auto req = irq::IrqSet::enable(*device_, irq::IrqIndex::req, 1);
  if (!req) {
    log_warn("nvme {}: {}; a hot-unplug waits until the controller is destroyed", device_->bdf().to_string(),
             req.error().message());
    return;
  }
  req_irq_.emplace(std::move(*req));
}

// Watchdog: has the request interrupt fired since the last look? (No allocation: every tick.)
bool Controller::device_requested() noexcept {
  if (!req_irq_ || released()) {
    return false;
  }
  pollfd p{req_irq_->eventfd(0), POLLIN, 0};
  if (::poll(&p, 1, 0) != 1) {
    return false;
  }
  std::uint64_t count = 0;
  static_cast<void>(::read(p.fd, &count, sizeof(count)));
  return true;
}

void Controller::on_device_request() noexcept {
  std::lock_guard failing(fail_mu_);
  const bool first = mark_failed(ENODEV, "the kernel asked for the device back (VFIO device request: a hot-unplug or "
                                         "an unbind)");
  if (first) {
    dma_stopped_ = stop_for_removal();
  }
  // Failed before for another reason whose stop did not work, or not stopped now: a reset is
  // refused while the kernel removes the device, and giving it back is what stops it (vfio-pci
  // clears bus mastering when the last user closes it).
  release_device();
  if (released()) {
    dma_stopped_ = true;
  }
  if (!dma_stopped_) {
    // The device may still write the requests' buffers: they stay in flight. vfio-pci asks
    // again every 10 s, and the next request tries the release again (here).
    return;
  }
  settle_failure(failure_errno());  // only now: DMA stopped, or the device is given back
}

// The device is usually still there (an unbind, or the attention button of a hot-plug slot):
// a normal shutdown first (NVMe 1.4 §7.6.2, CC.SHN), so data it acknowledged is on the medium,
// then disabled (§3.1.5, CC.EN cleared) so it stops DMA. True when that is confirmed, or bus
// mastering is off (read back), or config space says the function is gone: all-ones register
// reads alone prove nothing (the BAR may be unreachable while the function still DMAs).
bool Controller::stop_for_removal() noexcept {
  if (bar_->read32(reg::kCsts) != ~0U) {
    if (auto r = normal_shutdown(); !r) {
      log_error("nvme {}: {}", device_->bdf().to_string(), r.error().message());
    }
    auto r = disable();
    if (r) {
      return true;
    }
    log_error("nvme {}: {}", device_->bdf().to_string(), r.error().message());
  }
  return clear_bus_master();
}

// What remains after the controller stopped is this process's hold on the device: the BAR0
// mapping and the fd. Called with fail_mu_ held, so no register sequence of fail() or
// shutdown() is under way.
void Controller::release_device() noexcept {
  if (released()) {
    return;
  }
  const std::string bdf = device_->bdf().to_string();
  if (auto r = bar_->detach(); !r) {
    log_error("nvme {}: cannot let go of BAR0 ({}); the kernel's removal waits until the controller is "
              "destroyed",
              bdf, r.error().message());
    return;
  }
  if (auto r = device_->release(); !r) {
    log_error("nvme {}: {}; the kernel's removal waits until the controller is destroyed", bdf,
              r.error().message());
    return;
  }
  released_.store(true, std::memory_order_release);
  log_warn("nvme {}: device given back to the kernel; destroy the controller's queues and the controller", bdf);
}

}  // namespace vfe::nvme
