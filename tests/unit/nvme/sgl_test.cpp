// SGLs (NVMe 1.4 §4.4) built from segment lists that PRPs cannot describe: one piece inline in the
// data pointer, several in a Last Segment list, a command cut where the list is full, and the
// layouts a controller's SGLS refuses.
#include "drivers/nvme/sgl.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

namespace vfe::nvme {
namespace {

DataSegment seg(std::uint64_t iova, std::uint64_t length) { return DataSegment{dma::Iova{iova}, length}; }

constexpr std::uint64_t kListIova = 0xabc000;

TEST(SglDescriptor, IsTheSpecsSixteenBytes) {
  const SglDescriptor d{0x1122334455667788ULL, 0x99aabbcc, {}, sgl::kLastSegment};
  std::array<std::uint8_t, 16> raw{};
  std::memcpy(raw.data(), &d, sizeof(d));
  EXPECT_EQ(raw[0], 0x88) << "address, little endian, bytes 7:0";
  EXPECT_EQ(raw[8], 0xcc) << "length, bytes 11:8";
  EXPECT_EQ(raw[15], 0x30) << "type in byte 15, bits 7:4";
}

TEST(SglLayout, AnyPiecesButEmptyOnesAndDwordsWhereAsked) {
  const std::array odd{seg(0x1001, 1000), seg(0x5003, 77)};
  EXPECT_TRUE(sgl_layout_ok(odd, false));
  EXPECT_FALSE(sgl_layout_ok(odd, true)) << "SGLS 10b: dword aligned only";
  const std::array dwords{seg(0x1004, 1000), seg(0x5008, 76)};
  EXPECT_TRUE(sgl_layout_ok(dwords, true));
  const std::array with_empty{seg(0x1000, 512), seg(0x3000, 0)};
  EXPECT_FALSE(sgl_layout_ok(with_empty, false));
  EXPECT_FALSE(sgl_layout_ok({}, false));
}

TEST(BuildSgl, OnePieceIsADataBlockInTheCommand) {
  const std::array s{seg(0x10000, 4096), seg(0x20000, 4096)};
  std::vector<SglDescriptor> list(4);
  SglDescriptor d;
  build_sgl(s, 100, 1000, list, kListIova, d);  // inside the first segment
  EXPECT_EQ(d.type, sgl::kDataBlock);
  EXPECT_EQ(d.address, 0x10064U);
  EXPECT_EQ(d.length, 1000U);
}

TEST(BuildSgl, ScatteredPiecesGoInALastSegmentList) {
  // 1000 + 2000 + 1096 bytes at odd addresses: 8 blocks of 512 that no PRP can describe.
  const std::array s{seg(0x10010, 1000), seg(0x20333, 2000), seg(0x30007, 1096)};
  EXPECT_EQ(check_prp_layout(s, 4096), PrpLayoutError::gap_inside);
  std::vector<SglDescriptor> list(256);
  SglDescriptor d;
  build_sgl(s, 0, 4096, list, kListIova, d);
  EXPECT_EQ(d.type, sgl::kLastSegment);
  EXPECT_EQ(d.address, kListIova);
  EXPECT_EQ(d.length, 3 * sizeof(SglDescriptor));
  EXPECT_EQ(list[0].address, 0x10010U);
  EXPECT_EQ(list[0].length, 1000U);
  EXPECT_EQ(list[1].address, 0x20333U);
  EXPECT_EQ(list[1].length, 2000U);
  EXPECT_EQ(list[2].address, 0x30007U);
  EXPECT_EQ(list[2].length, 1096U);
  for (const SglDescriptor& e : std::span(list).first(3)) {
    EXPECT_EQ(e.type, sgl::kDataBlock);
  }
  // From byte 1536 on (block 3 of 8): the rest of the second piece and the third.
  build_sgl(s, 1536, 2560, list, kListIova, d);
  EXPECT_EQ(d.length, 2 * sizeof(SglDescriptor));
  EXPECT_EQ(list[0].address, 0x20333U + 536);
  EXPECT_EQ(list[0].length, 2000U - 536);
  EXPECT_EQ(list[1].length, 1096U);
}

TEST(SglBytesWithin, ACommandStopsWhereItsListIsFull) {
  std::vector<DataSegment> s;
  for (std::uint64_t i = 0; i < 300; ++i) {
    s.push_back(seg(0x100000 + i * 0x1000 + 8, 512));  // 300 scattered blocks
  }
  EXPECT_EQ(sgl_bytes_within(s, 0, 300 * 512, 256), 256U * 512) << "256 descriptors a page";
  EXPECT_EQ(sgl_bytes_within(s, 256 * 512, 44 * 512, 256), 44U * 512);
  EXPECT_EQ(sgl_bytes_within(s, 100, 1000, 3), 1000U) << "the end of one piece, a whole one, part of a third";
  EXPECT_EQ(sgl_bytes_within(s, 100, 1000, 2), 924U) << "412 + 512";
  EXPECT_EQ(sgl_bytes_within(s, 100, 1000, 1), 412U);
}

}  // namespace
}  // namespace vfe::nvme
