#include "dma/iova_allocator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "base/units.hpp"

namespace vfe::dma {
namespace {

constexpr std::uint64_t kMax = ~std::uint64_t{0};

// Sorts and merges ranges that overlap or touch, so that the space is a set of disjoint runs
// before it is clipped to pages (two ranges meeting mid-page still give that page).
std::vector<vfio::IovaRange> merge_ranges(std::span<const vfio::IovaRange> ranges) {
  std::vector<vfio::IovaRange> sorted(ranges.begin(), ranges.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const vfio::IovaRange& a, const vfio::IovaRange& b) { return a.start < b.start; });
  std::vector<vfio::IovaRange> merged;
  for (const vfio::IovaRange& r : sorted) {
    // `last + 1` would wrap at the top of the space; nothing can follow such a range anyway.
    if (!merged.empty() && (merged.back().last == kMax || r.start <= merged.back().last + 1)) {
      merged.back().last = std::max(merged.back().last, r.last);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

// The inclusive last byte of the last whole page at or below `last`, if any. The top of the
// 64-bit space ends a page already (2^64 is a multiple of every page size).
std::optional<std::uint64_t> last_whole_page_end(std::uint64_t last, std::uint64_t page) {
  if (last == kMax) {
    return kMax;
  }
  const std::uint64_t end = align_down(last + 1, page);
  if (end == 0) {
    return std::nullopt;
  }
  return end - 1;
}

// The kernel's ranges, clipped to the DMA mask (`limit` = highest addressable IOVA) and to whole
// pages, without the reserved page at 0 (see the class comment for why).
std::vector<vfio::IovaRange> usable_space(std::span<const vfio::IovaRange> ranges,
                                          std::uint64_t limit, std::uint64_t page) {
  std::vector<vfio::IovaRange> usable;
  for (const vfio::IovaRange& r : merge_ranges(ranges)) {
    if (r.start > limit) {
      break;  // sorted: every later range is above the mask too
    }
    const std::uint64_t lowest = std::max(r.start, page);
    const std::optional<std::uint64_t> last = last_whole_page_end(std::min(r.last, limit), page);
    if (align_up_overflows(lowest, page) || !last) {
      continue;
    }
    const std::uint64_t start = align_up(lowest, page);
    if (start <= *last) {
      usable.push_back({start, *last});
    }
  }
  return usable;
}

std::string format_ranges(std::span<const vfio::IovaRange> ranges) {
  std::string out;
  for (const vfio::IovaRange& r : ranges) {
    out += fmt::format("{}[{:#x}, {:#x}]", out.empty() ? "" : " ", r.start, r.last);
  }
  return out.empty() ? "(none)" : out;
}

// Where a run of `size` bytes aligned to `align` starts inside the free extent [start, last].
std::optional<std::uint64_t> fit(std::uint64_t start, std::uint64_t last, std::uint64_t size,
                                 std::uint64_t align) {
  if (align_up_overflows(start, align)) {
    return std::nullopt;
  }
  const std::uint64_t at = align_up(start, align);
  if (at > last || last - at < size - 1) {
    return std::nullopt;
  }
  return at;
}

}  // namespace

struct IovaAllocator::Impl {
  // Serialises every member function: allocations come from setup paths on several threads.
  mutable std::mutex mutex;
  std::uint64_t page_size = kMinPageSize;
  std::vector<vfio::IovaRange> usable;
  std::uint64_t total = 0;
  std::uint64_t free_total = 0;
  // Free extents, start -> inclusive last (inclusive so a run may end at 2^64 - 1). Disjoint and
  // never touching: `release` coalesces, so their number stays <= allocations + usable ranges.
  std::map<std::uint64_t, std::uint64_t> free_extents;
  // Live allocations, start -> size.
  std::map<std::uint64_t, std::uint64_t> allocations;

  void carve(std::map<std::uint64_t, std::uint64_t>::iterator extent, std::uint64_t at,
             std::uint64_t size);
  void release(std::uint64_t start, std::uint64_t size);
  [[nodiscard]] Error no_room(std::uint64_t size, std::uint64_t align) const;
  [[nodiscard]] Error bad_free(std::uint64_t start, std::uint64_t size) const;
};

// Takes [at, at + size) out of the free extent `extent` and records the allocation.
void IovaAllocator::Impl::carve(std::map<std::uint64_t, std::uint64_t>::iterator extent,
                                std::uint64_t at, std::uint64_t size) {
  allocations.emplace(at, size);
  const std::uint64_t extent_start = extent->first;
  const std::uint64_t extent_last = extent->second;
  const std::uint64_t alloc_last = at + size - 1;
  if (alloc_last < extent_last) {
    free_extents.emplace_hint(std::next(extent), alloc_last + 1, extent_last);
  }
  if (at > extent_start) {
    extent->second = at - 1;  // the part below stays where it is
  } else {
    free_extents.erase(extent);
  }
  free_total -= size;
}

// Returns [start, start + size) to the free extents, merged with a free neighbour on either side.
void IovaAllocator::Impl::release(std::uint64_t start, std::uint64_t size) {
  const std::uint64_t last = start + size - 1;
  auto next = free_extents.lower_bound(start);
  auto merged = free_extents.end();
  if (next != free_extents.begin()) {
    auto prev = std::prev(next);
    if (prev->second + 1 == start) {  // prev->second < start: no wrap
      prev->second = last;
      merged = prev;
    }
  }
  const bool touches_next = next != free_extents.end() && last != kMax && last + 1 == next->first;
  if (touches_next && merged != free_extents.end()) {
    merged->second = next->second;
    free_extents.erase(next);
  } else if (touches_next) {
    // Re-key the next extent in place: no allocation, so a free never fails half-way.
    auto node = free_extents.extract(next);
    node.key() = start;
    free_extents.insert(std::move(node));
  } else if (merged == free_extents.end()) {
    free_extents.emplace_hint(next, start, last);
  }
  free_total += size;
}

Error IovaAllocator::Impl::no_room(std::uint64_t size, std::uint64_t align) const {
  std::uint64_t largest = 0;
  for (const auto& [start, last] : free_extents) {
    if (!align_up_overflows(start, align) && align_up(start, align) <= last) {
      largest = std::max(largest, last - align_up(start, align) + 1);
    }
  }
  return Error::from_errno(
      ENOSPC, "IovaAllocator::allocate",
      fmt::format("no free IOVA run of {} bytes aligned to {:#x}: the largest free run at that "
                  "alignment is {} bytes; {} of {} bytes are free in {} extents, {} allocations "
                  "live; free unused DMA buffers, or ask for less or a smaller alignment",
                  size, align, largest, free_total, total, free_extents.size(),
                  allocations.size()));
}

Error IovaAllocator::Impl::bad_free(std::uint64_t start, std::uint64_t size) const {
  constexpr const char* kOp = "IovaAllocator::free";
  auto after = allocations.upper_bound(start);
  if (after != allocations.begin()) {
    const auto& [alloc_start, alloc_size] = *std::prev(after);
    if (alloc_start == start) {
      return Error::invalid(kOp, fmt::format("IOVA {:#x} was allocated with {} bytes, not {} "
                                             "(partial free?); free it with its allocated size",
                                             start, alloc_size, size));
    }
    if (start - alloc_start < alloc_size) {
      return Error::invalid(kOp, fmt::format("IOVA {:#x} of {} bytes lies inside the allocation "
                                             "at {:#x} of {} bytes (partial free?); free that "
                                             "allocation with its own start and size",
                                             start, size, alloc_start, alloc_size));
    }
  }
  auto extent = free_extents.upper_bound(start);
  if (extent != free_extents.begin() && std::prev(extent)->second >= start) {
    return Error::invalid(kOp, fmt::format("IOVA {:#x} of {} bytes was never allocated or is "
                                           "free already (double free?)",
                                           start, size));
  }
  return Error::invalid(kOp, fmt::format("IOVA {:#x} of {} bytes is outside this allocator's "
                                         "space {} (an IOVA from another allocator?)",
                                         start, size, format_ranges(usable)));
}

Result<IovaAllocator> IovaAllocator::create(std::span<const vfio::IovaRange> ranges,
                                            unsigned dma_mask_bits, std::uint64_t page_size) {
  constexpr const char* kOp = "IovaAllocator::create";
  if (dma_mask_bits < 12 || dma_mask_bits > 64) {
    return Error::invalid(kOp, fmt::format("a DMA mask of {} bits is not supported; pass the "
                                           "device's DMA address width, 12 to 64 bits",
                                           dma_mask_bits));
  }
  if (!is_pow2(page_size) || page_size < kMinPageSize) {
    return Error::invalid(kOp, fmt::format("page size {} is not a power of two of at least {} "
                                           "bytes; pass the IOMMU page size (4096 on x86)",
                                           page_size, kMinPageSize));
  }
  for (const vfio::IovaRange& r : ranges) {
    if (r.start > r.last) {
      return Error::invalid(kOp, fmt::format("IOVA range [{:#x}, {:#x}] starts after it ends; "
                                             "ranges are inclusive [start, last]",
                                             r.start, r.last));
    }
  }
  const std::uint64_t limit = dma_mask_bits == 64 ? kMax : (std::uint64_t{1} << dma_mask_bits) - 1;
  auto impl = std::make_unique<Impl>();
  impl->page_size = page_size;
  impl->usable = usable_space(ranges, limit, page_size);
  if (impl->usable.empty()) {
    return Error::invalid(kOp, fmt::format("no whole {}-byte page is usable for DMA: IOVA ranges "
                                           "{} within the {}-bit DMA mask [0, {:#x}], page 0 "
                                           "reserved; check the ranges the IOMMU reports and "
                                           "the device's DMA mask",
                                           page_size, format_ranges(ranges), dma_mask_bits,
                                           limit));
  }
  for (const vfio::IovaRange& r : impl->usable) {
    impl->free_extents.emplace_hint(impl->free_extents.end(), r.start, r.last);
    impl->total += r.size();  // disjoint and page 0 excluded: the sum fits in 64 bits
  }
  impl->free_total = impl->total;
  return IovaAllocator(std::move(impl));
}

IovaAllocator::IovaAllocator(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
IovaAllocator::IovaAllocator(IovaAllocator&& other) noexcept = default;
IovaAllocator& IovaAllocator::operator=(IovaAllocator&& other) noexcept = default;
IovaAllocator::~IovaAllocator() = default;

Result<Iova> IovaAllocator::allocate(std::uint64_t size, std::uint64_t align) {
  constexpr const char* kOp = "IovaAllocator::allocate";
  assert(impl_ && "use of a moved-from IovaAllocator");
  const std::lock_guard lock(impl_->mutex);
  const std::uint64_t page = impl_->page_size;
  if (size == 0 || !is_aligned(size, page)) {
    return Error::invalid(kOp, fmt::format("size {} is not a non-zero multiple of the page size "
                                           "{}; round the buffer up to whole pages",
                                           size, page));
  }
  if (!is_pow2(align) || align < page) {
    return Error::invalid(kOp, fmt::format("alignment {:#x} is not a power of two of at least "
                                           "the page size {:#x}; pass the page size, or the "
                                           "hugepage size for a hugepage buffer",
                                           align, page));
  }
  for (auto it = impl_->free_extents.begin(); it != impl_->free_extents.end(); ++it) {
    if (const std::optional<std::uint64_t> at = fit(it->first, it->second, size, align)) {
      impl_->carve(it, *at, size);
      return Iova{*at};
    }
  }
  return impl_->no_room(size, align);
}

Result<void> IovaAllocator::free(Iova iova, std::uint64_t size) {
  assert(impl_ && "use of a moved-from IovaAllocator");
  const std::lock_guard lock(impl_->mutex);
  const auto it = impl_->allocations.find(to_u64(iova));
  if (it == impl_->allocations.end() || it->second != size) {
    return impl_->bad_free(to_u64(iova), size);
  }
  impl_->allocations.erase(it);
  impl_->release(to_u64(iova), size);
  return ok();
}

std::uint64_t IovaAllocator::free_bytes() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->free_total;
}

std::uint64_t IovaAllocator::total_bytes() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->total;
}

std::size_t IovaAllocator::allocation_count() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->allocations.size();
}

std::vector<vfio::IovaRange> IovaAllocator::usable_ranges() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->usable;
}

std::vector<vfio::IovaRange> IovaAllocator::free_ranges() const {
  const std::lock_guard lock(impl_->mutex);
  std::vector<vfio::IovaRange> out;
  out.reserve(impl_->free_extents.size());
  for (const auto& [start, last] : impl_->free_extents) {
    out.push_back({start, last});
  }
  return out;
}

std::uint64_t IovaAllocator::page_size() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->page_size;
}

}  // namespace vfe::dma
