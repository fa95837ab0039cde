#include "irq/irq_set.hpp"

#include <fmt/format.h>
#include <linux/vfio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace vfe::irq {

const char* to_string(IrqIndex index) noexcept {
  switch (index) {
    case IrqIndex::intx:
      return "INTx";
    case IrqIndex::msi:
      return "MSI";
    case IrqIndex::msix:
      return "MSI-X";
    case IrqIndex::err:
      return "ERR";
    case IrqIndex::req:
      return "REQ";
  }
  return "?";
}

std::vector<std::uint8_t> build_irq_set(std::uint32_t flags, IrqIndex index, std::uint32_t start,
                                        std::uint32_t count, std::span<const std::int32_t> fds) {
  const bool with_fds = (flags & VFIO_IRQ_SET_DATA_EVENTFD) != 0;
  const std::size_t data = with_fds ? fds.size_bytes() : 0;
  std::vector<std::uint8_t> buf(sizeof(vfio_irq_set) + data);
  vfio_irq_set head{};
  head.argsz = static_cast<std::uint32_t>(buf.size());
  head.flags = flags;
  head.index = static_cast<std::uint32_t>(index);
  head.start = start;
  head.count = count;
  std::memcpy(buf.data(), &head, sizeof(head));
  if (data != 0) {
    std::memcpy(buf.data() + sizeof(head), fds.data(), data);
  }
  return buf;
}

Result<IrqSet> IrqSet::enable(const vfio::Device& device, IrqIndex index, std::uint32_t count) {
  VFE_TRY_ASSIGN(const auto info, device.irq_info(static_cast<std::uint32_t>(index)));
  if (info.count == 0 || (info.flags & VFIO_IRQ_INFO_EVENTFD) == 0) {
    return Error::not_supported("enable interrupts", fmt::format("{} has no {} interrupts",
                                                                 device.bdf().to_string(),
                                                                 to_string(index)));
  }
  if (count == 0) {
    count = info.count;
  }
  if (count > info.count) {
    return Error::invalid("enable interrupts",
                          fmt::format("{} has {} {} vectors; {} asked for",
                                      device.bdf().to_string(), info.count, to_string(index), count));
  }
  IrqSet set(device, index, info.flags);
  std::vector<std::int32_t> raw;
  for (std::uint32_t i = 0; i < count; ++i) {
    Fd fd(device.sys().eventfd(0, EFD_NONBLOCK));
    if (!fd) {
      return Error::from_errno(errno, "eventfd", "interrupt vector");
    }
    raw.push_back(fd.get());
    set.fds_.push_back(std::move(fd));
  }
  VFE_TRY(set.set_irqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, count, raw,
                       "enable"));
  set.enabled_ = true;
  return set;
}

IrqSet::IrqSet(IrqSet&& other) noexcept
    : device_(other.device_),
      index_(other.index_),
      info_flags_(other.info_flags_),
      fds_(std::move(other.fds_)),
      enabled_(std::exchange(other.enabled_, false)) {}

IrqSet::~IrqSet() {
  if (enabled_ && !device_->released()) {  // a released device has dropped its vectors itself
    // Disable first (count 0 with DATA_NONE tears the index down), then the fds close.
    auto r = set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, {}, "disable");
    if (!r) {
      log_warn("{}", r.error().message());
    }
  }
}

Result<void> IrqSet::set_irqs(std::uint32_t flags, std::uint32_t start, std::uint32_t count,
                              std::span<const std::int32_t> fds, const char* what) const {
  if (device_->released()) {
    return device_->released_error("VFIO_DEVICE_SET_IRQS");
  }
  auto buf = build_irq_set(flags, index_, start, count, fds);
  if (device_->sys().ioctl_ptr(device_->fd(), VFIO_DEVICE_SET_IRQS, buf.data()) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_SET_IRQS",
                             count == 0 ? fmt::format("{} {} {}", what, device_->bdf().to_string(),
                                                      to_string(index_))
                                        : fmt::format("{} {} {}: {} vector(s) from {}", what,
                                                      device_->bdf().to_string(),
                                                      to_string(index_), count, start));
  }
  return ok();
}

int IrqSet::eventfd(std::uint32_t vector) const noexcept {
  return vector < fds_.size() ? fds_[vector].get() : -1;
}

Result<void> IrqSet::check_vector(std::uint32_t vector, const char* op) const {
  if (vector >= fds_.size()) {
    return Error::invalid(op, fmt::format("{} vector {} is beyond the {} enabled",
                                          to_string(index_), vector, fds_.size()));
  }
  return ok();
}

Result<void> IrqSet::trigger(std::uint32_t vector) const {
  VFE_TRY(check_vector(vector, "trigger interrupt"));
  return set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, vector, 1, {}, "trigger");
}

Result<void> IrqSet::set_attached(std::uint32_t vector, bool attached) const {
  VFE_TRY(check_vector(vector, "attach interrupt"));
  const std::int32_t fd = attached ? fds_[vector].get() : -1;
  return set_irqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, vector, 1,
                  std::span(&fd, 1), attached ? "attach" : "detach");
}

Result<void> IrqSet::set_masked(std::uint32_t vector, bool masked) const {
  const char* op = masked ? "mask interrupt" : "unmask interrupt";
  VFE_TRY(check_vector(vector, op));
  if ((info_flags_ & VFIO_IRQ_INFO_MASKABLE) == 0) {
    return Error::not_supported(op, fmt::format("{} vectors can't be masked through VFIO",
                                                to_string(index_)));
  }
  return set_irqs(VFIO_IRQ_SET_DATA_NONE |
                      (masked ? VFIO_IRQ_SET_ACTION_MASK : VFIO_IRQ_SET_ACTION_UNMASK),
                  vector, 1, {}, masked ? "mask" : "unmask");
}

Result<std::uint64_t> IrqSet::wait(std::uint32_t vector, std::chrono::milliseconds timeout) const {
  VFE_TRY(check_vector(vector, "wait for interrupt"));
  pollfd p{fds_[vector].get(), POLLIN, 0};
  const int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (n < 0) {
    return Error::from_errno(errno, "poll", "interrupt eventfd");
  }
  if (n == 0) {
    return Error::from_errno(ETIMEDOUT, "wait for interrupt",
                             fmt::format("no {} vector {} within {} ms", to_string(index_), vector,
                                         timeout.count()));
  }
  std::uint64_t value = 0;
  if (::read(fds_[vector].get(), &value, sizeof(value)) != static_cast<ssize_t>(sizeof(value))) {
    return Error::from_errno(errno, "read", "interrupt eventfd");
  }
  return value;
}

}  // namespace vfe::irq
