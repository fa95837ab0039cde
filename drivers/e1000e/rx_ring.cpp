#include "drivers/e1000e/rx_ring.hpp"

#include <fmt/format.h>

#include "mmio/barrier.hpp"

namespace vfe::e1000e {
namespace {

// RDESC.ERRORS bits that mean the frame is bad: CE (CRC), SE (symbol), SEQ (sequence), CXE
// (carrier extension), RXE (data). TCPE/IPE only report checksum offload, which is off.
constexpr std::uint8_t kFrameErrors = 0x01 | 0x02 | 0x04 | 0x10 | 0x80;

}  // namespace

RxRing::RxRing(volatile RxDescriptor* ring, std::uint32_t count, PacketPool& pool)
    : ring_(ring), count_(count), pool_(pool), slots_(count, nullptr) {}

RxRing::~RxRing() {
  for (Packet*& p : slots_) {
    if (p != nullptr) {
      pool_.free(p);
      p = nullptr;
    }
  }
}

Result<void> RxRing::fill() {
  if (pool_.available() < count_) {
    return Error::from_errno(ENOBUFS, "fill receive ring",
                             fmt::format("{} descriptors need as many buffers; the pool has {} free", count_,
                                         pool_.available()));
  }
  for (std::uint32_t i = 0; i < count_; ++i) {
    if (slots_[i] != nullptr) {
      pool_.free(slots_[i]);
    }
    give(i, pool_.alloc());
  }
  next_ = 0;
  last_ = count_ - 1;
  discarding_ = false;
  tail_moved_ = true;
  return ok();
}

void RxRing::give(std::uint32_t i, Packet* p) noexcept {
  slots_[i] = p;
  volatile RxDescriptor& d = ring_[i];
  d.buffer = dma::to_u64(p->iova);
  d.length = 0;
  d.checksum = 0;
  d.errors = 0;
  d.special = 0;
  d.status = 0;  // DD clear: the device's to write (the tail doorbell orders these stores)
}

std::size_t RxRing::receive(std::span<Packet*> out) noexcept {
  std::size_t n = 0;
  while (n < out.size()) {
    volatile RxDescriptor& d = ring_[next_];
    const std::uint8_t status = d.status;
    if ((status & rx_status::kDone) == 0) {
      break;
    }
    mmio::io_rmb();  // DD is written last; read the other fields only after it
    const std::uint16_t length = d.length;
    const std::uint8_t errors = d.errors;
    const bool end = (status & rx_status::kEndOfPacket) != 0;
    const bool bad = discarding_ || !end || (errors & kFrameErrors) != 0 || length == 0 ||
                     length > PacketPool::kBufferSize;
    Packet* p = slots_[next_];
    Packet* refill = p;  // a dropped frame's buffer goes straight back on the ring
    if (!bad) {
      refill = pool_.alloc();
      if (refill == nullptr) {
        ++stats_.starved;  // the frame stays on the ring until the pool has a buffer again
        break;
      }
    }
    give(next_, refill);
    last_ = next_;
    tail_moved_ = true;
    next_ = next_ + 1 == count_ ? 0 : next_ + 1;
    // A frame longer than one buffer cannot happen with LPE off and 2 KiB buffers; if it does,
    // its pieces are dropped together (counted once, at its last descriptor).
    if (bad) {
      stats_.errors += end ? 1 : 0;
      discarding_ = !end;
      continue;
    }
    p->length = length;
    stats_.frames += 1;
    stats_.bytes += length;
    out[n++] = p;
  }
  return n;
}

}  // namespace vfe::e1000e
