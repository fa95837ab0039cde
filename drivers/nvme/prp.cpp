#include "drivers/nvme/prp.hpp"

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

PrpPointers build_prps(std::span<const DataSegment> segs, std::uint32_t page_size, std::uint64_t offset,
                       std::uint64_t len, std::uint64_t* list, std::uint64_t list_iova) noexcept {
  const std::uint64_t page_mask = page_size - 1;
  Cursor c = seek(segs, offset);
  PrpPointers p{address(segs, c), 0};
  // Bytes of the first page; every later entry is a whole page (or the tail of the data).
  std::uint64_t done = page_size - (p.prp1 & page_mask);
  if (done >= len) {
    return p;
  }
  // The pages after the first go to the list; with only one of them, PRP2 names it directly and
  // the list entry written is never read by the controller.
  std::size_t n = 0;
  for (; done < len; done += page_size) {
    list[n++] = address(segs, seek(segs, offset + done));
  }
  p.prp2 = n == 1 ? list[0] : list_iova;
  return p;
}

}  // namespace vfe::nvme
