#include "engine/mpsc_ring.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
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

constexpr std::uint32_t kProducers = 4;
// Per producer. TSan makes each atomic access far slower; fewer items keep that run short.
constexpr std::uint32_t kItemsPerProducer = kUnderTsan ? 25'000 : 250'000;
// Through an 8-slot ring nearly every push meets a full ring and yields, so fewer items.
constexpr std::uint32_t kTinyRingItemsPerProducer = kUnderTsan ? 5'000 : 25'000;

// An item that says who pushed it, its place in that producer's sequence, and its place in the
// push_bulk call that pushed it (0 for a single push or the first of a batch).
struct Tagged {
  std::uint32_t producer = 0;
  std::uint32_t seq = 0;
  std::uint32_t offset = 0;
};

TEST(MpscRingTest, CapacityRoundsUpToPowerOfTwoAtLeastTwo) {
  EXPECT_EQ(MpscRing<int>(0).capacity(), 2U);
  EXPECT_EQ(MpscRing<int>(1).capacity(), 2U);
  EXPECT_EQ(MpscRing<int>(3).capacity(), 4U);
  EXPECT_EQ(MpscRing<int>(1024).capacity(), 1024U);
}

TEST(MpscRingTest, TailAndHeadSitOnSeparateCacheLines) {
  EXPECT_EQ(alignof(MpscRing<int>), kCacheLine);
  EXPECT_EQ(sizeof(MpscRing<int>), 3 * kCacheLine);  // storage line, producers' line, consumer line
}

TEST(MpscRingTest, FifoOrderAndEdgesSingleThreaded) {
  MpscRing<int> ring(4);
  int v = 42;
  EXPECT_FALSE(ring.try_pop(v));
  EXPECT_EQ(v, 42);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ring.try_push(i));
  }
  EXPECT_FALSE(ring.try_push(4));
  EXPECT_EQ(ring.size_approx(), 4U);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ring.try_pop(v));
    EXPECT_EQ(v, i);
  }
  EXPECT_FALSE(ring.try_pop(v));
  EXPECT_EQ(ring.size_approx(), 0U);
}

TEST(MpscRingTest, WrapsAroundManyTimes) {
  MpscRing<std::uint64_t> ring(8);
  std::uint64_t next_in = 0;
  std::uint64_t next_out = 0;
  std::array<std::uint64_t, 5> batch{};
  for (int round = 0; round < 10'000; ++round) {
    ASSERT_TRUE(ring.try_push(next_in++));
    for (auto& b : batch) {
      b = next_in++;
    }
    ASSERT_EQ(ring.push_bulk(batch), batch.size());
    std::uint64_t v = 0;
    ASSERT_TRUE(ring.try_pop(v));
    ASSERT_EQ(v, next_out++);
    std::array<std::uint64_t, 8> out{};
    ASSERT_EQ(ring.pop_bulk(out), 5U);
    for (std::size_t i = 0; i < 5; ++i) {
      ASSERT_EQ(out[i], next_out++);
    }
  }
}

TEST(MpscRingTest, PushBulkIsPartialWhenNearlyFull) {
  MpscRing<int> ring(8);
  const std::array<int, 5> first{0, 1, 2, 3, 4};
  EXPECT_EQ(ring.push_bulk(first), 5U);
  const std::array<int, 5> second{5, 6, 7, 8, 9};
  EXPECT_EQ(ring.push_bulk(second), 3U);
  EXPECT_EQ(ring.push_bulk(second), 0U);
  EXPECT_FALSE(ring.try_push(10));
  int v = -1;
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 0);
  EXPECT_EQ(ring.push_bulk(second), 1U);  // one freed: exactly one fits
  std::array<int, 16> out{};
  ASSERT_EQ(ring.pop_bulk(out), 8U);
  const std::array<int, 8> want{1, 2, 3, 4, 5, 6, 7, 5};
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(out[i], want[i]);
  }
  EXPECT_EQ(ring.pop_bulk(out), 0U);
}

TEST(MpscRingTest, PushBulkLargerThanCapacityFillsTheRing) {
  MpscRing<int> ring(4);
  const std::array<int, 10> many{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(ring.push_bulk(many), 4U);
  EXPECT_EQ(ring.push_bulk(many), 0U);
  EXPECT_EQ(ring.push_bulk(std::span<const int>{}), 0U);
}

TEST(MpscRingTest, MoveOnlyItems) {
  MpscRing<std::unique_ptr<int>> ring(2);
  ASSERT_TRUE(ring.try_push(std::make_unique<int>(1)));
  ASSERT_TRUE(ring.try_emplace(new int(2)));
  auto extra = std::make_unique<int>(3);
  EXPECT_FALSE(ring.try_push(std::move(extra)));
  ASSERT_NE(extra, nullptr);  // a failed push leaves the item with the caller
  std::array<std::unique_ptr<int>, 4> out;
  ASSERT_EQ(ring.pop_bulk(out), 2U);
  EXPECT_EQ(*out[0], 1);
  EXPECT_EQ(*out[1], 2);
}

TEST(MpscRingTest, DestroysLeftoverItems) {
  auto tracker = std::make_shared<int>(0);
  {
    MpscRing<std::shared_ptr<int>> ring(8);
    ASSERT_TRUE(ring.try_push(tracker));
    ASSERT_TRUE(ring.try_push(tracker));
    std::shared_ptr<int> out;
    ASSERT_TRUE(ring.try_pop(out));
    EXPECT_EQ(tracker.use_count(), 3);
  }
  EXPECT_EQ(tracker.use_count(), 1);  // the ring released the one left in it
}

// Checks what one consumer sees from many producers: each item exactly once, each producer's
// items in its order, and every push_bulk batch contiguous.
class StreamChecker {
 public:
  explicit StreamChecker(std::uint32_t producers) : next_seq_(producers, 0) {}

  void see(const Tagged& item) {
    errors_ += item.producer < next_seq_.size() && item.seq == next_seq_[item.producer] ? 0 : 1;
    if (item.offset != 0) {  // inside a batch: the previous item must be its predecessor
      errors_ += previous_.producer == item.producer && previous_.seq + 1 == item.seq ? 0 : 1;
    }
    if (item.producer < next_seq_.size()) {
      next_seq_[item.producer] = item.seq + 1;
    }
    previous_ = item;
    ++count_;
  }
  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] std::uint64_t errors() const { return errors_; }
  [[nodiscard]] std::uint32_t next_seq(std::uint32_t producer) const { return next_seq_[producer]; }

 private:
  std::vector<std::uint32_t> next_seq_;
  Tagged previous_{};
  std::uint64_t count_ = 0;
  std::uint64_t errors_ = 0;
};

// Producer p pushes `count` items, single pushes and push_bulk batches of varying sizes mixed,
// retrying (with a yield) while the ring is full.
void produce(MpscRing<Tagged>& ring, std::uint32_t p, std::uint32_t count, bool bulk_only) {
  std::array<Tagged, 19> batch{};
  std::uint32_t seq = 0;
  while (seq < count) {
    const std::uint32_t want = std::min<std::uint32_t>(1 + seq % batch.size(), count - seq);
    std::size_t pushed = 0;
    if (!bulk_only && seq % 2 == 0) {
      pushed = ring.try_push(Tagged{p, seq, 0}) ? 1 : 0;
    } else {
      for (std::uint32_t i = 0; i < want; ++i) {
        batch[i] = Tagged{p, seq + i, i};
      }
      pushed = ring.push_bulk(std::span<const Tagged>(batch.data(), want));
    }
    seq += static_cast<std::uint32_t>(pushed);
    if (pushed == 0) {
      std::this_thread::yield();  // full: let the consumer run (2 shared cores)
    }
  }
}

// The consumer drains `total` items, mixing pop_bulk and try_pop, into `checker`.
void consume(MpscRing<Tagged>& ring, std::uint64_t total, StreamChecker& checker) {
  std::array<Tagged, 23> out{};
  while (checker.count() < total) {
    std::size_t n = 0;
    if (checker.count() % 3 != 0) {
      n = ring.pop_bulk(std::span<Tagged>(out.data(), 1 + checker.count() % out.size()));
    } else {
      n = ring.try_pop(out[0]) ? 1 : 0;
    }
    for (std::size_t i = 0; i < n; ++i) {
      checker.see(out[i]);
    }
    if (n == 0) {
      std::this_thread::yield();
    }
  }
}

void run_producers_and_consumer(std::size_t capacity, std::uint32_t items, bool bulk_only) {
  MpscRing<Tagged> ring(capacity);
  std::vector<std::thread> producers;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&ring, p, items, bulk_only] { produce(ring, p, items, bulk_only); });
  }
  StreamChecker checker(kProducers);
  consume(ring, std::uint64_t{kProducers} * items, checker);
  for (auto& t : producers) {
    t.join();
  }
  EXPECT_EQ(checker.errors(), 0U);
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    EXPECT_EQ(checker.next_seq(p), items) << "producer " << p;
  }
  Tagged extra{};
  EXPECT_FALSE(ring.try_pop(extra));
}

TEST(MpscRingTest, FourProducersEachItemOnceInProducerOrder) {
  run_producers_and_consumer(256, kItemsPerProducer, /*bulk_only=*/false);
}

TEST(MpscRingTest, FourBulkProducersBatchesStayContiguous) {
  run_producers_and_consumer(256, kItemsPerProducer, /*bulk_only=*/true);
}

TEST(MpscRingTest, TinyRingUnderConstantBackpressureLosesNothing) {
  run_producers_and_consumer(8, kTinyRingItemsPerProducer, /*bulk_only=*/false);
}

// While the consumer waits, producers push until the ring refuses: together they fit exactly
// `capacity` items, each then sees false / 0, and afterwards every accepted item comes out.
TEST(MpscRingTest, FullRingRefusesEveryProducerAndLosesNothing) {
  MpscRing<Tagged> ring(64);
  std::array<std::uint32_t, kProducers> accepted{};
  std::vector<std::thread> producers;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&ring, &accepted, p] {
      std::uint32_t seq = 0;
      while (ring.try_push(Tagged{p, seq, 0})) {
        ++seq;
      }
      const std::array<Tagged, 2> more{Tagged{p, seq, 0}, Tagged{p, seq + 1, 1}};
      EXPECT_EQ(ring.push_bulk(more), 0U);  // nothing was popped: still full
      accepted[p] = seq;
    });
  }
  for (auto& t : producers) {
    t.join();
  }
  std::uint32_t total = 0;
  for (auto a : accepted) {
    total += a;
  }
  EXPECT_EQ(total, ring.capacity());
  EXPECT_EQ(ring.size_approx(), ring.capacity());
  StreamChecker checker(kProducers);
  consume(ring, total, checker);
  EXPECT_EQ(checker.errors(), 0U);
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    EXPECT_EQ(checker.next_seq(p), accepted[p]);
  }
  Tagged extra{};
  EXPECT_FALSE(ring.try_pop(extra));
}

}  // namespace
}  // namespace vfe::engine
