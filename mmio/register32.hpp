#pragma once
/// \file
/// `Register32`: one 32-bit register of a region, its address looked up once.

#include <cstdint>

#include "mmio/barrier.hpp"
#include "mmio/region.hpp"

namespace vfe::mmio {

/// A 32-bit register that is written often (a doorbell). `Region::write32` finds the mmap'd
/// area that holds an offset on every access; this finds it once, at construction, so a write is
/// one store. Where the register is not mmap'd it goes through the region's pread/pwrite path,
/// as `Region::write32` would.
///
/// The cached address stays valid for the region's life: `Region::detach` replaces its areas in
/// place, never moving them. Borrows the region, which must outlive this. Copyable; the same
/// thread-safety as the region's own accesses.
class Register32 {
 public:
  Register32() = default;
  Register32(Region& region, std::uint64_t offset) noexcept
      : region_(&region),
        offset_(offset),
        address_(static_cast<volatile std::uint32_t*>(region.address(offset, sizeof(std::uint32_t)))) {}

  [[nodiscard]] std::uint32_t read() const noexcept {
    return address_ != nullptr ? *address_ : region_->read32(offset_);
  }
  void write(std::uint32_t v) noexcept {
    if (address_ != nullptr) {
      *address_ = v;
    } else {
      region_->write32(offset_, v);
    }
  }
  /// A doorbell: every earlier store to DMA memory is visible to the device before this one.
  void write_db(std::uint32_t v) noexcept {
    io_wmb();
    write(v);
  }

  [[nodiscard]] std::uint64_t offset() const noexcept { return offset_; }
  /// True when writes are plain stores (the register is mmap'd).
  [[nodiscard]] bool is_mapped() const noexcept { return address_ != nullptr; }

 private:
  Region* region_ = nullptr;
  std::uint64_t offset_ = 0;
  volatile std::uint32_t* address_ = nullptr;  // null where the region is not mmap'd
};

}  // namespace vfe::mmio
