// PRP entries (NVMe 1.4 §4.3): layout checks, page counts, and PRP1/PRP2/list contents for one
// page, two pages, many pages, an unaligned start, and requests split across several segments
// and into chunks.
#include "drivers/nvme/prp.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

namespace vfe::nvme {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr std::uint32_t kPage = 4096;
constexpr std::uint64_t kListIova = 0xfee000;  // where the PRP list itself lives (page aligned)
constexpr std::uint64_t kPoison = 0xdeadbeefdeadbeef;

DataSegment seg(std::uint64_t iova, std::uint64_t length) {
  return DataSegment{dma::Iova{iova}, length};
}

// Runs build_prps into a poisoned list and keeps the slots it wrote (prp_list_slots(): the
// prp_page_count() - 1 entries and the pointers chaining list pages), checking that nothing past
// them was touched.
struct Built {
  PrpPointers p;
  std::vector<std::uint64_t> list;
};

Built build(std::span<const DataSegment> segs, std::uint64_t offset, std::uint64_t len,
            std::uint32_t page = kPage) {
  const std::size_t pages = prp_page_count(segs, page, offset, len);
  std::vector<std::uint64_t> list(prp_list_pages(pages, page) * page / 8 + 1, kPoison);
  Built b{build_prps(segs, page, offset, len, list.data(), kListIova), {}};
  const std::size_t entries = pages > 1 ? prp_list_slots(pages, page) : 0;
  for (std::size_t i = entries; i < list.size(); ++i) {
    EXPECT_EQ(list[i], kPoison) << "entry " << i << " written past the " << entries << " expected";
  }
  b.list.assign(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(entries));
  return b;
}

TEST(PrpLayout, AcceptsValidLayouts) {
  const std::array one{seg(0x10000, 4096)};
  EXPECT_EQ(check_prp_layout(one, kPage), PrpLayoutError::none);
  const std::array tail{seg(0x10004, 100)};  // dword aligned, ends anywhere
  EXPECT_EQ(check_prp_layout(tail, kPage), PrpLayoutError::none);
  const std::array three{seg(0x10800, 0x800), seg(0x40000, 0x2000), seg(0x90000, 0x123)};
  EXPECT_EQ(check_prp_layout(three, kPage), PrpLayoutError::none);
}

TEST(PrpLayout, EmptyRequests) {
  EXPECT_EQ(check_prp_layout({}, kPage), PrpLayoutError::empty);
  const std::array zero{seg(0x10000, 0)};
  EXPECT_EQ(check_prp_layout(zero, kPage), PrpLayoutError::empty);
  const std::array zeros{seg(0x10000, 0), seg(0x20003, 0)};
  EXPECT_EQ(check_prp_layout(zeros, kPage), PrpLayoutError::empty);
}

TEST(PrpLayout, FirstSegmentMustBeDwordAligned) {
  for (const std::uint64_t start : {0x10001ULL, 0x10002ULL, 0x10003ULL, 0x10ffeULL}) {
    const std::array s{seg(start, 512)};
    EXPECT_EQ(check_prp_layout(s, kPage), PrpLayoutError::misaligned_start) << std::hex << start;
  }
  const std::array two{seg(0x10ffe, 2), seg(0x20000, 4096)};
  EXPECT_EQ(check_prp_layout(two, kPage), PrpLayoutError::misaligned_start);
}

TEST(PrpLayout, LaterSegmentsMustStartOnAPage) {
  const std::array s{seg(0x10000, 4096), seg(0x20200, 4096)};
  EXPECT_EQ(check_prp_layout(s, kPage), PrpLayoutError::gap_inside);
  const std::array dword{seg(0x10000, 4096), seg(0x20004, 4096)};  // dword alignment is not enough
  EXPECT_EQ(check_prp_layout(dword, kPage), PrpLayoutError::gap_inside);
}

TEST(PrpLayout, EarlierSegmentsMustEndOnAPage) {
  const std::array first{seg(0x10000, 4000), seg(0x20000, 4096)};
  EXPECT_EQ(check_prp_layout(first, kPage), PrpLayoutError::gap_inside);
  const std::array middle{seg(0x10000, 4096), seg(0x20000, 4100), seg(0x30000, 4096)};
  EXPECT_EQ(check_prp_layout(middle, kPage), PrpLayoutError::gap_inside);
}

TEST(PrpLayout, EmptySegmentAmongDataIsAnError) {
  const std::array middle{seg(0x10000, 4096), seg(0x20000, 0), seg(0x30000, 4096)};
  EXPECT_EQ(check_prp_layout(middle, kPage), PrpLayoutError::gap_inside);
  const std::array last{seg(0x10000, 4096), seg(0x20000, 0)};
  EXPECT_EQ(check_prp_layout(last, kPage), PrpLayoutError::gap_inside);
}

TEST(PrpLayout, UsesTheGivenPageSize) {
  const std::array s{seg(0x10000, 0x1000), seg(0x21000, 0x2000)};
  EXPECT_EQ(check_prp_layout(s, 4096), PrpLayoutError::none);
  EXPECT_EQ(check_prp_layout(s, 8192), PrpLayoutError::gap_inside);
}

TEST(PrpPageCount, CountsTouchedPages) {
  const std::array s{seg(0x40000, 16 * 4096)};
  EXPECT_EQ(prp_page_count(s, kPage, 0, 1), 1U);
  EXPECT_EQ(prp_page_count(s, kPage, 0, 4096), 1U);
  EXPECT_EQ(prp_page_count(s, kPage, 0, 4097), 2U);
  EXPECT_EQ(prp_page_count(s, kPage, 4092, 8), 2U);  // straddles a boundary
  EXPECT_EQ(prp_page_count(s, kPage, 4, 8192), 3U);
  EXPECT_EQ(prp_page_count(s, kPage, 0, 16 * 4096), 16U);
  EXPECT_EQ(prp_page_count(s, 8192, 0, 16 * 4096), 8U);
  const std::array odd{seg(0x50ffc, 8)};
  EXPECT_EQ(prp_page_count(odd, kPage, 0, 8), 2U);
  EXPECT_EQ(prp_page_count(odd, kPage, 4, 4), 1U);
}

TEST(PrpPageCount, AcrossSegments) {
  const std::array s{seg(0x100800, 0x800), seg(0x200000, 0x3000), seg(0x300000, 0x1200)};
  EXPECT_EQ(prp_page_count(s, kPage, 0, 0x4a00), 6U);
  EXPECT_EQ(prp_page_count(s, kPage, 0x800, 0x1000), 1U);   // exactly segment 2's first page
  EXPECT_EQ(prp_page_count(s, kPage, 0x3800, 0x1200), 2U);  // all of segment 3
  EXPECT_EQ(prp_page_count(s, kPage, 0x37ff, 2), 2U);       // last byte of 2, first of 3
}

TEST(BuildPrps, OnePage) {
  const std::array s{seg(0x10000, 4096)};
  const Built b = build(s, 0, 4096);
  EXPECT_EQ(b.p.prp1, 0x10000U);
  EXPECT_EQ(b.p.prp2, 0U);
  EXPECT_TRUE(b.list.empty());
}

TEST(BuildPrps, LessThanAPageInsideOne) {
  const std::array s{seg(0x10100, 512)};
  const Built b = build(s, 0, 512);
  EXPECT_EQ(b.p.prp1, 0x10100U);
  EXPECT_EQ(b.p.prp2, 0U);
}

TEST(BuildPrps, TwoPagesNameTheSecondPageInPrp2) {
  const std::array s{seg(0x20000, 8192)};
  const Built b = build(s, 0, 8192);
  EXPECT_EQ(b.p.prp1, 0x20000U);
  EXPECT_EQ(b.p.prp2, 0x21000U);
  EXPECT_THAT(b.list, ElementsAre(0x21000U));  // written, but the controller never reads it
}

TEST(BuildPrps, ManyPagesUseTheList) {
  const std::array s{seg(0x40000, 16 * 4096)};
  const Built b = build(s, 0, 16 * 4096);
  EXPECT_EQ(b.p.prp1, 0x40000U);
  EXPECT_EQ(b.p.prp2, kListIova);
  std::vector<std::uint64_t> expect;
  for (std::uint64_t i = 1; i < 16; ++i) {
    expect.push_back(0x40000 + i * 4096);
  }
  EXPECT_THAT(b.list, ElementsAreArray(expect));
}

TEST(BuildPrps, FullListPage) {
  // 513 pages: PRP1 plus exactly one page (512 entries) of list.
  const std::uint64_t len = 513ULL * 4096;
  const std::array s{seg(0x1000000, len)};
  const Built b = build(s, 0, len);
  EXPECT_EQ(b.p.prp2, kListIova);
  ASSERT_EQ(b.list.size(), 512U);
  EXPECT_EQ(b.list.front(), 0x1001000U);
  EXPECT_EQ(b.list.back(), 0x1000000U + 512 * 4096);
}

TEST(PrpListPages, OnePageUntilItOverflowsThenChained) {
  EXPECT_EQ(prp_list_pages(1, kPage), 1U);
  EXPECT_EQ(prp_list_slots(1, kPage), 1U);
  EXPECT_EQ(prp_list_pages(513, kPage), 1U) << "512 entries fill one page";
  EXPECT_EQ(prp_list_slots(513, kPage), 512U);
  EXPECT_EQ(prp_list_pages(514, kPage), 2U) << "513 entries: 511 and a pointer, then 2";
  EXPECT_EQ(prp_list_slots(514, kPage), 514U);
  EXPECT_EQ(prp_list_pages(1024, kPage), 2U) << "1023 entries: 511 and a pointer, then 512";
  EXPECT_EQ(prp_list_pages(1025, kPage), 3U) << "1024 entries (4 MiB and a page): a third page";
  EXPECT_EQ(prp_list_slots(1025, kPage), 1026U);
}

TEST(BuildPrps, ListChainedOverTwoPages) {
  // 514 pages: PRP1 and 513 entries, which take a second list page.
  const std::uint64_t len = 514ULL * 4096;
  const std::array s{seg(0x1000000, len)};
  const Built b = build(s, 0, len);
  EXPECT_EQ(b.p.prp2, kListIova);
  ASSERT_EQ(b.list.size(), 514U);
  EXPECT_EQ(b.list[510], 0x1000000U + 511 * 4096) << "the last entry of the first page";
  EXPECT_EQ(b.list[511], kListIova + 4096) << "the first page's last slot points to the second";
  EXPECT_EQ(b.list[512], 0x1000000U + 512 * 4096);
  EXPECT_EQ(b.list[513], 0x1000000U + 513 * 4096);
}

TEST(BuildPrps, FourMibUnalignedTakesThreeChainedPages) {
  // 4 MiB from 8 bytes into a page: 1025 pages, 1024 entries over three list pages, across two
  // segments that meet on a page boundary.
  const std::uint64_t len = 4ULL << 20;
  const std::array s{seg(0x2000008, (2ULL << 20) - 8), seg(0x9000000, (2ULL << 20) + 8)};
  const Built b = build(s, 0, len);
  EXPECT_EQ(b.p.prp1, 0x2000008U);
  EXPECT_EQ(b.p.prp2, kListIova);
  ASSERT_EQ(b.list.size(), 1026U);
  std::vector<std::uint64_t> entries;  // the list without its chain pointers
  for (std::size_t i = 0; i < b.list.size(); ++i) {
    if (i == 511 || i == 1023) {
      EXPECT_EQ(b.list[i], kListIova + (i + 1) * 8) << "slot " << i << " chains to the next page";
      continue;
    }
    entries.push_back(b.list[i]);
  }
  ASSERT_EQ(entries.size(), 1024U);
  EXPECT_EQ(entries[0], 0x2001000U);
  EXPECT_EQ(entries[510], 0x2000000U + 511 * 4096) << "the last page of the first segment";
  EXPECT_EQ(entries[511], 0x9000000U) << "the second segment's first page";
  EXPECT_EQ(entries[1023], 0x9000000U + 512 * 4096) << "its 8-byte tail";
}

TEST(BuildPrps, UnalignedStartSpillsIntoAnExtraPage) {
  const std::array s{seg(0x50004, 8192)};  // 8 KiB from 4 bytes into a page: three pages
  EXPECT_EQ(prp_page_count(s, kPage, 0, 8192), 3U);
  const Built b = build(s, 0, 8192);
  EXPECT_EQ(b.p.prp1, 0x50004U);
  EXPECT_EQ(b.p.prp2, kListIova);
  EXPECT_THAT(b.list, ElementsAre(0x51000U, 0x52000U));
}

TEST(BuildPrps, UnalignedStartAcrossOneBoundary) {
  const std::array s{seg(0x60200, 4096)};
  const Built b = build(s, 0, 4096);
  EXPECT_EQ(b.p.prp1, 0x60200U);
  EXPECT_EQ(b.p.prp2, 0x61000U);

  const std::array tiny{seg(0x50ffc, 8)};
  const Built t = build(tiny, 0, 8);
  EXPECT_EQ(t.p.prp1, 0x50ffcU);
  EXPECT_EQ(t.p.prp2, 0x51000U);
}

TEST(BuildPrps, LargerPageSize) {
  const std::array s{seg(0x100000, 0x8000)};
  const Built b = build(s, 0, 0x8000, 16384);
  EXPECT_EQ(b.p.prp1, 0x100000U);
  EXPECT_EQ(b.p.prp2, 0x104000U);
}

// A request of three segments: the tail of one page, three whole pages, and 4.5 KiB.
//   data  [0x0000, 0x0800) at 0x100800
//         [0x0800, 0x3800) at 0x200000
//         [0x3800, 0x4a00) at 0x300000
class PrpSegments : public ::testing::Test {
 protected:
  const std::array<DataSegment, 3> segs_{seg(0x100800, 0x800), seg(0x200000, 0x3000),
                                         seg(0x300000, 0x1200)};
};

TEST_F(PrpSegments, LayoutIsValid) {
  EXPECT_EQ(check_prp_layout(segs_, kPage), PrpLayoutError::none);
}

TEST_F(PrpSegments, DataAddressWalksTheSegments) {
  EXPECT_EQ(data_address(segs_, 0), 0x100800U);
  EXPECT_EQ(data_address(segs_, 0x7ff), 0x100fffU);
  EXPECT_EQ(data_address(segs_, 0x800), 0x200000U);  // a boundary belongs to the next segment
  EXPECT_EQ(data_address(segs_, 0x2000), 0x201800U);
  EXPECT_EQ(data_address(segs_, 0x3800), 0x300000U);
  EXPECT_EQ(data_address(segs_, 0x49ff), 0x3011ffU);  // the last byte
}

TEST_F(PrpSegments, WholeRequest) {
  const Built b = build(segs_, 0, 0x4a00);
  EXPECT_EQ(b.p.prp1, 0x100800U);
  EXPECT_EQ(b.p.prp2, kListIova);
  EXPECT_THAT(b.list, ElementsAre(0x200000U, 0x201000U, 0x202000U, 0x300000U, 0x301000U));
}

TEST_F(PrpSegments, SplitIntoEightKibChunks) {
  const Built c0 = build(segs_, 0x0000, 0x2000);
  EXPECT_EQ(c0.p.prp1, 0x100800U);
  EXPECT_EQ(c0.p.prp2, kListIova);
  EXPECT_THAT(c0.list, ElementsAre(0x200000U, 0x201000U));

  const Built c1 = build(segs_, 0x2000, 0x2000);  // starts mid-page inside segment 2
  EXPECT_EQ(c1.p.prp1, 0x201800U);
  EXPECT_EQ(c1.p.prp2, kListIova);
  EXPECT_THAT(c1.list, ElementsAre(0x202000U, 0x300000U));

  const Built c2 = build(segs_, 0x4000, 0xa00);  // the rest: two pages of segment 3
  EXPECT_EQ(c2.p.prp1, 0x300800U);
  EXPECT_EQ(c2.p.prp2, 0x301000U);
  EXPECT_THAT(c2.list, ElementsAre(0x301000U));
}

TEST_F(PrpSegments, ChunksStartingOnSegmentBoundaries) {
  const Built b = build(segs_, 0x800, 0x1000);
  EXPECT_EQ(b.p.prp1, 0x200000U);
  EXPECT_EQ(b.p.prp2, 0U);

  const Built c = build(segs_, 0x3800, 0x1200);
  EXPECT_EQ(c.p.prp1, 0x300000U);
  EXPECT_EQ(c.p.prp2, 0x301000U);
}

TEST_F(PrpSegments, ChunkEndingOnASegmentBoundary) {
  const Built b = build(segs_, 0x400, 0x400);  // the last KiB of segment 1
  EXPECT_EQ(b.p.prp1, 0x100c00U);
  EXPECT_EQ(b.p.prp2, 0U);

  const Built c = build(segs_, 0x400, 0x800);  // crosses into segment 2 by one KiB
  EXPECT_EQ(c.p.prp1, 0x100c00U);
  EXPECT_EQ(c.p.prp2, 0x200000U);
}

}  // namespace
}  // namespace vfe::nvme
