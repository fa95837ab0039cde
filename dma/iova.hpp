#pragma once
/// \file
/// `Iova`: an I/O virtual address, the address a device uses for DMA.

#include <cstdint>

namespace vfe::dma {

/// A device-side address. A distinct type so that a process virtual address (or a physical one)
/// can't be passed where the device's address is meant, and the other way round; convert
/// explicitly with `to_u64` / `Iova{value}`.
enum class Iova : std::uint64_t {};

[[nodiscard]] constexpr std::uint64_t to_u64(Iova iova) noexcept {
  return static_cast<std::uint64_t>(iova);
}

/// The address `offset` bytes past `iova` (inside one mapping; no overflow check).
[[nodiscard]] constexpr Iova operator+(Iova iova, std::uint64_t offset) noexcept {
  return Iova{to_u64(iova) + offset};
}

}  // namespace vfe::dma
