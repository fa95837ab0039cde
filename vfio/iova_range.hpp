#pragma once
/// \file
/// `IovaRange`: a window of I/O virtual addresses a device may use.

#include <cstdint>

namespace vfe::vfio {

/// An inclusive range [start, last] of IOVAs, as the kernel reports them (VFIO type1's
/// VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, iommufd's IOMMU_IOAS_IOVA_RANGES). Inclusive so that a
/// range ending at 2^64 - 1 is representable. Plain value type.
struct IovaRange {
  std::uint64_t start = 0;
  std::uint64_t last = 0;

  /// Bytes in the range; 0 stands for the whole 64-bit space (2^64, which does not fit).
  [[nodiscard]] constexpr std::uint64_t size() const noexcept { return last - start + 1; }
  friend constexpr bool operator==(const IovaRange&, const IovaRange&) = default;
};

}  // namespace vfe::vfio
