#pragma once
/// \file
/// `ConfigSpace`: typed access to a function's PCI configuration space through VFIO.

#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.hpp"
#include "mmio/pci_caps.hpp"
#include "vfio/device.hpp"

namespace vfe::mmio {

/// The configuration space of an open device, read and written through the device fd (VFIO
/// virtualises parts of it: BARs, MSI/MSI-X control, and the command register's INTx bit).
/// Borrows the Device, which must outlive it. Setup path only: every access is a system call.
class ConfigSpace {
 public:
  [[nodiscard]] static Result<ConfigSpace> open(const vfio::Device& device);

  /// 256 bytes for conventional PCI, 4096 for PCI Express.
  [[nodiscard]] std::uint32_t size() const noexcept { return size_; }

  [[nodiscard]] Result<std::uint8_t> read8(std::uint32_t offset) const;
  [[nodiscard]] Result<std::uint16_t> read16(std::uint32_t offset) const;
  [[nodiscard]] Result<std::uint32_t> read32(std::uint32_t offset) const;
  [[nodiscard]] Result<void> write16(std::uint32_t offset, std::uint16_t value) const;
  [[nodiscard]] Result<void> write32(std::uint32_t offset, std::uint32_t value) const;

  /// The whole space, read at once, for parsing.
  [[nodiscard]] Result<std::vector<std::uint8_t>> snapshot() const;
  /// Standard then extended capabilities; a malformed or cyclic chain is an error.
  [[nodiscard]] Result<std::vector<Capability>> capabilities() const;
  /// The MSI / MSI-X capability, or nullopt when the function has none.
  [[nodiscard]] Result<std::optional<MsiCap>> msi() const;
  [[nodiscard]] Result<std::optional<MsixCap>> msix() const;

  /// Sets Memory Space and Bus Master Enable in the command register. vfio-pci enables memory
  /// decoding only; a device can't DMA until userspace sets bus mastering.
  [[nodiscard]] Result<void> enable_bus_master() const;
  /// Clears Bus Master Enable and reads the command register back: once this succeeds the
  /// function can no longer start a DMA (what Linux does before it cancels a device's requests).
  /// EIO when the bit reads back set.
  [[nodiscard]] Result<void> disable_bus_master() const;

 private:
  ConfigSpace(const vfio::Device& device, std::uint64_t fd_offset, std::uint32_t size) noexcept
      : device_(&device), fd_offset_(fd_offset), size_(size) {}
  [[nodiscard]] Result<void> access(std::uint32_t offset, void* buf, std::uint32_t len,
                                    bool write) const;

  const vfio::Device* device_;
  std::uint64_t fd_offset_;
  std::uint32_t size_;
};

}  // namespace vfe::mmio
