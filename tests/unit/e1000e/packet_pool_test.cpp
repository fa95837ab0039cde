// PacketPool over caller memory: how the memory is carved, alloc/alloc_bulk/free, and that a
// double free or another pool's packet is counted and otherwise ignored.
#include "drivers/e1000e/packet_pool.hpp"
#include "tests/unit/e1000e/pool_support.hpp"
#include "tests/unit/support/assert_ok.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <vector>

namespace vfe::e1000e {
namespace {

constexpr std::uint64_t kIova = kTestIova;

TEST(PacketPool, CapacityIsWholeBuffersOfTheMemory) {
  std::vector<std::byte> exact(8 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto pool, make_pool(exact));
  EXPECT_EQ(pool->capacity(), 8U);
  EXPECT_EQ(pool->available(), 8U);
  EXPECT_EQ(pool->bad_frees(), 0U);

  std::vector<std::byte> ragged(5 * kBuf + kBuf - 1);  // the tail holds no whole buffer
  VFE_ASSERT_OK_AND_ASSIGN(auto pool2, make_pool(ragged));
  EXPECT_EQ(pool2->capacity(), 5U);
  EXPECT_EQ(pool2->available(), 5U);

  std::vector<std::byte> one(kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto pool3, make_pool(one));
  EXPECT_EQ(pool3->capacity(), 1U);
}

TEST(PacketPool, TooLittleMemoryIsAnError) {
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, kBuf - 1}) {
    std::vector<std::byte> memory(size);
    auto r = PacketPool::over(memory, dma::Iova{kIova});
    ASSERT_FALSE(r.has_value()) << size << " bytes";
    EXPECT_TRUE(r.error().is(EINVAL)) << r.error().message();
    EXPECT_FALSE(r.error().message().empty());
  }
}

TEST(PacketPool, EachPacketMapsItsSliceOfMemoryAndIova) {
  std::vector<std::byte> memory(6 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto pool, make_pool(memory));
  std::set<std::uint32_t> seen;
  for (std::size_t n = 0; n < 6; ++n) {
    Packet* p = pool->alloc();
    ASSERT_NE(p, nullptr);
    ASSERT_LT(p->index, 6U);
    EXPECT_TRUE(seen.insert(p->index).second) << "index " << p->index << " handed out twice";
    EXPECT_EQ(p->data, memory.data() + std::size_t{p->index} * kBuf);
    EXPECT_EQ(dma::to_u64(p->iova), kIova + std::uint64_t{p->index} * kBuf);
    EXPECT_EQ(p->pool, pool.get());
    EXPECT_FALSE(p->in_pool);
    EXPECT_EQ(p->length, 0U);
    EXPECT_TRUE(pool->owns(p));
  }
  EXPECT_EQ(seen.size(), 6U);
}

TEST(PacketPool, AllocUntilEmptyThenNull) {
  std::vector<std::byte> memory(4 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto pool, make_pool(memory));
  std::vector<Packet*> taken;
  for (std::size_t n = 4; n > 0; --n) {
    EXPECT_EQ(pool->available(), n);
    taken.push_back(pool->alloc());
    ASSERT_NE(taken.back(), nullptr);
  }
  EXPECT_EQ(pool->available(), 0U);
  EXPECT_EQ(pool->alloc(), nullptr);
  EXPECT_EQ(pool->alloc(), nullptr);
  EXPECT_EQ(pool->available(), 0U);
  pool->free_bulk(taken);
  EXPECT_EQ(pool->available(), 4U);
  EXPECT_EQ(pool->bad_frees(), 0U);
}

TEST(PacketPool, AllocBulkFillsFromTheFrontAndStopsWhenDry) {
  std::vector<std::byte> memory(5 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto pool, make_pool(memory));
  std::vector<Packet*> first(3, nullptr);
  EXPECT_EQ(pool->alloc_bulk(first), 3U);
  EXPECT_EQ(pool->available(), 2U);

  std::vector<Packet*> second(4, nullptr);
  EXPECT_EQ(pool->alloc_bulk(second), 2U);  // partial
  EXPECT_NE(second[0], nullptr);
  EXPECT_NE(second[1], nullptr);
  EXPECT_EQ(second[2], nullptr);  // untouched
  EXPECT_EQ(second[3], nullptr);
  EXPECT_EQ(pool->available(), 0U);

  std::set<Packet*> all(first.begin(), first.end());
  all.insert(second[0]);
  all.insert(second[1]);
  EXPECT_EQ(all.size(), 5U) << "a buffer was handed out twice";

  std::vector<Packet*> none(2, nullptr);
  EXPECT_EQ(pool->alloc_bulk(none), 0U);
  EXPECT_EQ(pool->alloc_bulk(std::span<Packet*>{}), 0U);
}

TEST(PacketPool, FreeThenAllocAgainResetsLength) {
  std::vector<std::byte> memory(2 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto pool, make_pool(memory));
  Packet* a = pool->alloc();
  Packet* b = pool->alloc();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  a->length = 1514;
  b->length = 60;
  pool->free(a);
  EXPECT_TRUE(a->in_pool);
  EXPECT_EQ(pool->available(), 1U);
  Packet* again = pool->alloc();
  ASSERT_EQ(again, a);  // the only free buffer
  EXPECT_EQ(again->length, 0U);
  EXPECT_FALSE(again->in_pool);
  EXPECT_EQ(again->bytes().size(), 0U);

  pool->free(b);
  pool->free(again);
  EXPECT_EQ(pool->available(), 2U);
  for (int i = 0; i < 2; ++i) {
    Packet* p = pool->alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->length, 0U);
  }
  EXPECT_EQ(pool->bad_frees(), 0U);
}

TEST(PacketPool, DoubleFreeIsCountedAndIgnored) {
  std::vector<std::byte> memory(3 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto pool, make_pool(memory));
  Packet* p = pool->alloc();
  ASSERT_NE(p, nullptr);
  pool->free(p);
  EXPECT_EQ(pool->available(), 3U);
  pool->free(p);
  EXPECT_EQ(pool->bad_frees(), 1U);
  EXPECT_EQ(pool->available(), 3U);
  EXPECT_TRUE(p->in_pool);

  // The stack holds each buffer once: three allocs give three different buffers, then nothing.
  std::set<Packet*> got;
  for (int i = 0; i < 3; ++i) {
    got.insert(pool->alloc());
  }
  EXPECT_EQ(got.size(), 3U);
  EXPECT_EQ(got.count(nullptr), 0U);
  EXPECT_EQ(pool->alloc(), nullptr);
}

TEST(PacketPool, FreeingAnotherPoolsPacketIsCountedAndIgnored) {
  std::vector<std::byte> mem_a(2 * kBuf);
  std::vector<std::byte> mem_b(2 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto a, make_pool(mem_a, kIova));
  VFE_ASSERT_OK_AND_ASSIGN(auto b, make_pool(mem_b, kIova + 0x10'0000));
  Packet* from_b = b->alloc();
  ASSERT_NE(from_b, nullptr);
  EXPECT_FALSE(a->owns(from_b));
  EXPECT_TRUE(b->owns(from_b));
  EXPECT_FALSE(a->owns(nullptr));

  a->free(from_b);
  EXPECT_EQ(a->bad_frees(), 1U);
  EXPECT_EQ(a->available(), 2U);
  EXPECT_EQ(b->bad_frees(), 0U);
  EXPECT_EQ(b->available(), 1U);
  EXPECT_FALSE(from_b->in_pool) << "a foreign free must not mark the packet free";

  // A free buffer of the other pool is just as foreign.
  Packet* free_of_b = b->alloc();
  ASSERT_NE(free_of_b, nullptr);
  b->free(free_of_b);
  a->free(free_of_b);
  EXPECT_EQ(a->bad_frees(), 2U);
  EXPECT_EQ(a->available(), 2U);
  EXPECT_EQ(b->available(), 1U);

  b->free(from_b);
  EXPECT_EQ(b->available(), 2U);
  EXPECT_EQ(b->bad_frees(), 0U);
}

TEST(PacketPool, FreeingNullIsCountedAndIgnored) {
  std::vector<std::byte> memory(2 * PacketPool::kBufferSize);
  auto pool = PacketPool::over(memory, dma::Iova{0x1000'0000});
  ASSERT_TRUE(pool.has_value());
  (*pool)->free(nullptr);
  EXPECT_EQ((*pool)->bad_frees(), 1U);
  EXPECT_EQ((*pool)->available(), 2U);
}

TEST(PacketPool, FreeBulkCountsOnlyTheBadOnes) {
  std::vector<std::byte> memory(4 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto pool, make_pool(memory));
  Packet* a = pool->alloc();
  Packet* b = pool->alloc();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::vector<Packet*> batch{a, b, a};  // a twice
  pool->free_bulk(batch);
  EXPECT_EQ(pool->available(), 4U);
  EXPECT_EQ(pool->bad_frees(), 1U);
}

}  // namespace
}  // namespace vfe::e1000e
