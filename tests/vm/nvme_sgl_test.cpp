// SGLs (NVMe 1.4 §4.4) against QEMU's controller, which takes them (SGLS 01b): data in pieces of
// any length at any address, which PRPs cannot describe, is written and read back through SGLs in
// one command each way, and a plain read by PRPs finds the blocks written where they should be.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

constexpr std::uint64_t kAt = kScratchBegin + 12 * kMiB;

// The 4096 bytes of the pattern at kAt, gathered from (and scattered to) three pieces at odd
// places of `buf`: 1000 bytes at 16, 2000 at 5000 + 3, 1096 at 9000 + 7.
struct Pieces {
  static constexpr std::array<std::pair<std::uint64_t, std::uint64_t>, 3> kAtLen{{{16, 1000}, {5003, 2000}, {9007, 1096}}};
  std::array<nvme::DataSegment, 3> segs;
  explicit Pieces(const dma::DmaBuffer& buf) {
    for (std::size_t i = 0; i < 3; ++i) {
      segs[i] = {buf.iova_at(kAtLen[i].first), kAtLen[i].second};
    }
  }
  // Copies the pattern's bytes into the pieces, or checks them; true when equal.
  static bool pattern(dma::DmaBuffer& buf, bool fill) {
    std::vector<std::uint8_t> want(4096);
    fill_pattern(want.data(), 0, kAt, want.size());
    std::uint64_t done = 0;
    for (const auto& [at, len] : kAtLen) {
      auto* p = buf.as<std::uint8_t>() + at;
      if (fill) {
        std::memcpy(p, want.data() + done, len);
      } else if (std::memcmp(p, want.data() + done, len) != 0) {
        return false;
      }
      done += len;
    }
    return true;
  }
};

TEST(NvmeSglVm, ScatteredPiecesAtOddAddressesGoInOneCommand) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  ASSERT_TRUE(c->identity().supports_sgls()) << "QEMU's controller has SGLS " << c->identity().sgls;
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  VFE_ASSERT_OK_AND_ASSIGN(auto q, c->create_io_queue(*w, {}));
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), 16384));
  const Pieces p(buf);
  ASSERT_NE(nvme::check_prp_layout(p.segs, c->page_size()), nvme::PrpLayoutError::none) << "PRPs cannot";
  Pieces::pattern(buf, true);
  const std::uint64_t before = q->stats().commands.load();
  WaitableRequest wr(w.get(), IoOpcode::write, kAt / kBlock, 8, p.segs);
  ASSERT_EQ(run_io(*q, wr), 0) << nvme::to_string(wr.status);
  std::memset(buf.data(), 0, 16384);
  WaitableRequest rd(w.get(), IoOpcode::read, kAt / kBlock, 8, p.segs);
  ASSERT_EQ(run_io(*q, rd), 0) << nvme::to_string(rd.status);
  EXPECT_TRUE(Pieces::pattern(buf, false)) << "the pieces read back hold what was written";
  EXPECT_EQ(q->stats().commands.load() - before, 2U) << "one command each way";
  // The same blocks read by PRPs into one plain buffer: the write went where it should.
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer plain, dma::DmaBuffer::allocate(c->dma_space(), 4096));
  const nvme::DataSegment whole{plain.iova(), 4096};
  WaitableRequest check(w.get(), IoOpcode::read, kAt / kBlock, 8, {&whole, 1});
  ASSERT_EQ(run_io(*q, check), 0);
  EXPECT_EQ(first_mismatch(plain.data(), 0, kAt, 4096), ~0ULL);
}

// 512 pieces of 16 bytes, 48 bytes apart: 16 blocks in more pieces than one page of descriptors
// holds (256), so each way takes two commands, cut where the first list is full (block 8).
TEST(NvmeSglVm, MorePiecesThanAListHoldsTakeTwoCommands) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  VFE_ASSERT_OK_AND_ASSIGN(auto q, c->create_io_queue(*w, {}));
  constexpr std::uint64_t kPieces = 512;
  constexpr std::uint64_t kPiece = 16;
  constexpr std::uint64_t kStride = 48;
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), kPieces * kStride));
  std::vector<nvme::DataSegment> segs(kPieces);
  std::vector<std::uint8_t> want(kPieces * kPiece);
  fill_pattern(want.data(), 0, kAt + 8192, want.size());
  auto* bytes = buf.as<std::uint8_t>();
  for (std::uint64_t i = 0; i < kPieces; ++i) {
    segs[i] = {buf.iova_at(i * kStride + 4), kPiece};
    std::memcpy(bytes + i * kStride + 4, want.data() + i * kPiece, kPiece);
  }
  const std::uint64_t lba = (kAt + 8192) / kBlock;
  const std::uint64_t before = q->stats().commands.load();
  WaitableRequest wr(w.get(), IoOpcode::write, lba, 16, segs);
  ASSERT_EQ(run_io(*q, wr), 0) << nvme::to_string(wr.status);
  std::memset(bytes, 0, kPieces * kStride);
  WaitableRequest rd(w.get(), IoOpcode::read, lba, 16, segs);
  ASSERT_EQ(run_io(*q, rd), 0) << nvme::to_string(rd.status);
  EXPECT_EQ(q->stats().commands.load() - before, 4U) << "two commands each way";
  for (std::uint64_t i = 0; i < kPieces; ++i) {
    ASSERT_EQ(std::memcmp(bytes + i * kStride + 4, want.data() + i * kPiece, kPiece), 0) << "piece " << i;
    ASSERT_EQ(bytes[i * kStride], 0) << "nothing read into the gap before piece " << i;
  }
}

}  // namespace
}  // namespace vfe::vmtest
