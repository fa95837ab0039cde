// TxRing against a simulated device: a descriptor array in plain memory on which the test sets
// DD the way the 82574 would (legacy descriptors), frames from a PacketPool over a vector.
#include "drivers/e1000e/tx_ring.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "drivers/e1000e/packet_pool.hpp"
#include "drivers/e1000e/spec.hpp"
#include "tests/unit/e1000e/pool_support.hpp"
#include "tests/unit/support/assert_ok.hpp"

namespace vfe::e1000e {
namespace {

constexpr std::uint64_t kIova = kTestIova;

static_assert((tx_command::kEndOfPacket | tx_command::kInsertFcs | tx_command::kReportStatus) == 0x0b);

// The test plays the device by setting DD on the descriptors it has "sent".
class TxRingTest : public ::testing::Test {
 protected:
  static constexpr std::uint32_t kCount = 8;
  TxRingTest() : memory_(32 * kBuf), descs_(kCount) {}
  // In SetUp, not the constructor: a pool that cannot be made ends the test before its body.
  void SetUp() override {
    VFE_ASSERT_OK_AND_ASSIGN(pool_, make_pool(memory_));
    std::memset(static_cast<void*>(descs_.data()), 0x5a, descs_.size() * sizeof(TxDescriptor));
    ring_ = std::make_unique<TxRing>(descs_.data(), kCount, *pool_);
    ring_->reset();
  }
  // `n` packets of `length` bytes, or an error (and none taken) when the pool has fewer free.
  Result<std::vector<Packet*>> frames(std::size_t n, std::uint32_t length = 60) {
    std::vector<Packet*> v(n);
    const std::size_t got = pool_->alloc_bulk(v);
    if (got != n) {
      pool_->free_bulk(std::span(v).first(got));
      return Error::from_errno(ENOBUFS, "frames", std::to_string(n) + " packets asked for, " +
                                                      std::to_string(got) + " free in the pool");
    }
    for (Packet* p : v) {
      p->length = length;
    }
    return v;
  }
  void complete(std::uint32_t i) { descs_[i % kCount].status = tx_status::kDone; }
  bool on_ring(const Packet* p) const {  // in one of the descriptors in flight
    const std::uint32_t oldest = (ring_->tail() + kCount - ring_->in_flight()) % kCount;
    for (std::uint32_t k = 0; k < ring_->in_flight(); ++k) {
      if (descs_[(oldest + k) % kCount].buffer == dma::to_u64(p->iova)) {
        return true;
      }
    }
    return false;
  }

  std::vector<std::byte> memory_;
  std::vector<TxDescriptor> descs_;
  std::unique_ptr<PacketPool> pool_;
  std::unique_ptr<TxRing> ring_;
};

TEST_F(TxRingTest, ResetZeroesTheRing) {
  const std::vector<std::byte> zero(descs_.size() * sizeof(TxDescriptor));
  EXPECT_EQ(std::memcmp(descs_.data(), zero.data(), zero.size()), 0);
  EXPECT_EQ(ring_->tail(), 0U);
  EXPECT_EQ(ring_->in_flight(), 0U);
  EXPECT_EQ(ring_->capacity(), kCount - 1);
  EXPECT_EQ(ring_->count(), kCount);
}

TEST_F(TxRingTest, SendWritesOneDescriptorPerFrame) {
  VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(3));
  f[1]->length = 1514;
  f[2]->length = 14;
  const TxResult r = ring_->send(f);
  EXPECT_EQ(r.sent, 3U);
  EXPECT_EQ(r.error, 0);
  for (std::uint32_t i = 0; i < 3; ++i) {
    const TxDescriptor& d = descs_[i];
    EXPECT_EQ(d.buffer, dma::to_u64(f[i]->iova));
    EXPECT_EQ(d.length, f[i]->length);
    EXPECT_EQ(d.command, 0x0b);  // EOP | IFCS | RS
    EXPECT_EQ(d.status, 0);
    EXPECT_EQ(d.cso, 0);
    EXPECT_EQ(d.css, 0);
  }
  EXPECT_EQ(descs_[3].buffer, 0U);
  EXPECT_EQ(ring_->tail(), 3U);
  EXPECT_EQ(ring_->in_flight(), 3U);
  EXPECT_EQ(ring_->stats().frames, 3U);
  EXPECT_EQ(ring_->stats().bytes, 60U + 1514U + 14U);
  EXPECT_EQ(pool_->available(), 29U);
  EXPECT_EQ(ring_->send({}).sent, 0U);
}

TEST_F(TxRingTest, FullRingPushesBack) {
  VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(10));
  const TxResult r = ring_->send(f);
  EXPECT_EQ(r.sent, 7U);
  EXPECT_EQ(r.error, -EAGAIN);
  EXPECT_EQ(ring_->stats().full, 1U);
  EXPECT_EQ(ring_->tail(), 7U);
  EXPECT_EQ(ring_->in_flight(), 7U);
  for (std::size_t i = 7; i < 10; ++i) {
    EXPECT_FALSE(f[i]->in_pool);
    EXPECT_FALSE(on_ring(f[i]));
  }
  const TxResult again = ring_->send(std::span<Packet* const>(f).subspan(7));
  EXPECT_EQ(again.sent, 0U);
  EXPECT_EQ(again.error, -EAGAIN);
  EXPECT_EQ(ring_->stats().full, 2U);
  EXPECT_EQ(ring_->stats().frames, 7U);
}

TEST_F(TxRingTest, ReclaimReturnsFinishedBuffersAndSendWrapsAround) {
  VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(10));
  ASSERT_EQ(ring_->send(std::span<Packet* const>(f).first(7)).sent, 7U);
  EXPECT_EQ(ring_->reclaim(), 0U);
  complete(5);  // out of order: the oldest is not done, so nothing is
  EXPECT_EQ(ring_->reclaim(), 0U);
  descs_[5].status = 0;
  for (std::uint32_t i = 0; i < 3; ++i) {
    complete(i);
  }
  const std::size_t before = pool_->available();
  EXPECT_EQ(ring_->reclaim(), 3U);
  EXPECT_EQ(pool_->available(), before + 3);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(f[i]->in_pool);
  }
  EXPECT_EQ(ring_->in_flight(), 4U);
  EXPECT_EQ(ring_->reclaim(), 0U);

  const TxResult r = ring_->send(std::span<Packet* const>(f).subspan(7));
  EXPECT_EQ(r.sent, 3U);
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(descs_[7].buffer, dma::to_u64(f[7]->iova));
  EXPECT_EQ(descs_[0].buffer, dma::to_u64(f[8]->iova));
  EXPECT_EQ(descs_[1].buffer, dma::to_u64(f[9]->iova));
  EXPECT_EQ(descs_[0].status, 0);
  EXPECT_EQ(ring_->tail(), 2U);
  EXPECT_EQ(ring_->in_flight(), 7U);
  EXPECT_EQ(pool_->bad_frees(), 0U);
}

TEST_F(TxRingTest, RefusesBadLengthsAndKeepsTheRest) {
  for (const std::uint32_t bad : {13U, 1515U, 0U}) {
    VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(3));
    f[1]->length = bad;
    const std::uint32_t tail = ring_->tail();
    const std::size_t available = pool_->available();
    const TxResult r = ring_->send(f);
    EXPECT_EQ(r.sent, 1U) << bad;
    EXPECT_EQ(r.error, -EMSGSIZE) << bad;
    EXPECT_EQ(ring_->tail(), (tail + 1) % kCount);
    EXPECT_FALSE(f[1]->in_pool);
    EXPECT_FALSE(on_ring(f[1]));
    EXPECT_FALSE(on_ring(f[2]));
    EXPECT_EQ(pool_->available(), available);
    for (std::uint32_t i = 0; i < kCount; ++i) {
      complete(i);
    }
    ring_->reclaim();
    pool_->free(f[1]);
    pool_->free(f[2]);
  }
  EXPECT_EQ(ring_->stats().refused, 3U);
  EXPECT_EQ(pool_->available(), 32U);
  EXPECT_EQ(pool_->bad_frees(), 0U);
}

TEST_F(TxRingTest, RefusesForeignFreeAndNullPackets) {
  std::vector<std::byte> other_memory(2 * kBuf);
  VFE_ASSERT_OK_AND_ASSIGN(auto other, make_pool(other_memory, kIova + 0x100'0000));
  Packet* foreign = other->alloc();
  ASSERT_NE(foreign, nullptr);
  foreign->length = 60;
  VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(2));
  pool_->free(f[1]);  // a free packet of our own pool
  for (Packet* bad : {foreign, f[1], static_cast<Packet*>(nullptr)}) {
    const std::vector<Packet*> batch{bad, f[0]};
    const TxResult r = ring_->send(batch);
    EXPECT_EQ(r.sent, 0U);
    EXPECT_EQ(r.error, -EINVAL);
  }
  EXPECT_EQ(ring_->tail(), 0U);
  EXPECT_EQ(ring_->in_flight(), 0U);
  EXPECT_EQ(ring_->stats().refused, 3U);
  EXPECT_EQ(other->available(), 1U);
  other->free(foreign);
}

// A buffer on the ring is the device's until reclaimed: sending it again (in the same batch or a
// later one) is refused, and so is never freeing it twice.
TEST_F(TxRingTest, RefusesAFrameAlreadyOnTheRing) {
  VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(2));
  const std::vector<Packet*> twice{f[0], f[0]};
  const TxResult r = ring_->send(twice);
  EXPECT_EQ(r.sent, 1U);
  EXPECT_EQ(r.error, -EINVAL);
  EXPECT_EQ(ring_->send(std::vector<Packet*>{f[0]}).error, -EINVAL);
  complete(0);
  EXPECT_EQ(ring_->reclaim(), 1U);
  EXPECT_EQ(pool_->bad_frees(), 0U);
  Packet* again = pool_->alloc();
  ASSERT_EQ(again, f[0]) << "the pool hands the reclaimed buffer out first";
  again->length = 60;
  EXPECT_EQ(ring_->send(std::vector<Packet*>{again, f[1]}).sent, 2U) << "sendable again once reclaimed";
}

TEST_F(TxRingTest, SendReclaimsWhenTheRingLooksFull) {
  VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(9));
  ASSERT_EQ(ring_->send(std::span<Packet* const>(f).first(7)).sent, 7U);
  for (std::uint32_t i = 0; i < 4; ++i) {
    complete(i);
  }
  const TxResult r = ring_->send(std::span<Packet* const>(f).subspan(7));
  EXPECT_EQ(r.sent, 2U);
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(ring_->in_flight(), 5U);
  EXPECT_EQ(pool_->available(), 32U - 9U + 4U);
  EXPECT_EQ(ring_->stats().full, 0U);
}

TEST_F(TxRingTest, WrapsAroundOverManyRounds) {
  std::uint32_t next = 0;
  for (int round = 0; round < 40; ++round) {
    const std::size_t n = 1 + static_cast<std::size_t>(round) % 7;
    VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(n, 60 + static_cast<std::uint32_t>(round)));
    const TxResult r = ring_->send(f);
    ASSERT_EQ(r.sent, n) << "round " << round;
    for (std::size_t i = 0; i < n; ++i) {
      EXPECT_EQ(descs_[(next + i) % kCount].buffer, dma::to_u64(f[i]->iova));
      complete(next + static_cast<std::uint32_t>(i));
    }
    next = (next + static_cast<std::uint32_t>(n)) % kCount;
    EXPECT_EQ(ring_->tail(), next);
    EXPECT_EQ(ring_->reclaim(), n);
  }
  EXPECT_EQ(ring_->in_flight(), 0U);
  EXPECT_EQ(pool_->available(), 32U);
  EXPECT_EQ(pool_->bad_frees(), 0U);
}

TEST_F(TxRingTest, DestructorAndResetReturnInFlightPackets) {
  VFE_ASSERT_OK_AND_ASSIGN(auto f, frames(5));
  ASSERT_EQ(ring_->send(f).sent, 5U);
  ring_->reset();
  EXPECT_EQ(pool_->available(), 32U);
  EXPECT_EQ(ring_->in_flight(), 0U);
  VFE_ASSERT_OK_AND_ASSIGN(f, frames(5));
  ASSERT_EQ(ring_->send(f).sent, 5U);
  EXPECT_EQ(pool_->available(), 27U);
  ring_.reset();
  EXPECT_EQ(pool_->available(), 32U);
  EXPECT_EQ(pool_->bad_frees(), 0U);
}

}  // namespace
}  // namespace vfe::e1000e
