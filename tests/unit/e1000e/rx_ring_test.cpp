// RxRing against a simulated device: a descriptor array in plain memory that the test writes
// back the way the 82574 would (legacy descriptors), buffers from a PacketPool over a vector.
#include "drivers/e1000e/rx_ring.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "drivers/e1000e/packet_pool.hpp"
#include "drivers/e1000e/spec.hpp"
#include "tests/unit/e1000e/pool_support.hpp"
#include "tests/unit/support/assert_ok.hpp"

namespace vfe::e1000e {
namespace {

constexpr std::uint64_t kIova = kTestIova;
constexpr std::uint8_t kDdEop = rx_status::kDone | rx_status::kEndOfPacket;

std::vector<std::byte> frame_bytes(std::uint32_t seq, std::uint32_t length) {
  std::vector<std::byte> f(length);
  for (std::uint32_t i = 0; i < length; ++i) {
    f[i] = static_cast<std::byte>((seq * 31 + i * 7) & 0xff);
  }
  return f;
}

std::uint32_t length_of(std::uint32_t seq) { return 60 + (seq * 97) % (1514 - 60 + 1); }

// The receive side of the device: writes frames back from RDH on, only into descriptors the
// driver handed over (RDH up to the RDT it last "wrote").
class RxHarness {
 public:
  // `count` descriptors and a pool of `buffers`, for VFE_ASSERT_OK_AND_ASSIGN. Moving a harness
  // keeps every pointer valid: the pool, ring, memory and descriptors live on the heap.
  static Result<RxHarness> make(std::uint32_t count, std::size_t buffers) {
    RxHarness h(count, buffers);
    VFE_TRY_ASSIGN(h.pool_, make_pool(h.memory_));
    h.ring_ = std::make_unique<RxRing>(h.descs_.data(), count, *h.pool_);
    return h;
  }

  bool deliver(std::span<const std::byte> bytes, std::uint8_t status = kDdEop, std::uint8_t errors = 0) {
    if (head_ == rdt_) {
      return false;  // the driver has not given this descriptor to the device
    }
    RxDescriptor& d = descs_[head_];
    EXPECT_GE(d.buffer, kIova);
    EXPECT_EQ((d.buffer - kIova) % kBuf, 0U);
    EXPECT_LE(bytes.size(), kBuf);
    if (!bytes.empty()) {
      std::memcpy(memory_.data() + (d.buffer - kIova), bytes.data(), bytes.size());
    }
    d.length = static_cast<std::uint16_t>(bytes.size());
    d.errors = errors;
    d.status = status;
    head_ = (head_ + 1) % count();
    return true;
  }
  bool deliver_seq(std::uint32_t seq, std::uint8_t errors = 0) { return deliver(frame_bytes(seq, length_of(seq)), kDdEop, errors); }

  void sync_tail() {  // what Nic does after receive: write RDT when it moved
    if (ring_->take_tail_update()) {
      rdt_ = ring_->tail();
    }
  }
  std::uint32_t count() const { return static_cast<std::uint32_t>(descs_.size()); }
  bool is_pool_buffer(std::uint64_t iova) const {
    return iova >= kIova && iova < kIova + memory_.size() && (iova - kIova) % kBuf == 0;
  }

  std::vector<std::byte> memory_;
  std::vector<RxDescriptor> descs_;
  std::unique_ptr<PacketPool> pool_;
  std::unique_ptr<RxRing> ring_;
  std::uint32_t head_ = 0;
  std::uint32_t rdt_ = 0;

 private:
  RxHarness(std::uint32_t count, std::size_t buffers) : memory_(buffers * kBuf), descs_(count) {}
};

void expect_frame(const Packet* p, std::uint32_t seq) {
  ASSERT_NE(p, nullptr);
  const auto want = frame_bytes(seq, length_of(seq));
  ASSERT_EQ(p->length, want.size()) << "frame " << seq;
  EXPECT_EQ(std::memcmp(p->data, want.data(), want.size()), 0) << "frame " << seq;
}

TEST(RxRing, FillFailsWithoutEnoughBuffersAndChangesNothing) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 7));
  std::memset(static_cast<void*>(h.descs_.data()), 0xab, h.descs_.size() * sizeof(RxDescriptor));
  const std::vector<RxDescriptor> before = h.descs_;
  auto r = h.ring_->fill();
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is(ENOBUFS)) << r.error().message();
  EXPECT_EQ(h.pool_->available(), 7U);
  EXPECT_EQ(std::memcmp(before.data(), h.descs_.data(), before.size() * sizeof(RxDescriptor)), 0);
  EXPECT_FALSE(h.ring_->take_tail_update());
}

TEST(RxRing, FillGivesEveryDescriptorAFreshPoolBuffer) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 16));
  std::memset(static_cast<void*>(h.descs_.data()), 0xff, h.descs_.size() * sizeof(RxDescriptor));  // DD set
  ASSERT_TRUE(h.ring_->fill().has_value());
  std::set<std::uint64_t> buffers;
  for (const RxDescriptor& d : h.descs_) {
    EXPECT_TRUE(h.is_pool_buffer(d.buffer)) << std::hex << d.buffer;
    buffers.insert(d.buffer);
    EXPECT_EQ(d.status, 0);
    EXPECT_EQ(d.length, 0);
    EXPECT_EQ(d.errors, 0);
  }
  EXPECT_EQ(buffers.size(), 8U);
  EXPECT_EQ(h.pool_->available(), 8U);
  EXPECT_EQ(h.ring_->tail(), 7U);
  EXPECT_TRUE(h.ring_->take_tail_update());
  EXPECT_FALSE(h.ring_->take_tail_update());
  std::vector<Packet*> out(8);
  EXPECT_EQ(h.ring_->receive(out), 0U);  // nothing written back yet
}

TEST(RxRing, DeviceOwnsAllButOneDescriptor) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 16));
  ASSERT_TRUE(h.ring_->fill().has_value());
  h.sync_tail();
  for (std::uint32_t seq = 0; seq < 7; ++seq) {
    EXPECT_TRUE(h.deliver_seq(seq)) << seq;
  }
  EXPECT_FALSE(h.deliver_seq(7));  // RDT: the gap that keeps a full ring from looking empty
}

TEST(RxRing, ReceivesFramesInOrderAndRefills) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 16));
  ASSERT_TRUE(h.ring_->fill().has_value());
  h.sync_tail();
  for (std::uint32_t seq = 0; seq < 3; ++seq) {
    ASSERT_TRUE(h.deliver_seq(seq));
  }
  std::vector<Packet*> out(8, nullptr);
  ASSERT_EQ(h.ring_->receive(out), 3U);
  std::set<std::uint64_t> taken;
  std::uint64_t bytes = 0;
  for (std::uint32_t seq = 0; seq < 3; ++seq) {
    expect_frame(out[seq], seq);
    EXPECT_TRUE(h.pool_->owns(out[seq]));
    taken.insert(dma::to_u64(out[seq]->iova));
    bytes += length_of(seq);
  }
  EXPECT_EQ(out[3], nullptr);
  for (std::uint32_t i = 0; i < 3; ++i) {
    const RxDescriptor& d = h.descs_[i];
    EXPECT_EQ(d.status, 0) << i;
    EXPECT_TRUE(h.is_pool_buffer(d.buffer));
    EXPECT_EQ(taken.count(d.buffer), 0U) << "descriptor " << i << " still points at a delivered frame";
  }
  EXPECT_TRUE(h.ring_->take_tail_update());
  EXPECT_FALSE(h.ring_->take_tail_update());
  EXPECT_EQ(h.ring_->tail(), 2U);
  EXPECT_EQ(h.ring_->stats().frames, 3U);
  EXPECT_EQ(h.ring_->stats().bytes, bytes);
  EXPECT_EQ(h.ring_->stats().errors, 0U);
  EXPECT_EQ(h.pool_->available(), 16U - 8U - 3U);
  h.pool_->free_bulk(std::span<Packet* const>(out.data(), 3));
  EXPECT_EQ(h.pool_->available(), 8U);
}

TEST(RxRing, ReceiveTakesNoMoreThanTheSpan) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 16));
  ASSERT_TRUE(h.ring_->fill().has_value());
  h.sync_tail();
  for (std::uint32_t seq = 0; seq < 5; ++seq) {
    ASSERT_TRUE(h.deliver_seq(seq));
  }
  EXPECT_EQ(h.ring_->receive(std::span<Packet*>{}), 0U);
  std::vector<Packet*> out(2);
  ASSERT_EQ(h.ring_->receive(out), 2U);
  expect_frame(out[0], 0);
  expect_frame(out[1], 1);
  EXPECT_EQ(h.ring_->tail(), 1U);
  ASSERT_EQ(h.ring_->receive(out), 2U);
  expect_frame(out[0], 2);
  expect_frame(out[1], 3);
  EXPECT_EQ(h.ring_->tail(), 3U);
  std::vector<Packet*> big(8);
  ASSERT_EQ(h.ring_->receive(big), 1U);
  expect_frame(big[0], 4);
  EXPECT_TRUE(h.ring_->take_tail_update());
  EXPECT_EQ(h.ring_->receive(big), 0U);
  EXPECT_FALSE(h.ring_->take_tail_update());
  EXPECT_EQ(h.ring_->tail(), 4U);
}

TEST(RxRing, DropsFramesTheDeviceFlagged) {
  // CE, SE, SEQ, CXE, RXE; then a zero length and one longer than the buffer.
  for (const std::uint8_t errors : std::vector<std::uint8_t>{0x01, 0x02, 0x04, 0x10, 0x80}) {
    VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 16));
    ASSERT_TRUE(h.ring_->fill().has_value());
    h.sync_tail();
    ASSERT_TRUE(h.deliver_seq(0));
    ASSERT_TRUE(h.deliver_seq(1, errors));
    ASSERT_TRUE(h.deliver_seq(2));
    std::vector<Packet*> out(8);
    ASSERT_EQ(h.ring_->receive(out), 2U) << "errors " << int{errors};
    expect_frame(out[0], 0);
    expect_frame(out[1], 2);
    EXPECT_EQ(h.ring_->stats().errors, 1U);
    EXPECT_EQ(h.ring_->stats().frames, 2U);
    EXPECT_EQ(h.ring_->tail(), 2U);
    EXPECT_TRUE(h.ring_->take_tail_update());
    EXPECT_EQ(h.pool_->available(), 16U - 8U - 2U) << "the dropped frame's buffer went back";
  }
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 16));
  ASSERT_TRUE(h.ring_->fill().has_value());
  h.sync_tail();
  ASSERT_TRUE(h.deliver({}, kDdEop));
  ASSERT_TRUE(h.deliver_seq(1));
  h.descs_[1].length = kBuf + 1;
  ASSERT_TRUE(h.deliver_seq(2));
  std::vector<Packet*> out(8);
  ASSERT_EQ(h.ring_->receive(out), 1U);
  expect_frame(out[0], 2);
  EXPECT_EQ(h.ring_->stats().errors, 2U);
  EXPECT_EQ(h.ring_->stats().frames, 1U);
}

TEST(RxRing, DropsAFrameSpanningTwoDescriptorsAsOneError) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 16));
  ASSERT_TRUE(h.ring_->fill().has_value());
  h.sync_tail();
  const auto big = frame_bytes(9, 2048);
  ASSERT_TRUE(h.deliver_seq(0));
  ASSERT_TRUE(h.deliver(big, rx_status::kDone));  // first piece: no EOP
  std::vector<Packet*> out(8);
  ASSERT_EQ(h.ring_->receive(out), 1U);
  expect_frame(out[0], 0);
  EXPECT_EQ(h.ring_->stats().errors, 0U);  // counted at its last piece
  EXPECT_TRUE(h.ring_->take_tail_update());
  EXPECT_EQ(h.ring_->tail(), 1U);
  h.pool_->free(out[0]);
  h.sync_tail();

  ASSERT_TRUE(h.deliver(std::span(big).first(100), kDdEop));  // last piece
  ASSERT_TRUE(h.deliver_seq(3));
  ASSERT_EQ(h.ring_->receive(out), 1U);
  expect_frame(out[0], 3);
  EXPECT_EQ(h.ring_->stats().errors, 1U);
  EXPECT_EQ(h.ring_->stats().frames, 2U);
  EXPECT_EQ(h.ring_->tail(), 3U);
  EXPECT_EQ(h.pool_->available(), 16U - 8U - 1U);
}

TEST(RxRing, StarvedPoolKeepsTheFrameForALaterCall) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 10));
  ASSERT_TRUE(h.ring_->fill().has_value());
  h.sync_tail();
  Packet* held[2] = {h.pool_->alloc(), h.pool_->alloc()};
  ASSERT_NE(held[1], nullptr);
  ASSERT_EQ(h.pool_->available(), 0U);
  ASSERT_TRUE(h.deliver_seq(0));
  ASSERT_TRUE(h.deliver_seq(1));

  std::vector<Packet*> out(8);
  EXPECT_EQ(h.ring_->receive(out), 0U);
  EXPECT_EQ(h.ring_->stats().starved, 1U);
  EXPECT_FALSE(h.ring_->take_tail_update());
  EXPECT_EQ(h.descs_[0].status, kDdEop) << "the frame must stay on the ring";

  h.pool_->free(held[0]);
  ASSERT_EQ(h.ring_->receive(out), 1U);
  expect_frame(out[0], 0);
  EXPECT_EQ(h.ring_->stats().starved, 2U);  // frame 1 waits now
  EXPECT_EQ(h.ring_->tail(), 0U);

  h.pool_->free(held[1]);
  ASSERT_EQ(h.ring_->receive(out), 1U);
  expect_frame(out[0], 1);
  EXPECT_EQ(h.ring_->stats().starved, 2U);
  EXPECT_EQ(h.ring_->stats().frames, 2U);
  EXPECT_EQ(h.ring_->tail(), 1U);
}

// A frame the device flagged needs no fresh buffer: its own goes straight back on the ring, so a
// dry pool does not stall the ring behind it.
TEST(RxRing, DropsAFlaggedFrameEvenWhenThePoolIsDry) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 8));
  ASSERT_TRUE(h.ring_->fill().has_value());
  h.sync_tail();
  ASSERT_EQ(h.pool_->available(), 0U);
  ASSERT_TRUE(h.deliver_seq(0, 0x01));
  ASSERT_TRUE(h.deliver_seq(1));
  std::vector<Packet*> out(8);
  EXPECT_EQ(h.ring_->receive(out), 0U);
  EXPECT_EQ(h.ring_->stats().errors, 1U);
  EXPECT_EQ(h.ring_->stats().starved, 1U) << "frame 1 waits for a buffer";
  EXPECT_TRUE(h.ring_->take_tail_update());
  EXPECT_EQ(h.ring_->tail(), 0U);
  EXPECT_EQ(h.descs_[0].status, 0U) << "handed back to the device";
  EXPECT_TRUE(h.is_pool_buffer(h.descs_[0].buffer));
}

TEST(RxRing, WrapsAroundInOrderOverManyRounds) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 32));
  ASSERT_TRUE(h.ring_->fill().has_value());
  h.sync_tail();
  constexpr std::uint32_t kFrames = 100;
  std::uint32_t sent = 0, received = 0;
  std::vector<Packet*> out(5);
  for (int round = 0; received < kFrames && round < 1000; ++round) {
    const std::uint32_t burst = 1 + static_cast<std::uint32_t>(round) % 9;
    for (std::uint32_t i = 0; i < burst && sent < kFrames && h.deliver_seq(sent); ++i) {
      ++sent;
    }
    const std::size_t want = 1 + static_cast<std::size_t>(round) % out.size();
    const std::size_t n = h.ring_->receive(std::span(out).first(want));
    for (std::size_t i = 0; i < n; ++i) {
      expect_frame(out[i], received++);
    }
    h.pool_->free_bulk(std::span<Packet* const>(out.data(), n));
    h.sync_tail();
  }
  EXPECT_EQ(received, kFrames);
  EXPECT_EQ(h.ring_->stats().frames, kFrames);
  EXPECT_EQ(h.ring_->stats().errors, 0U);
  EXPECT_EQ(h.pool_->available(), 32U - 8U);
  EXPECT_EQ(h.pool_->bad_frees(), 0U);
}

TEST(RxRing, DestructorReturnsTheRingsBuffers) {
  VFE_ASSERT_OK_AND_ASSIGN(RxHarness h, RxHarness::make(8, 16));
  ASSERT_TRUE(h.ring_->fill().has_value());
  EXPECT_EQ(h.pool_->available(), 8U);
  h.ring_.reset();
  EXPECT_EQ(h.pool_->available(), 16U);
  EXPECT_EQ(h.pool_->bad_frees(), 0U);
}

}  // namespace
}  // namespace vfe::e1000e
