#include "dma/iova_map.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/units.hpp"

namespace vfe::dma {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kPage = 4096;
// Made-up addresses: the map never dereferences a vaddr, so tests need no real memory.
constexpr std::uint64_t kVaBase = 0x100000000000;  // 16 TiB: 512 GiB aligned
constexpr std::uint64_t kIovaBase = 0x12345000;    // 4 KiB aligned only, on purpose

const void* va(std::uint64_t v) { return reinterpret_cast<const void*>(v); }

// Registers [start, start + size) -> kIovaBase + (start - kVaBase), the convention of every test.
Result<void> add(IovaMap& map, std::uint64_t start, std::uint64_t size) {
  return map.add(va(start), size, Iova{kIovaBase + (start - kVaBase)});
}

std::optional<std::uint64_t> lookup(const IovaMap& map, std::uint64_t v) {
  const std::optional<Iova> iova = map.translate(va(v));
  return iova ? std::optional<std::uint64_t>(to_u64(*iova)) : std::nullopt;
}

std::uint64_t expected_iova(std::uint64_t v) { return kIovaBase + (v - kVaBase); }

TEST(IovaMap, SingleBlocksTranslateAtFirstMiddleAndLastByte) {
  struct Case {
    std::uint64_t size;
    IovaMap::Stats stats;
  };
  for (const Case& c : {Case{kPage, {0, 0, 1, 3}}, Case{2 * kMiB, {0, 1, 0, 2}},
                        Case{kGiB, {1, 0, 0, 1}}}) {
    SCOPED_TRACE(c.size);
    const auto map = std::make_unique<IovaMap>();
    const std::uint64_t start = kVaBase + 5 * kGiB;  // aligned for every block size
    ASSERT_TRUE(add(*map, start, c.size));
    EXPECT_EQ(map->stats(), c.stats);
    for (const std::uint64_t v : {start, start + c.size / 2 + 123, start + c.size - 1}) {
      EXPECT_EQ(lookup(*map, v), expected_iova(v)) << std::hex << v;
    }
    EXPECT_EQ(lookup(*map, start - 1), std::nullopt);
    EXPECT_EQ(lookup(*map, start + c.size), std::nullopt);
    EXPECT_EQ(to_u64(map->translate_or(va(start + 7), Iova{1})), expected_iova(start + 7));
    EXPECT_EQ(to_u64(map->translate_or(va(start + c.size), Iova{1})), 1U);
  }
}

TEST(IovaMap, MixedAlignmentUsesTheLargestBlocks) {
  IovaMap map;
  // 12 KiB below a 1 GiB boundary, a whole GiB, 2 MiB, then 4 KiB more.
  const std::uint64_t start = kVaBase + kGiB - 3 * kPage;
  const std::uint64_t size = 3 * kPage + kGiB + 2 * kMiB + kPage;
  ASSERT_TRUE(add(map, start, size));
  // Tables: level 1 for the 512 GiB slot, level 2 and 3 under the first GiB, level 2 and 3 under
  // the third.
  EXPECT_EQ(map.stats(), (IovaMap::Stats{1, 1, 4, 5}));
  const std::uint64_t gib = kVaBase + kGiB;
  for (const std::uint64_t v : {start, gib - 1, gib, gib + kGiB / 3, 2 * kGiB + kVaBase - 1,
                                kVaBase + 2 * kGiB, kVaBase + 2 * kGiB + 2 * kMiB - 1,
                                kVaBase + 2 * kGiB + 2 * kMiB, start + size - 1}) {
    EXPECT_EQ(lookup(map, v), expected_iova(v)) << std::hex << v;
  }
  EXPECT_EQ(lookup(map, start - 1), std::nullopt);
  EXPECT_EQ(lookup(map, start + size), std::nullopt);
}

TEST(IovaMap, TwoMiBBlocksWhereOnlyTwoMiBIsAligned) {
  IovaMap map;
  const std::uint64_t start = kVaBase + 6 * kMiB;
  ASSERT_TRUE(add(map, start, 6 * kMiB));
  EXPECT_EQ(map.stats(), (IovaMap::Stats{0, 3, 0, 2}));
  EXPECT_EQ(lookup(map, start + 5 * kMiB), expected_iova(start + 5 * kMiB));
}

TEST(IovaMap, OverlappingAddIsRefusedAndChangesNothing) {
  IovaMap map;
  const std::uint64_t a = kVaBase + 3 * kGiB - 2 * kPage;  // two pages at the end of a GiB
  ASSERT_TRUE(add(map, a, 2 * kPage));
  const IovaMap::Stats before = map.stats();
  for (const auto& [start, size] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
           {a + kPage, 2 * kPage},              // tail overlaps
           {a - kPage, 2 * kPage},              // head overlaps
           {a, 2 * kPage},                      // the same range
           {kVaBase + 2 * kGiB, kGiB},          // a whole GiB that would need no table
           {kVaBase, 512 * kGiB}}) {            // everything around it
    const auto r = add(map, start, size);
    ASSERT_FALSE(r) << std::hex << start;
    EXPECT_TRUE(r.error().is(EEXIST)) << r.error().message();
    const auto check = map.check_unregistered(reinterpret_cast<const void*>(start), size);
    ASSERT_FALSE(check) << "check_unregistered agrees with add";
    EXPECT_EQ(check.error().detail, r.error().detail);
  }
  EXPECT_TRUE(map.check_unregistered(reinterpret_cast<const void*>(a + 2 * kPage), kPage));
  EXPECT_TRUE(map.check_unregistered(reinterpret_cast<const void*>(a - kPage), kPage));
  EXPECT_THAT(add(map, a + kPage, 2 * kPage).error().detail,
              HasSubstr("overlaps the registration [0x1000bfffe000, 0x1000c0000000)"));
  EXPECT_EQ(map.stats(), before);
  EXPECT_EQ(lookup(map, a - 1), std::nullopt);
  EXPECT_EQ(lookup(map, a + 2 * kPage), std::nullopt);
  EXPECT_EQ(lookup(map, a + kPage), expected_iova(a + kPage));
}

TEST(IovaMap, RemoveMustCoverWholeRegistrations) {
  IovaMap map;
  const std::uint64_t a = kVaBase + 0x200000;
  ASSERT_TRUE(add(map, a, 2 * kPage));
  ASSERT_TRUE(add(map, a + 2 * kPage, 2 * kPage));
  const IovaMap::Stats before = map.stats();
  struct Bad {
    std::uint64_t start;
    std::uint64_t size;
    const char* words;
  };
  for (const Bad& bad : {Bad{a, kPage, "ends inside"},
                         Bad{a + kPage, kPage, "lies inside the registration"},
                         Bad{a, 3 * kPage, "ends inside"},
                         Bad{a, 5 * kPage, "0x100000204000 (in [0x100000200000"},
                         Bad{a - kPage, 5 * kPage, "is not registered"},
                         Bad{kVaBase + kGiB, kPage, "is not registered"},
                         Bad{0, kPage, "is not registered"}}) {
    const auto r = map.remove(va(bad.start), bad.size);
    ASSERT_FALSE(r) << std::hex << bad.start;
    EXPECT_TRUE(r.error().is(EINVAL));
    EXPECT_THAT(r.error().detail, HasSubstr(bad.words));
  }
  EXPECT_EQ(map.stats(), before);
  EXPECT_EQ(lookup(map, a), expected_iova(a));
  ASSERT_TRUE(map.remove(va(a), 4 * kPage));  // the union of both registrations
  for (std::uint64_t v = a; v < a + 4 * kPage; v += kPage / 2) {
    EXPECT_EQ(lookup(map, v), std::nullopt);
  }
  EXPECT_FALSE(map.remove(va(a), 4 * kPage));  // twice
}

TEST(IovaMap, RemoveThenTranslateIsNulloptAndTablesAreReused) {
  IovaMap map;
  const std::uint64_t start = kVaBase + kGiB - kPage;  // 4K + 1G + 2M: three block sizes
  const std::uint64_t size = kPage + kGiB + 2 * kMiB;
  ASSERT_TRUE(add(map, start, size));
  const std::size_t nodes = map.stats().nodes;
  for (int round = 0; round < 100; ++round) {
    ASSERT_TRUE(map.remove(va(start), size));
    EXPECT_EQ(map.stats(), (IovaMap::Stats{0, 0, 0, nodes}));
    EXPECT_EQ(lookup(map, start), std::nullopt);
    EXPECT_EQ(lookup(map, start + kPage), std::nullopt);
    EXPECT_EQ(lookup(map, start + size - 1), std::nullopt);
    const Iova other{0x40000000 + static_cast<std::uint64_t>(round) * kPage};
    ASSERT_TRUE(map.add(va(start), size, other));
    EXPECT_EQ(map.stats(), (IovaMap::Stats{1, 1, 1, nodes}));  // no new tables
    EXPECT_EQ(map.translate(va(start + kPage)), other + kPage);
  }
  // A finer registration in the same place reuses and adds tables; a coarse one afterwards goes
  // into the tables that are there, so memory stays bounded however the pattern alternates.
  ASSERT_TRUE(map.remove(va(start), size));
  ASSERT_TRUE(add(map, kVaBase + kGiB + kMiB, kPage));
  ASSERT_TRUE(map.remove(va(kVaBase + kGiB + kMiB), kPage));
  const std::size_t finer_nodes = map.stats().nodes;
  EXPECT_EQ(finer_nodes, nodes + 2);
  ASSERT_TRUE(add(map, kVaBase + kGiB, kGiB));
  EXPECT_EQ(map.stats(), (IovaMap::Stats{0, 511, 512, finer_nodes}));
  EXPECT_EQ(lookup(map, kVaBase + kGiB + kMiB + 5), expected_iova(kVaBase + kGiB + kMiB + 5));
}

TEST(IovaMap, InvalidArgumentsAreRefused) {
  IovaMap map;
  const std::uint64_t top = IovaMap::kVaLimit;
  struct Bad {
    std::uint64_t start;
    std::uint64_t size;
    std::uint64_t iova;
  };
  for (const Bad& bad : {Bad{kVaBase + 1, kPage, 0}, Bad{kVaBase, 0, 0}, Bad{kVaBase, 100, 0},
                         Bad{kVaBase, kPage + 1, 0}, Bad{kVaBase, kPage, 0x800},
                         Bad{top - kPage, 2 * kPage, 0}, Bad{top, kPage, 0},
                         Bad{kVaBase, 2 * kPage, ~std::uint64_t{0} - kPage + 1}}) {
    const auto r = map.add(va(bad.start), bad.size, Iova{bad.iova});
    ASSERT_FALSE(r) << std::hex << bad.start << " " << bad.size << " " << bad.iova;
    EXPECT_TRUE(r.error().is(EINVAL)) << r.error().message();
    const auto rm = map.remove(va(bad.start), bad.size);
    EXPECT_FALSE(rm);
  }
  EXPECT_THAT(map.add(va(kVaBase + 1), kPage, Iova{0}).error().detail,
              HasSubstr("vaddr 0x100000000001"));
  EXPECT_EQ(map.stats(), IovaMap::Stats{});
  // The edges of the space are fine, IOVA 0 too.
  ASSERT_TRUE(map.add(va(top - kPage), kPage, Iova{~std::uint64_t{0} - kPage + 1}));
  ASSERT_TRUE(map.add(va(0), kPage, Iova{0}));
  EXPECT_EQ(lookup(map, top - 1), ~std::uint64_t{0});
  EXPECT_EQ(lookup(map, 0), 0U);
  EXPECT_EQ(lookup(map, top), std::nullopt);
  EXPECT_EQ(lookup(map, ~std::uint64_t{0}), std::nullopt);
}

struct Range {
  std::uint64_t start;
  std::uint64_t size;
};

// Ranges of every block shape, each in its own 4 GiB region; the stress test adds and removes
// them over and over (their tables are built once, then reused).
constexpr std::uint64_t kRegion = 4 * kGiB;
constexpr std::array<Range, 6> kChurnRanges = {{
    {kVaBase, kGiB},                                                          // one 1 GiB leaf
    {kVaBase + kRegion + 2 * kMiB, 4 * kMiB},                                 // 2 MiB leaves
    {kVaBase + 2 * kRegion + kPage, 16 * kPage},                              // 4 KiB leaves
    {kVaBase + 3 * kRegion + kGiB - 2 * kPage, kGiB + 2 * kMiB + 4 * kPage},  // mixed
    {kVaBase + 4 * kRegion, 2 * kGiB},                                        // two 1 GiB leaves
    {kVaBase + 5 * kRegion + kMiB, 3 * kMiB},                                 // 4 KiB, 2 MiB
}};

// Ranges at addresses never registered before, one per GiB, each straddling a 2 MiB boundary:
// every add of one publishes new tables (2 or 3), racing with readers that look right there.
// Bounded, since tables stay until the map goes: 2048 x 12 KiB.
constexpr std::uint64_t kFreshBase = 0x300000000000;
constexpr std::uint64_t kFreshCount = 2048;
constexpr Range fresh_range(std::uint64_t k) {
  return {kFreshBase + k * kGiB + 2 * kMiB - kPage, 2 * kPage};
}

// A reader's verdict on one lookup at `v`, which lies in or around `r`: only `r` may translate
// it, and only to the one right IOVA.
bool plausible(const IovaMap& map, std::uint64_t v, const Range& r) {
  const bool inside = v >= r.start && v < r.start + r.size;
  const std::optional<Iova> got = map.translate(va(v));
  const Iova fallback{1};  // odd: never a real translation here
  const Iova got_or = map.translate_or(va(v), fallback);
  return (!got || (inside && to_u64(*got) == expected_iova(v))) &&
         (got_or == fallback || (inside && to_u64(got_or) == expected_iova(v)));
}

// One writer adds and removes ranges of every block shape, and keeps adding ranges where new
// tables must be built, while two readers translate addresses in and around them. Every IOVA a
// reader sees must be exactly right or absent: a torn entry or a table published before it was
// built would show up as a wrong value, or as a race under ThreadSanitizer.
TEST(IovaMap, ConcurrentReadersSeeOldOrNewTranslationOnly) {
  IovaMap map;
  std::array<bool, kChurnRanges.size()> registered{};
  for (std::size_t i = 0; i < kChurnRanges.size(); i += 2) {  // some present from the start
    ASSERT_TRUE(add(map, kChurnRanges[i].start, kChurnRanges[i].size));
    registered[i] = true;
  }
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> fresh_next{0};  // the fresh range being added next
  std::atomic<std::uint64_t> lookups{0};
  std::atomic<std::uint64_t> wrong{0};
  const auto reader = [&](std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uint64_t local_lookups = 0;
    std::uint64_t local_wrong = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint64_t next = fresh_next.load(std::memory_order_relaxed);
      // Half the lookups go to the fresh range being added now or the one just removed.
      const Range r = rng() % 2 == 0 ? kChurnRanges[rng() % kChurnRanges.size()]
                                     : fresh_range(next - std::min<std::uint64_t>(next, rng() % 2));
      // Up to a page before and after the range too, where nothing may ever translate.
      const std::uint64_t v = r.start - kPage + rng() % (r.size + 2 * kPage);
      local_wrong += plausible(map, v, r) ? 0 : 1;
      ++local_lookups;
    }
    lookups.fetch_add(local_lookups, std::memory_order_relaxed);
    wrong.fetch_add(local_wrong, std::memory_order_relaxed);
  };
  std::thread reader_a(reader, 1);
  std::thread reader_b(reader, 2);
  std::mt19937_64 rng(3);
  std::uint64_t writes = 0;
  std::string write_error;  // no ASSERT while the readers run: they must be joined first
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
  while (write_error.empty() && std::chrono::steady_clock::now() < deadline) {
    Result<void> r = ok();
    const std::uint64_t k = fresh_next.load(std::memory_order_relaxed);
    if (writes % 2 == 0 && k < kFreshCount) {  // add fresh range k, then drop k - 1
      r = add(map, fresh_range(k).start, fresh_range(k).size);
      fresh_next.store(k + 1, std::memory_order_relaxed);
      if (r && k > 0) {
        r = map.remove(va(fresh_range(k - 1).start), fresh_range(k - 1).size);
      }
    } else {
      const std::size_t i = rng() % kChurnRanges.size();
      const Range& c = kChurnRanges[i];
      r = registered[i] ? map.remove(va(c.start), c.size) : add(map, c.start, c.size);
      registered[i] = !registered[i];
    }
    if (!r) {
      write_error = r.error().message();
    }
    ++writes;
  }
  stop.store(true, std::memory_order_relaxed);
  reader_a.join();
  reader_b.join();
  ASSERT_EQ(write_error, "");
  EXPECT_EQ(wrong.load(), 0U) << "of " << lookups.load() << " lookups";
  EXPECT_GT(lookups.load(), 0U);
  EXPECT_GT(fresh_next.load(), 0U);
  for (std::size_t i = 0; i < kChurnRanges.size(); ++i) {
    if (registered[i]) {
      ASSERT_TRUE(map.remove(va(kChurnRanges[i].start), kChurnRanges[i].size));
    }
  }
  const IovaMap::Stats end = map.stats();
  EXPECT_EQ(end.leaves_1g + end.leaves_2m, 0U);
  EXPECT_EQ(end.leaves_4k, fresh_next.load() > 0 ? 2U : 0U);  // the last fresh range stays
  std::cout << "[ INFO     ] " << writes << " writes, " << fresh_next.load() << " fresh ranges, "
            << lookups.load() << " lookups, " << end.nodes << " tables\n";
}

}  // namespace
}  // namespace vfe::dma
