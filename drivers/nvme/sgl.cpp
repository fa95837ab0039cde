#include "drivers/nvme/sgl.hpp"

#include <algorithm>

namespace vfe::nvme {
namespace {

// A Data Block's length field is 32 bits.
constexpr std::uint64_t kMaxPiece = 0xffffffffULL;

// Calls `piece(address, bytes)` for each Data Block that bytes [offset, offset + len) of `segs`
// make, in order, while it returns true; returns the bytes of the pieces it was called for.
template <class Piece>
std::uint64_t walk(std::span<const DataSegment> segs, std::uint64_t offset, std::uint64_t len, Piece piece) noexcept {
  std::size_t i = 0;
  while (i < segs.size() && offset >= segs[i].length) {
    offset -= segs[i].length;
    ++i;
  }
  std::uint64_t done = 0;
  for (; i < segs.size() && done < len; ++i, offset = 0) {
    std::uint64_t at = dma::to_u64(segs[i].iova) + offset;
    std::uint64_t left = std::min(segs[i].length - offset, len - done);
    while (left != 0) {
      const std::uint64_t bytes = std::min(left, kMaxPiece);
      if (!piece(at, bytes)) {
        return done;
      }
      done += bytes;
      at += bytes;
      left -= bytes;
    }
  }
  return done;
}

}  // namespace

bool sgl_layout_ok(std::span<const DataSegment> segs, bool dword_aligned) noexcept {
  std::uint64_t total = 0;
  for (const DataSegment& s : segs) {
    if (s.length == 0 || (dword_aligned && ((dma::to_u64(s.iova) | s.length) & 3) != 0)) {
      return false;
    }
    total += s.length;
  }
  return total != 0;
}

std::uint64_t sgl_bytes_within(std::span<const DataSegment> segs, std::uint64_t offset, std::uint64_t len,
                               std::size_t max_pieces) noexcept {
  std::size_t pieces = 0;
  return walk(segs, offset, len, [&](std::uint64_t, std::uint64_t) noexcept { return pieces++ < max_pieces; });
}

void build_sgl(std::span<const DataSegment> segs, std::uint64_t offset, std::uint64_t len,
               std::span<SglDescriptor> list, std::uint64_t list_iova, SglDescriptor& dptr) noexcept {
  std::size_t n = 0;
  walk(segs, offset, len, [&](std::uint64_t address, std::uint64_t bytes) noexcept {
    list[n++] = SglDescriptor{address, static_cast<std::uint32_t>(bytes), {}, sgl::kDataBlock};
    return n < list.size();
  });
  if (n == 1) {
    dptr = list[0];  // one piece: the data pointer is its Data Block
    return;
  }
  dptr = SglDescriptor{list_iova, static_cast<std::uint32_t>(n * sizeof(SglDescriptor)), {}, sgl::kLastSegment};
}

}  // namespace vfe::nvme
