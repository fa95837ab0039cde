#include "engine/spsc_ring.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

namespace vfe::engine {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr bool kUnderTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif
#else
constexpr bool kUnderTsan = false;
#endif

// TSan makes each atomic access far slower; fewer items keep that run short while still
// wrapping the ring thousands of times.
constexpr std::uint64_t kStressItems = kUnderTsan ? 200'000 : 2'000'000;

TEST(SpscRingTest, CapacityRoundsUpToPowerOfTwo) {
  EXPECT_EQ(SpscRing<int>(0).capacity(), 1U);
  EXPECT_EQ(SpscRing<int>(1).capacity(), 1U);
  EXPECT_EQ(SpscRing<int>(5).capacity(), 8U);
  EXPECT_EQ(SpscRing<int>(1024).capacity(), 1024U);
  EXPECT_EQ(SpscRing<int>(1025).capacity(), 2048U);
}

TEST(SpscRingTest, IndicesSitOnSeparateCacheLines) {
  EXPECT_EQ(alignof(SpscRing<int>), kCacheLine);
  EXPECT_EQ(sizeof(SpscRing<int>), 3 * kCacheLine);  // storage line, producer line, consumer line
}

TEST(SpscRingTest, FifoOrderSingleThreaded) {
  SpscRing<int> ring(16);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(ring.try_push(i));
  }
  EXPECT_EQ(ring.size_approx(), 10U);
  for (int i = 0; i < 10; ++i) {
    int v = -1;
    ASSERT_TRUE(ring.try_pop(v));
    EXPECT_EQ(v, i);
  }
  EXPECT_EQ(ring.size_approx(), 0U);
}

TEST(SpscRingTest, FullAndEmptyEdges) {
  SpscRing<int> ring(4);
  int v = 42;
  EXPECT_FALSE(ring.try_pop(v));
  EXPECT_EQ(v, 42);  // untouched on failure
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ring.try_push(i));
  }
  EXPECT_FALSE(ring.try_push(99));  // every slot is usable, and then it is full
  EXPECT_EQ(ring.size_approx(), 4U);
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 0);
  EXPECT_TRUE(ring.try_push(4));  // one freed, one fits
  EXPECT_FALSE(ring.try_push(5));
  for (int want = 1; want <= 4; ++want) {
    ASSERT_TRUE(ring.try_pop(v));
    EXPECT_EQ(v, want);
  }
  EXPECT_FALSE(ring.try_pop(v));
}

TEST(SpscRingTest, CapacityOneRingAlternates) {
  SpscRing<int> ring(1);
  int v = 0;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(ring.try_push(i));
    ASSERT_FALSE(ring.try_push(i));
    ASSERT_TRUE(ring.try_pop(v));
    ASSERT_EQ(v, i);
    ASSERT_FALSE(ring.try_pop(v));
  }
}

TEST(SpscRingTest, WrapsAroundManyTimes) {
  SpscRing<std::uint64_t> ring(8);
  std::uint64_t next_in = 0;
  std::uint64_t next_out = 0;
  for (int round = 0; round < 10'000; ++round) {  // 3 per round over 8 slots: every offset
    for (int k = 0; k < 3; ++k) {
      ASSERT_TRUE(ring.try_push(next_in++));
    }
    for (int k = 0; k < 3; ++k) {
      std::uint64_t v = 0;
      ASSERT_TRUE(ring.try_pop(v));
      ASSERT_EQ(v, next_out++);
    }
  }
  EXPECT_EQ(ring.size_approx(), 0U);
}

TEST(SpscRingTest, PushBulkIsPartialWhenNearlyFull) {
  SpscRing<int> ring(8);
  const std::array<int, 5> first{0, 1, 2, 3, 4};
  EXPECT_EQ(ring.push_bulk(first), 5U);
  const std::array<int, 5> second{5, 6, 7, 8, 9};
  EXPECT_EQ(ring.push_bulk(second), 3U);  // only 3 fit: 5, 6, 7
  EXPECT_EQ(ring.push_bulk(second), 0U);
  EXPECT_EQ(ring.push_bulk(std::span<const int>{}), 0U);
  std::array<int, 16> out{};
  ASSERT_EQ(ring.pop_bulk(out), 8U);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(out[static_cast<std::size_t>(i)], i);
  }
}

TEST(SpscRingTest, PopBulkIsPartialWhenFewAreQueued) {
  SpscRing<int> ring(8);
  ASSERT_TRUE(ring.try_push(7));
  ASSERT_TRUE(ring.try_push(8));
  std::array<int, 4> out{-1, -1, -1, -1};
  EXPECT_EQ(ring.pop_bulk(out), 2U);
  EXPECT_EQ(out[0], 7);
  EXPECT_EQ(out[1], 8);
  EXPECT_EQ(out[2], -1);  // beyond the count: untouched
  EXPECT_EQ(ring.pop_bulk(out), 0U);
  EXPECT_EQ(ring.pop_bulk(std::span<int>{}), 0U);
}

TEST(SpscRingTest, BulkCopiesAcrossTheWrapPoint) {
  SpscRing<int> ring(8);
  std::array<int, 6> in{};
  std::array<int, 6> out{};
  int next = 0;
  int expect = 0;
  for (int round = 0; round < 50; ++round) {  // 6 per round over 8 slots: splits at every offset
    for (int& v : in) {
      v = next++;
    }
    ASSERT_EQ(ring.push_bulk(in), in.size());
    ASSERT_EQ(ring.pop_bulk(out), out.size());
    for (int v : out) {
      ASSERT_EQ(v, expect++);
    }
  }
}

TEST(SpscRingTest, MoveOnlyItems) {
  SpscRing<std::unique_ptr<int>> ring(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ring.try_push(std::make_unique<int>(i)));
  }
  auto extra = std::make_unique<int>(99);
  EXPECT_FALSE(ring.try_push(std::move(extra)));
  ASSERT_NE(extra, nullptr);  // a failed push leaves the item with the caller
  EXPECT_EQ(*extra, 99);
  std::unique_ptr<int> one;
  ASSERT_TRUE(ring.try_pop(one));
  EXPECT_EQ(*one, 0);
  ASSERT_TRUE(ring.try_emplace(new int(4)));
  std::array<std::unique_ptr<int>, 8> out;
  ASSERT_EQ(ring.pop_bulk(out), 4U);
  for (int i = 0; i < 4; ++i) {
    ASSERT_NE(out[static_cast<std::size_t>(i)], nullptr);
    EXPECT_EQ(*out[static_cast<std::size_t>(i)], i + 1);
  }
}

// Counts live instances, so a test can see the ring destroys exactly what it holds.
struct Counted {
  static inline int live = 0;
  Counted() noexcept { ++live; }
  Counted(const Counted&) noexcept { ++live; }
  Counted(Counted&&) noexcept { ++live; }
  Counted& operator=(const Counted&) noexcept = default;
  Counted& operator=(Counted&&) noexcept = default;
  ~Counted() { --live; }
};

TEST(SpscRingTest, DestroysPoppedAndLeftoverItems) {
  Counted::live = 0;
  {
    SpscRing<Counted> ring(8);
    const std::array<Counted, 3> batch{};
    EXPECT_EQ(ring.push_bulk(batch), 3U);
    ASSERT_TRUE(ring.try_emplace());
    EXPECT_EQ(Counted::live, 3 + 4);
    Counted out;
    ASSERT_TRUE(ring.try_pop(out));
    EXPECT_EQ(Counted::live, 3 + 3 + 1);  // the popped slot's object is gone
  }
  EXPECT_EQ(Counted::live, 0);  // the ring's destructor ended the three left in it
}

// One producer, one consumer, both mixing single and bulk calls of varying sizes; the consumer
// checks every value arrives once and in order.
TEST(SpscRingTest, TwoThreadStressMixedBulkAndSingle) {
  SpscRing<std::uint64_t> ring(64);
  std::thread producer([&ring] {
    std::array<std::uint64_t, 37> batch{};
    std::uint64_t next = 0;
    while (next < kStressItems) {
      const std::size_t want = std::min<std::uint64_t>(1 + next % batch.size(), kStressItems - next);
      std::size_t pushed = 0;
      if (want == 1 || next % 3 == 0) {
        pushed = ring.try_push(next) ? 1 : 0;
      } else {
        std::iota(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(want), next);
        pushed = ring.push_bulk(std::span<const std::uint64_t>(batch.data(), want));
      }
      next += pushed;
      if (pushed == 0) {
        std::this_thread::yield();  // full: let the consumer run (the machine has 2 shared cores)
      }
    }
  });
  std::array<std::uint64_t, 29> out{};
  std::uint64_t expect = 0;
  std::uint64_t mismatches = 0;
  while (expect < kStressItems) {
    std::size_t n = 0;
    if (expect % 2 == 0) {
      n = ring.pop_bulk(std::span<std::uint64_t>(out.data(), 1 + expect % out.size()));
    } else {
      n = ring.try_pop(out[0]) ? 1 : 0;
    }
    for (std::size_t i = 0; i < n; ++i) {
      mismatches += out[i] != expect++ ? 1 : 0;
    }
    if (n == 0) {
      std::this_thread::yield();
    }
  }
  producer.join();
  EXPECT_EQ(mismatches, 0U);
  EXPECT_EQ(expect, kStressItems);
  std::uint64_t v = 0;
  EXPECT_FALSE(ring.try_pop(v));
}

}  // namespace
}  // namespace vfe::engine
