#pragma once
/// \file
/// Scatter Gather Lists (NVMe 1.4 §4.4): the other way a command names its data, for controllers
/// that support them (Identify Controller SGLS). Unlike PRPs, a piece of data may start and end
/// anywhere, so a request of many scattered segments needs no page alignment. A command's data
/// pointer is one SGL descriptor: a Data Block for one piece, or a Last Segment pointing at a list
/// of Data Block descriptors. Pure functions, noexcept, no allocation: they run on the data path.

#include <cstddef>
#include <cstdint>
#include <span>

#include "drivers/nvme/prp.hpp"

namespace vfe::nvme {

/// One SGL descriptor (figure 112, 16 bytes).
struct SglDescriptor {
  std::uint64_t address = 0;
  std::uint32_t length = 0;
  std::uint8_t reserved[3] = {};
  std::uint8_t type = 0;  ///< bits 7:4 the descriptor type, bits 3:0 its subtype (0h: an address)
};
static_assert(sizeof(SglDescriptor) == 16);

namespace sgl {
inline constexpr std::uint8_t kDataBlock = 0x00;    ///< type 0h
inline constexpr std::uint8_t kLastSegment = 0x30;  ///< type 3h: a list of descriptors, the last one
/// Submission queue entry flags, PSDT (bits 7:6) = 01b: SGLs, MPTR the address of a contiguous
/// metadata buffer.
inline constexpr std::uint8_t kPsdtSgl = 0x40;
}  // namespace sgl

/// Whether `segs` can go as SGL data blocks: no empty piece and some bytes; where the controller
/// wants dword alignment (SGLS bits 1:0 = 10b), every address and length a multiple of 4.
[[nodiscard]] bool sgl_layout_ok(std::span<const DataSegment> segs, bool dword_aligned) noexcept;

/// How many of bytes [offset, offset + len) of `segs` a command carries in at most `max_pieces`
/// Data Block descriptors (each at most 4 GiB - 1; the whole `len` when it fits).
[[nodiscard]] std::uint64_t sgl_bytes_within(std::span<const DataSegment> segs, std::uint64_t offset,
                                             std::uint64_t len, std::size_t max_pieces) noexcept;

/// Describes bytes [offset, offset + len) of `segs` (sgl_layout_ok; len > 0, and as many pieces
/// as `list` has room for: sgl_bytes_within(..., list.size()) == len). One piece is a Data Block
/// in `dptr` itself; more are Data Blocks in `list` (device address `list_iova`, 16-byte
/// aligned) and `dptr` is a Last Segment descriptor naming them.
void build_sgl(std::span<const DataSegment> segs, std::uint64_t offset, std::uint64_t len,
               std::span<SglDescriptor> list, std::uint64_t list_iova, SglDescriptor& dptr) noexcept;

}  // namespace vfe::nvme
