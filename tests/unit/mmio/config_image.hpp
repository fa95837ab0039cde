#pragma once
/// \file
/// `ConfigImage`: builds PCI configuration-space snapshots byte by byte for unit tests.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mmio/pci_caps.hpp"

namespace vfe::mmio::test {

/// A zero-filled config-space image (little-endian writes, like the hardware) with a type 0 header
/// of QEMU's NVMe controller (1b36:0010). Bytes written past the end are dropped, so a test can
/// build a capability that a truncated snapshot cuts off. `bytes()` hands the image to the parser.
class ConfigImage {
 public:
  explicit ConfigImage(std::size_t size = pci::kExtConfigSize) : bytes_(size, 0) {
    put16(pci::kVendorId, 0x1b36);
    put16(pci::kDeviceId, 0x0010);
  }

  ConfigImage& put8(std::size_t offset, std::uint8_t v) { return put(offset, v, 1); }
  ConfigImage& put16(std::size_t offset, std::uint16_t v) { return put(offset, v, 2); }
  ConfigImage& put32(std::size_t offset, std::uint32_t v) { return put(offset, v, 4); }

  /// Sets the Status capabilities-list bit and the capabilities pointer (written as given, so a
  /// test can set the reserved low bits).
  ConfigImage& first_cap(std::uint8_t pointer) {
    put16(pci::kStatus, pci::kStatusCapList);
    return put8(pci::kCapabilitiesPointer, pointer);
  }
  /// A standard capability header: ID, then next pointer.
  ConfigImage& cap(std::size_t offset, std::uint8_t id, std::uint8_t next) {
    put8(offset, id);
    return put8(offset + 1, next);
  }
  /// An extended capability header: ID 15:0, version 19:16, next 31:20.
  ConfigImage& ext_cap(std::size_t offset, std::uint16_t id, std::uint8_t version,
                       std::uint16_t next) {
    return put32(offset, std::uint32_t{id} | (std::uint32_t{version} & 0xfU) << 16 |
                             std::uint32_t{next} << 20);
  }

  [[nodiscard]] std::span<const std::uint8_t> bytes() const { return bytes_; }

 private:
  ConfigImage& put(std::size_t offset, std::uint32_t v, std::size_t width) {
    for (std::size_t i = 0; i < width && offset + i < bytes_.size(); ++i) {
      bytes_[offset + i] = static_cast<std::uint8_t>(v >> (8 * i));
    }
    return *this;
  }

  std::vector<std::uint8_t> bytes_;
};

}  // namespace vfe::mmio::test
