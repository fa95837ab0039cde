#include "drivers/nvme/prp.hpp"

#include <algorithm>

namespace vfe::nvme {
namespace {

// The device address of byte `offset` of the data, and how many bytes follow it in the same
// segment. The caller keeps `offset` inside the data.
struct Cursor {
  std::size_t seg = 0;
  std::uint64_t in_seg = 0;
};

Cursor seek(std::span<const DataSegment> segs, std::uint64_t offset) noexcept {
  Cursor c;
  while (c.seg < segs.size() && offset >= segs[c.seg].length) {
    offset -= segs[c.seg].length;
    ++c.seg;
  }
  c.in_seg = offset;
  return c;
}

std::uint64_t address(std::span<const DataSegment> segs, const Cursor& c) noexcept {
  return dma::to_u64(segs[c.seg].iova) + c.in_seg;
}

// Moves `c` on by `bytes` (it may end past the last segment: then it is not read again).
void advance(std::span<const DataSegment> segs, Cursor& c, std::uint64_t bytes) noexcept {
  c.in_seg += bytes;
  while (c.seg < segs.size() && c.in_seg >= segs[c.seg].length) {
    c.in_seg -= segs[c.seg].length;
    ++c.seg;
  }
}

}  // namespace

std::uint64_t data_address(std::span<const DataSegment> segs, std::uint64_t offset) noexcept {
  return address(segs, seek(segs, offset));
}

PrpLayoutError check_prp_layout(std::span<const DataSegment> segs, std::uint32_t page_size) noexcept {
  const std::uint64_t page_mask = page_size - 1;
  std::uint64_t total = 0;
  bool empty_piece = false;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const std::uint64_t start = dma::to_u64(segs[i].iova);
    if (segs[i].length == 0) {
      empty_piece = true;  // among real data, an empty piece says the caller erred
      continue;
    }
    if (i == 0 && (start & 3) != 0) {
      return PrpLayoutError::misaligned_start;
    }
    if (i != 0 && (start & page_mask) != 0) {
      return PrpLayoutError::gap_inside;
    }
    if (i + 1 != segs.size() && ((start + segs[i].length) & page_mask) != 0) {
      return PrpLayoutError::gap_inside;
    }
    total += segs[i].length;
  }
  if (total == 0) {
    return PrpLayoutError::empty;
  }
  return empty_piece ? PrpLayoutError::gap_inside : PrpLayoutError::none;
}

std::size_t prp_page_count(std::span<const DataSegment> segs, std::uint32_t page_size,
                           std::uint64_t offset, std::uint64_t len) noexcept {
  // Every boundary between segments is a page boundary, so the data behaves as one run of pages
  // that starts at the first byte's offset within its page.
  const std::uint64_t first = data_address(segs, offset) & (page_size - 1);
  return static_cast<std::size_t>((first + len + page_size - 1) / page_size);
}

std::size_t prp_list_pages(std::size_t pages, std::uint32_t page_size) noexcept {
  const std::size_t per_page = page_size / sizeof(std::uint64_t);
  const std::size_t entries = pages > 1 ? pages - 1 : 0;
  if (entries <= per_page) {
    return 1;
  }
  // Every page but the last gives its last slot to the pointer to the next one.
  return (entries - 1 + per_page - 2) / (per_page - 1);
}

std::size_t prp_list_slots(std::size_t pages, std::uint32_t page_size) noexcept {
  const std::size_t entries = pages > 1 ? pages - 1 : 0;
  return std::max<std::size_t>(1, entries + prp_list_pages(pages, page_size) - 1);
}

PrpPointers build_prps(std::span<const DataSegment> segs, std::uint32_t page_size, std::uint64_t offset,
                       std::uint64_t len, std::uint64_t* list, std::uint64_t list_iova) noexcept {
  const std::uint64_t page_mask = page_size - 1;
  const std::size_t per_page = page_size / sizeof(std::uint64_t);
  Cursor c = seek(segs, offset);
  PrpPointers p{address(segs, c), 0};
  // Bytes of the first page; every later entry is a whole page (or the tail of the data).
  const std::uint64_t first = page_size - (p.prp1 & page_mask);
  if (first >= len) {
    return p;
  }
  // The pages after the first go to the list; with only one of them, PRP2 names it directly and
  // the list entry written is never read by the controller. Segment boundaries are page
  // boundaries after the first page, so the cursor moves a page at a time.
  const std::uint64_t entries = (len - first + page_size - 1) / page_size;
  advance(segs, c, first);
  std::size_t at = 0;  // the next list slot, across the list's pages
  for (std::uint64_t n = 0; n < entries; ++n) {
    if (at % per_page == per_page - 1 && entries - n > 1) {
      list[at] = list_iova + (at + 1) * sizeof(std::uint64_t);  // the next list page
      ++at;
    }
    list[at++] = address(segs, c);
    advance(segs, c, page_size);
  }
  p.prp2 = entries == 1 ? list[0] : list_iova;
  return p;
}

}  // namespace vfe::nvme
