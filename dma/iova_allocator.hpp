#pragma once
/// \file
/// `IovaAllocator`: hands out device addresses (IOVAs) for DMA mappings, inside the windows the
/// kernel reports and below the device's DMA mask.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "dma/iova.hpp"
#include "vfio/iova_range.hpp"

namespace vfe::dma {

/// Allocates IOVA space for DMA mappings, first fit by lowest address, and takes freed space back
/// (coalescing it with free neighbours, so any amount of allocate/free churn keeps the structures
/// no larger than the number of live allocations plus the number of usable ranges).
///
/// The usable space is fixed at creation: the kernel's IOVA ranges (VFIO_IOMMU_TYPE1_INFO_CAP_
/// IOVA_RANGE or IOMMU_IOAS_IOVA_RANGES; they exclude reserved windows such as the x86 MSI hole
/// 0xfee00000..0xfeefffff) intersected with what the device can address (its DMA mask), trimmed
/// to whole pages. The page at IOVA 0 is reserved and never handed out: a zero device address is
/// almost always an uninitialised descriptor field, and keeping page 0 unmapped in the IOMMU makes
/// such a DMA fault (and get logged) instead of silently hitting a live buffer.
///
/// The allocator only does arithmetic: it maps nothing in the IOMMU. Thread safety: every member
/// function may be called from any thread concurrently (an internal mutex serialises them); these
/// are setup-path calls, not for the data path. Moving and destroying need exclusive access, as
/// for any object. Movable (the state lives behind a pointer, mutex included); a moved-from
/// allocator may only be destroyed or assigned to.
class IovaAllocator {
 public:
  /// The smallest page size accepted (and the default): the x86 IOMMU's base page.
  static constexpr std::uint64_t kMinPageSize = 4096;

  /// Builds an allocator over `ranges` (inclusive [start, last], any order, may overlap or touch:
  /// they are merged) intersected with [0, 2^dma_mask_bits - 1], trimmed to `page_size`
  /// alignment, minus the reserved page at IOVA 0. EINVAL when `dma_mask_bits` is outside
  /// 12..64, `page_size` is not a power of two >= 4096, a range has start > last, or no whole
  /// page is left to allocate. Copies what it needs from `ranges`.
  [[nodiscard]] static Result<IovaAllocator> create(std::span<const vfio::IovaRange> ranges,
                                                    unsigned dma_mask_bits,
                                                    std::uint64_t page_size = kMinPageSize);

  IovaAllocator(IovaAllocator&& other) noexcept;
  IovaAllocator& operator=(IovaAllocator&& other) noexcept;
  IovaAllocator(const IovaAllocator&) = delete;
  IovaAllocator& operator=(const IovaAllocator&) = delete;
  ~IovaAllocator();

  /// The lowest IOVA that is a multiple of `align` and starts `size` free bytes (first fit).
  /// `size` must be a non-zero multiple of the page size; `align` a power of two >= the page size
  /// (pass the mapping size for hugepages: 2 MiB, 1 GiB, so the IOMMU can use large pages too).
  /// EINVAL for bad arguments, ENOSPC when no free run fits (the detail gives the largest free
  /// run at that alignment and the total free); on error nothing changes.
  [[nodiscard]] Result<Iova> allocate(std::uint64_t size, std::uint64_t align);

  /// Returns one earlier allocation: `iova` and `size` must be exactly those of a live allocation.
  /// A double free, a partial free or an IOVA never handed out is an EINVAL error that changes
  /// nothing (the detail names the IOVA and what is wrong with it). Call it only after the IOVA
  /// was unmapped from the IOMMU: the next `allocate` may hand the space out again at once.
  [[nodiscard]] Result<void> free(Iova iova, std::uint64_t size);

  /// Bytes not allocated now.
  [[nodiscard]] std::uint64_t free_bytes() const;
  /// Bytes of the usable space (the sum of `usable_ranges()`); constant for the allocator's life.
  [[nodiscard]] std::uint64_t total_bytes() const;
  /// Live allocations.
  [[nodiscard]] std::size_t allocation_count() const;
  /// The usable space, sorted and disjoint (what `create` computed, page 0 excluded).
  [[nodiscard]] std::vector<vfio::IovaRange> usable_ranges() const;
  /// The free extents, sorted, disjoint and coalesced (for tests and diagnostics: with nothing
  /// allocated this equals `usable_ranges()`).
  [[nodiscard]] std::vector<vfio::IovaRange> free_ranges() const;
  /// The page size given to `create`.
  [[nodiscard]] std::uint64_t page_size() const;

 private:
  struct Impl;
  explicit IovaAllocator(std::unique_ptr<Impl> impl) noexcept;

  std::unique_ptr<Impl> impl_;
};

}  // namespace vfe::dma
