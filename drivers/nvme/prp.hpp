#pragma once
/// \file
/// Physical Region Page entries (NVMe 1.4 §4.3): how a command tells the controller where its data
/// lies. PRP1 is the first page (it may start at any dword-aligned offset); PRP2 is the second
/// page, or, when the data spans more than two pages, the address of a list of the remaining
/// page addresses. Pure functions, noexcept, no allocation: they run on the data path.

#include <cstddef>
#include <cstdint>
#include <span>

#include "dma/iova.hpp"

namespace vfe::nvme {

/// A piece of a request's data: `length` bytes at device address `iova` (a slice of a
/// `DmaBuffer`). A request's data is a list of these, in order.
struct DataSegment {
  dma::Iova iova{};
  std::uint64_t length = 0;
};

/// Why a segment list cannot be described by PRPs (0: it can).
enum class PrpLayoutError {
  none = 0,
  empty,               ///< no bytes at all
  misaligned_start,    ///< the first segment does not start on a dword boundary
  gap_inside,          ///< a segment other than the first does not start on a page boundary,
                       ///< one other than the last does not end on one, or one is empty
};

/// Checks the §4.3 rules for `segs` with memory page size `page_size` (a power of two >= 4096).
[[nodiscard]] PrpLayoutError check_prp_layout(std::span<const DataSegment> segs,
                                              std::uint32_t page_size) noexcept;

/// The device address of byte `offset` of the data (offset < total length).
[[nodiscard]] std::uint64_t data_address(std::span<const DataSegment> segs, std::uint64_t offset) noexcept;

/// How many memory pages bytes [offset, offset + len) of a valid segment list touch (len > 0).
[[nodiscard]] std::size_t prp_page_count(std::span<const DataSegment> segs, std::uint32_t page_size,
                                         std::uint64_t offset, std::uint64_t len) noexcept;

/// PRP1 and PRP2 of one command.
struct PrpPointers {
  std::uint64_t prp1 = 0;
  std::uint64_t prp2 = 0;
};

/// The PRP list pages a command touching `pages` memory pages needs: its `pages - 1` entries
/// after PRP1, one page holding page_size / 8 of them, and when there are more, each full page's
/// last entry pointing to the next page instead (§4.3). At least 1 (see build_prps).
[[nodiscard]] std::size_t prp_list_pages(std::size_t pages, std::uint32_t page_size) noexcept;

/// The 8-byte list slots build_prps writes for `pages` pages: the entries plus the pointers that
/// chain the list pages (at least 1).
[[nodiscard]] std::size_t prp_list_slots(std::size_t pages, std::uint32_t page_size) noexcept;

/// Describes bytes [offset, offset + len) of `segs` (which passed check_prp_layout; len > 0).
/// Up to two pages need no list. With more, the pages after the first are written to `list`
/// (whose device address is `list_iova`, page aligned, and which holds
/// prp_list_pages(prp_page_count(...)) contiguous pages), chained from page to page when they
/// do not fit in one, and PRP2 points at it. The list is written even for two pages, where PRP2
/// names the second page itself. Linear in the pages described.
[[nodiscard]] PrpPointers build_prps(std::span<const DataSegment> segs, std::uint32_t page_size,
                                     std::uint64_t offset, std::uint64_t len, std::uint64_t* list,
                                     std::uint64_t list_iova) noexcept;

}  // namespace vfe::nvme
