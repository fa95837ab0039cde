#include "mmio/config_space.hpp"

#include <fmt/format.h>
#include <linux/vfio.h>

#include <algorithm>
#include <cerrno>

namespace vfe::mmio {

Result<ConfigSpace> ConfigSpace::open(const vfio::Device& device) {
  VFE_TRY_ASSIGN(const auto info, device.region_info(VFIO_PCI_CONFIG_REGION_INDEX));
  if (info.size < 256) {
    return Error::not_supported("open config space",
                                fmt::format("{}: config region is only {} bytes",
                                            device.bdf().to_string(), info.size));
  }
  return ConfigSpace(device, info.offset, info.size >= 4096 ? 4096U : 256U);
}

Result<void> ConfigSpace::access(std::uint32_t offset, void* buf, std::uint32_t len,
                                 bool write) const {
  if (offset > size_ || size_ - offset < len || offset % len != 0) {
    return Error::invalid(write ? "write config space" : "read config space",
                          fmt::format("{} bytes at {:#x}: outside the {}-byte space or unaligned",
                                      len, offset, size_));
  }
  if (device_->released()) {
    return device_->released_error(write ? "write config space" : "read config space");
  }
  const auto pos = static_cast<off_t>(fd_offset_ + offset);
  const ssize_t n = write ? device_->sys().pwrite(device_->fd(), buf, len, pos)
                          : device_->sys().pread(device_->fd(), buf, len, pos);
  if (n != static_cast<ssize_t>(len)) {
    return Error::from_errno(n < 0 ? errno : EIO, write ? "pwrite" : "pread",
                             fmt::format("{} config space at {:#x}",
                                         device_->bdf().to_string(), offset));
  }
  return ok();
}

Result<std::uint8_t> ConfigSpace::read8(std::uint32_t offset) const {
  std::uint8_t v = 0;
  VFE_TRY(access(offset, &v, sizeof(v), false));
  return v;
}

Result<std::uint16_t> ConfigSpace::read16(std::uint32_t offset) const {
  std::uint16_t v = 0;
  VFE_TRY(access(offset, &v, sizeof(v), false));
  return v;
}

Result<std::uint32_t> ConfigSpace::read32(std::uint32_t offset) const {
  std::uint32_t v = 0;
  VFE_TRY(access(offset, &v, sizeof(v), false));
  return v;
}

Result<void> ConfigSpace::write16(std::uint32_t offset, std::uint16_t value) const {
  return access(offset, &value, sizeof(value), true);
}

Result<void> ConfigSpace::write32(std::uint32_t offset, std::uint32_t value) const {
  return access(offset, &value, sizeof(value), true);
}

Result<std::vector<std::uint8_t>> ConfigSpace::snapshot() const {
  std::vector<std::uint8_t> out(size_);
  // In dwords: VFIO emulates config space register by register.
  for (std::uint32_t off = 0; off < size_; off += 4) {
    VFE_TRY(access(off, out.data() + off, 4, false));
  }
  return out;
}

Result<std::vector<Capability>> ConfigSpace::capabilities() const {
  VFE_TRY_ASSIGN(const auto snap, snapshot());
  return walk_capabilities(snap);
}

namespace {

// Finds standard capability `id` in `snap` and decodes it with `parse`; nullopt when absent.
template <class Cap>
Result<std::optional<Cap>> find_and_parse(const std::vector<std::uint8_t>& snap, std::uint16_t id,
                                          Result<Cap> (*parse)(std::span<const std::uint8_t>,
                                                               const Capability&)) {
  VFE_TRY_ASSIGN(const auto caps, walk_capabilities(snap));
  const auto cap = find_capability(caps, id, false);
  if (!cap) {
    return std::optional<Cap>{};
  }
  VFE_TRY_ASSIGN(const Cap decoded, parse(snap, *cap));
  return std::optional<Cap>{decoded};
}

}  // namespace

Result<std::optional<MsiCap>> ConfigSpace::msi() const {
  VFE_TRY_ASSIGN(const auto snap, snapshot());
  return find_and_parse<MsiCap>(snap, pci::kCapMsi, parse_msi);
}

Result<std::optional<MsixCap>> ConfigSpace::msix() const {
  VFE_TRY_ASSIGN(const auto snap, snapshot());
  return find_and_parse<MsixCap>(snap, pci::kCapMsix, parse_msix);
}

Result<void> ConfigSpace::enable_bus_master() const {
  VFE_TRY_ASSIGN(const std::uint16_t cmd, read16(pci::kCommand));
  const auto want = static_cast<std::uint16_t>(cmd | pci::kCommandMemorySpace | pci::kCommandBusMaster);
  if (want != cmd) {
    VFE_TRY(write16(pci::kCommand, want));
  }
  return ok();
}

Result<void> ConfigSpace::disable_bus_master() const {
  VFE_TRY_ASSIGN(const std::uint16_t cmd, read16(pci::kCommand));
  VFE_TRY(write16(pci::kCommand, static_cast<std::uint16_t>(cmd & ~pci::kCommandBusMaster)));
  VFE_TRY_ASSIGN(const std::uint16_t back, read16(pci::kCommand));
  if ((back & pci::kCommandBusMaster) != 0) {
    return Error::from_errno(EIO, "clear Bus Master Enable", fmt::format("the command register reads back {:#06x}", back));
  }
  return ok();
}

}  // namespace vfe::mmio
