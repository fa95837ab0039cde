#include "dma/iova_allocator.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "base/units.hpp"
#include "tests/unit/support/assert_ok.hpp"

namespace vfe::dma {
namespace {

using ::testing::HasSubstr;
using vfio::IovaRange;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMsiFirst = 0xfee00000;  // x86 MSI window, excluded by the kernel
constexpr std::uint64_t kMsiEnd = 0xfef00000;
// The ranges VFIO type1 reports in the rig's guest (emulated Intel IOMMU, 39-bit address width):
// everything but the x86 MSI window.
const std::vector<IovaRange> kType1Ranges = {{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};

Result<IovaAllocator> make(const std::vector<IovaRange>& ranges, unsigned bits,
                           std::uint64_t page = kPage) {
  return IovaAllocator::create(ranges, bits, page);
}

bool overlaps_msi(std::uint64_t iova, std::uint64_t size) {
  return iova < kMsiEnd && iova + size > kMsiFirst;
}

// What a test checks before and after a call that must change nothing.
struct Snapshot {
  std::uint64_t free_bytes;
  std::size_t allocations;
  std::vector<IovaRange> free_ranges;
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

Snapshot snapshot(const IovaAllocator& a) {
  return {a.free_bytes(), a.allocation_count(), a.free_ranges()};
}

TEST(IovaAllocator, Type1RangesWithFullMaskKeepPageZeroReserved) {
  VFE_ASSERT_OK_AND_ASSIGN(const IovaAllocator a, make(kType1Ranges, 39));
  const std::vector<IovaRange> expected = {{kPage, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
  EXPECT_EQ(a.usable_ranges(), expected);
  EXPECT_EQ(a.total_bytes(), 0xfedfffffULL + 1 - kPage + (0x7fffffffffULL - 0xfef00000 + 1));
  EXPECT_EQ(a.free_bytes(), a.total_bytes());
  EXPECT_EQ(a.free_ranges(), expected);
  EXPECT_EQ(a.allocation_count(), 0U);
}

TEST(IovaAllocator, NeverUsesTheMsiHoleEvenWhenTheSpaceBelowIsFull) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make(kType1Ranges, 39));
  // Fill everything below the hole with 4 MiB chunks, then the rest with single pages.
  std::uint64_t iova = 0;
  do {
    auto r = a.allocate(4 * kMiB, kPage);
    ASSERT_TRUE(r) << r.error().message();
    iova = to_u64(*r);
    EXPECT_FALSE(overlaps_msi(iova, 4 * kMiB)) << std::hex << iova;
  } while (iova < kMsiFirst);
  EXPECT_EQ(iova, kMsiEnd);  // the first chunk that no longer fits below lands right above
  std::uint64_t pages_below = 0;
  for (;;) {
    auto r = a.allocate(kPage, kPage);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_FALSE(overlaps_msi(to_u64(*r), kPage)) << std::hex << to_u64(*r);
    if (to_u64(*r) > kMsiFirst) {
      EXPECT_EQ(to_u64(*r), kMsiEnd + 4 * kMiB);  // below is full: next free page above
      break;
    }
    ++pages_below;
  }
  // 0x1000..0xfedfffff holds 1019 chunks of 4 MiB plus 1023 pages.
  EXPECT_EQ(pages_below, (kMsiFirst - kPage) % (4 * kMiB) / kPage);
}

TEST(IovaAllocator, TwentyEightBitMaskKeepsEveryIovaBelow256MiB) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make(kType1Ranges, 28));
  const std::vector<IovaRange> expected = {{kPage, 0x0fffffff}};
  EXPECT_EQ(a.usable_ranges(), expected);
  EXPECT_EQ(a.total_bytes(), 256 * kMiB - kPage);
  std::uint64_t allocated = 0;
  for (;;) {
    auto r = a.allocate(kMiB, kPage);
    if (!r) {
      EXPECT_TRUE(r.error().is(ENOSPC)) << r.error().message();
      break;
    }
    EXPECT_LE(to_u64(*r) + kMiB, 0x10000000U);
    allocated += kMiB;
  }
  EXPECT_EQ(allocated, 255 * kMiB);  // the last MiB is short of the reserved page
  auto last = a.allocate(kMiB - kPage, kPage);
  ASSERT_TRUE(last);
  EXPECT_EQ(to_u64(*last) + kMiB - kPage, 0x10000000U);
  EXPECT_EQ(a.free_bytes(), 0U);
}

TEST(IovaAllocator, AlignsTo2MiBAnd1GiB) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make(kType1Ranges, 39));
  EXPECT_EQ(to_u64(*a.allocate(kPage, kPage)), kPage);
  const auto two_mib = a.allocate(2 * kMiB, 2 * kMiB);
  ASSERT_TRUE(two_mib);
  EXPECT_EQ(to_u64(*two_mib), 2 * kMiB);
  const auto small = a.allocate(kPage, kPage);  // first fit: back below the 2 MiB block
  EXPECT_EQ(to_u64(*small), 2 * kPage);
  std::vector<std::uint64_t> gib;
  for (int i = 0; i < 3; ++i) {
    const auto r = a.allocate(kGiB, kGiB);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_TRUE(is_aligned(to_u64(*r), kGiB));
    EXPECT_FALSE(overlaps_msi(to_u64(*r), kGiB));
    gib.push_back(to_u64(*r));
  }
  // [3 GiB, 4 GiB) contains the MSI hole, so the third block goes to 4 GiB.
  EXPECT_EQ(gib, (std::vector<std::uint64_t>{kGiB, 2 * kGiB, 4 * kGiB}));
  const auto r = a.allocate(2 * kMiB, 2 * kMiB);  // still fits below 1 GiB
  EXPECT_EQ(to_u64(*r), 4 * kMiB);
}

TEST(IovaAllocator, ExhaustionIsEnospcAndChangesNothing) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make({{0, 0xffff}}, 64));  // 16 pages, 15 usable
  EXPECT_EQ(a.total_bytes(), 15 * kPage);
  std::vector<Iova> pages;
  for (int i = 0; i < 15; ++i) {
    const auto r = a.allocate(kPage, kPage);
    ASSERT_TRUE(r);
    pages.push_back(*r);
  }
  const Snapshot full = snapshot(a);
  const auto r = a.allocate(kPage, kPage);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOSPC));
  EXPECT_THAT(r.error().detail, HasSubstr("4096 bytes"));
  EXPECT_THAT(r.error().detail, HasSubstr("0 of 61440 bytes are free"));
  EXPECT_EQ(snapshot(a), full);

  // Free space exists, but no run that satisfies the alignment.
  ASSERT_TRUE(a.free(pages[4], kPage));
  ASSERT_TRUE(a.free(pages[5], kPage));
  const Snapshot two_free = snapshot(a);
  const auto aligned = a.allocate(kPage, 64 * kKiB);
  ASSERT_FALSE(aligned);
  EXPECT_TRUE(aligned.error().is(ENOSPC));
  EXPECT_THAT(aligned.error().detail, HasSubstr("largest free run at that alignment is 0 bytes"));
  EXPECT_THAT(aligned.error().detail, HasSubstr("8192 of 61440 bytes are free"));
  const auto too_big = a.allocate(3 * kPage, kPage);
  ASSERT_FALSE(too_big);
  EXPECT_THAT(too_big.error().detail, HasSubstr("largest free run at that alignment is 8192"));
  EXPECT_EQ(snapshot(a), two_free);
  EXPECT_EQ(to_u64(*a.allocate(2 * kPage, kPage)), 5 * kPage);  // the coalesced pair
}

TEST(IovaAllocator, ChurnCoalescesBackToOneExtent) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make(kType1Ranges, 28));
  std::mt19937_64 rng(20240601);
  std::uniform_int_distribution<std::uint64_t> pages(1, 1024);  // 4 KiB .. 4 MiB
  std::uniform_int_distribution<unsigned> align_log(12, 22);   // 4 KiB .. 4 MiB
  std::map<std::uint64_t, std::uint64_t> live;                 // iova -> size
  std::uint64_t live_bytes = 0;
  for (int round = 0; round < 10000; ++round) {
    const bool do_free = !live.empty() && (rng() % 2 == 0 || live_bytes > 192 * kMiB);
    if (do_free) {
      auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
      ASSERT_TRUE(a.free(Iova{it->first}, it->second));
      live_bytes -= it->second;
      live.erase(it);
    } else {
      const std::uint64_t size = pages(rng) * kPage;
      const std::uint64_t align = std::uint64_t{1} << align_log(rng);
      const auto r = a.allocate(size, align);
      if (!r) {
        ASSERT_TRUE(r.error().is(ENOSPC)) << r.error().message();
        continue;
      }
      const std::uint64_t iova = to_u64(*r);
      ASSERT_TRUE(is_aligned(iova, align));
      ASSERT_NE(iova, 0U);
      ASSERT_LE(iova + size, 0x10000000U);
      auto next = live.lower_bound(iova);  // no overlap with either neighbour
      ASSERT_TRUE(next == live.end() || iova + size <= next->first);
      ASSERT_TRUE(next == live.begin() || std::prev(next)->first + std::prev(next)->second <= iova);
      live.emplace(iova, size);
      live_bytes += size;
    }
    ASSERT_EQ(a.free_bytes() + live_bytes, a.total_bytes());
    ASSERT_EQ(a.allocation_count(), live.size());
    ASSERT_LE(a.free_ranges().size(), live.size() + 1);  // coalesced: no growth without bound
  }
  for (const auto& [iova, size] : live) {
    ASSERT_TRUE(a.free(Iova{iova}, size));
  }
  EXPECT_EQ(a.free_bytes(), a.total_bytes());
  EXPECT_EQ(a.allocation_count(), 0U);
  EXPECT_EQ(a.free_ranges(), (std::vector<IovaRange>{{kPage, 0x0fffffff}}));
}

TEST(IovaAllocator, BadFreesAreErrorsThatChangeNothing) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make(kType1Ranges, 28));
  const Iova first = *a.allocate(4 * kPage, kPage);   // 0x1000..0x4fff
  const Iova second = *a.allocate(2 * kPage, kPage);  // 0x5000..0x6fff
  ASSERT_TRUE(a.free(second, 2 * kPage));
  const Snapshot before = snapshot(a);

  const auto double_free = a.free(second, 2 * kPage);
  ASSERT_FALSE(double_free);
  EXPECT_TRUE(double_free.error().is(EINVAL));
  EXPECT_THAT(double_free.error().detail, HasSubstr("IOVA 0x5000 of 8192 bytes"));
  EXPECT_THAT(double_free.error().detail, HasSubstr("double free"));

  const auto short_free = a.free(first, kPage);
  ASSERT_FALSE(short_free);
  EXPECT_THAT(short_free.error().detail, HasSubstr("IOVA 0x1000 was allocated with 16384 bytes"));

  const auto inner = a.free(first + kPage, kPage);
  ASSERT_FALSE(inner);
  EXPECT_THAT(inner.error().detail, HasSubstr("IOVA 0x2000 of 4096 bytes lies inside"));

  const auto outside = a.free(Iova{0x20000000}, kPage);
  ASSERT_FALSE(outside);
  EXPECT_THAT(outside.error().detail, HasSubstr("IOVA 0x20000000"));
  EXPECT_THAT(outside.error().detail, HasSubstr("outside"));

  EXPECT_FALSE(a.free(Iova{0}, kPage));         // the reserved page
  EXPECT_FALSE(a.free(first, 0));               // size zero
  EXPECT_FALSE(a.free(first, 8 * kPage));       // too long
  EXPECT_FALSE(a.free(Iova{0x9000}, kPage));    // free space, never allocated
  EXPECT_EQ(snapshot(a), before);
  EXPECT_TRUE(a.free(first, 4 * kPage));
}

TEST(IovaAllocator, BadSizesAndAlignmentsAreEinvalAndChangeNothing) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make(kType1Ranges, 39));
  ASSERT_TRUE(a.allocate(kPage, kPage));
  const Snapshot before = snapshot(a);
  for (const auto& [size, align] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
           {0, kPage}, {100, kPage}, {kPage + 1, kPage}, {6000, kPage},  // sizes
           {kPage, 0}, {kPage, 3}, {kPage, 2048}, {kPage, 3 * kPage}, {kPage, 1}}) {
    const auto r = a.allocate(size, align);
    ASSERT_FALSE(r) << size << " " << align;
    EXPECT_TRUE(r.error().is(EINVAL)) << r.error().message();
  }
  EXPECT_THAT(a.allocate(6000, kPage).error().detail, HasSubstr("size 6000"));
  EXPECT_THAT(a.allocate(kPage, 3 * kPage).error().detail, HasSubstr("alignment 0x3000"));
  EXPECT_EQ(snapshot(a), before);
  EXPECT_FALSE(a.allocate(~std::uint64_t{0} - kPage + 1, kPage));  // huge: ENOSPC, no wrap
  EXPECT_EQ(snapshot(a), before);
}

TEST(IovaAllocator, CreateRejectsBadArguments) {
  const auto expect_invalid = [](const std::vector<IovaRange>& ranges, unsigned bits,
                                 std::uint64_t page, const char* words) {
    const auto r = IovaAllocator::create(ranges, bits, page);
    ASSERT_FALSE(r) << words;
    EXPECT_TRUE(r.error().is(EINVAL));
    EXPECT_THAT(r.error().detail, HasSubstr(words));
  };
  expect_invalid(kType1Ranges, 11, kPage, "11 bits");
  expect_invalid(kType1Ranges, 65, kPage, "65 bits");
  expect_invalid(kType1Ranges, 39, 0, "page size 0");
  expect_invalid(kType1Ranges, 39, 2048, "page size 2048");
  expect_invalid(kType1Ranges, 39, 12288, "page size 12288");
  expect_invalid({}, 39, kPage, "no whole 4096-byte page");
  expect_invalid({{0, 0xfff}}, 39, kPage, "no whole");          // only the reserved page
  expect_invalid({{0x1800, 0x27ff}}, 39, kPage, "no whole");    // no whole page inside
  expect_invalid({{0x100000000, 0x1ffffffff}}, 28, kPage, "[0x100000000, 0x1ffffffff]");
  expect_invalid(kType1Ranges, 12, kPage, "12-bit DMA mask");   // 4 KiB: just page 0
  expect_invalid({{0x5000, 0x4fff}}, 39, kPage, "starts after it ends");
}

TEST(IovaAllocator, UnsortedOverlappingAndTouchingRangesMerge) {
  VFE_ASSERT_OK_AND_ASSIGN(const IovaAllocator a,
                           make({{0x200000, 0x2fffff},
                                 {0x900800, 0x9fffff},  // trimmed to whole pages
                                 {0, 0xfffff},
                                 {0x250000, 0x3fffff},  // overlaps
                                 {0x100000, 0x1fffff},  // touches both neighbours
                                 {0x500000, 0x5007ff},  // ends mid-page ...
                                 {0x500800, 0x500fff},  // ... and this completes the page
                                 {0x700000, 0x7fffff},
                                 {0x700000, 0x7fffff}},  // duplicate
                                64));
  const std::vector<IovaRange> expected = {
      {kPage, 0x3fffff}, {0x500000, 0x500fff}, {0x700000, 0x7fffff}, {0x901000, 0x9fffff}};
  EXPECT_EQ(a.usable_ranges(), expected);
  EXPECT_EQ(a.free_ranges(), expected);
}

TEST(IovaAllocator, NeverReturnsIovaZero) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make({{0, 0x3fffff}}, 64));
  for (;;) {
    const auto r = a.allocate(kPage, kPage);
    if (!r) {
      break;
    }
    ASSERT_NE(to_u64(*r), 0U);
  }
  EXPECT_EQ(a.allocation_count(), 1023U);
  // With a larger page size the whole first page is kept back.
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator big, make({{0, 0x3fffff}}, 64, 64 * kKiB));
  EXPECT_EQ(big.usable_ranges().front().start, 64 * kKiB);
  EXPECT_EQ(to_u64(*big.allocate(64 * kKiB, 64 * kKiB)), 64 * kKiB);
  EXPECT_FALSE(big.allocate(kPage, 64 * kKiB));  // not a multiple of the page size
}

TEST(IovaAllocator, WorksAtTheTopOfThe64BitSpace) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make({{0, ~std::uint64_t{0}}}, 64));
  EXPECT_EQ(a.total_bytes(), ~std::uint64_t{0} - kPage + 1);
  const std::uint64_t half = std::uint64_t{1} << 63;
  const auto high = a.allocate(half, half);
  ASSERT_TRUE(high);
  EXPECT_EQ(to_u64(*high), half);
  const auto again = a.allocate(half, half);
  ASSERT_FALSE(again);  // [0, 2^63) lost page 0; the upper half is taken
  EXPECT_TRUE(again.error().is(ENOSPC));
  ASSERT_TRUE(a.free(*high, half));
  EXPECT_EQ(a.free_ranges(), (std::vector<IovaRange>{{kPage, ~std::uint64_t{0}}}));
}

TEST(IovaAllocator, MovedAllocatorKeepsItsState) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make(kType1Ranges, 28));
  VFE_ASSERT_OK_AND_ASSIGN(const Iova iova, a.allocate(kPage, kPage));
  IovaAllocator b = std::move(a);
  EXPECT_EQ(b.allocation_count(), 1U);
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator c, make({{0, 0xffff}}, 64));
  c = std::move(b);
  EXPECT_TRUE(c.free(iova, kPage));
  EXPECT_EQ(c.free_bytes(), c.total_bytes());
  EXPECT_EQ(c.total_bytes(), 256 * kMiB - kPage);
}

TEST(IovaAllocator, ConcurrentCallersNeverShareAnIova) {
  VFE_ASSERT_OK_AND_ASSIGN(IovaAllocator a, make(kType1Ranges, 28));
  constexpr int kThreads = 4;
  constexpr int kRounds = 500;
  std::vector<std::vector<std::uint64_t>> kept(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&a, &kept, t] {
      for (int i = 0; i < kRounds; ++i) {
        const auto r = a.allocate(kPage * static_cast<std::uint64_t>(1 + i % 4), kPage);
        ASSERT_TRUE(r);
        if (i % 2 == 0) {
          kept[static_cast<std::size_t>(t)].push_back(to_u64(*r));
        } else {
          ASSERT_TRUE(a.free(*r, kPage * static_cast<std::uint64_t>(1 + i % 4)));
        }
        (void)a.free_bytes();
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
  std::map<std::uint64_t, int> seen;
  for (const auto& list : kept) {
    for (const std::uint64_t iova : list) {
      EXPECT_EQ(++seen[iova], 1) << std::hex << iova;
    }
  }
  EXPECT_EQ(a.allocation_count(), static_cast<std::size_t>(kThreads * kRounds / 2));
}

}  // namespace
}  // namespace vfe::dma
