#include "drivers/e1000e/tx_ring.hpp"

#include <cerrno>

namespace vfe::e1000e {
namespace {

// Every frame fits one descriptor (a whole buffer): end of packet, let the device add the FCS,
// and report status, so DD tells when the buffer is free again (legacy transmit descriptor).
constexpr std::uint8_t kCommand = tx_command::kEndOfPacket | tx_command::kInsertFcs | tx_command::kReportStatus;

}  // namespace

TxRing::TxRing(volatile TxDescriptor* ring, std::uint32_t count, PacketPool& pool)
    : ring_(ring), count_(count), pool_(pool), slots_(count, nullptr) {}

TxRing::~TxRing() { release_frames(); }

void TxRing::release_frames() noexcept {
  for (Packet*& p : slots_) {
    if (p != nullptr) {
      p->in_flight = false;
      pool_.free(p);
      p = nullptr;
    }
  }
}

void TxRing::reset() noexcept {
  release_frames();
  for (std::uint32_t i = 0; i < count_; ++i) {
    volatile TxDescriptor& d = ring_[i];
    d.buffer = 0;
    d.length = 0;
    d.cso = 0;
    d.command = 0;
    d.status = 0;
    d.css = 0;
    d.special = 0;
  }
  tail_ = 0;
  clean_ = 0;
  in_flight_ = 0;
}

int TxRing::check(const Packet* p) const noexcept {
  if (!pool_.owns(p) || p->in_pool || p->in_flight) {
    // The device could not reach another pool's memory; a free buffer is not the caller's to
    // send; one already on the ring would be freed twice.
    return -EINVAL;
  }
  if (p->length < kEthernetHeader || p->length > kMaxFrame) {
    return -EMSGSIZE;
  }
  return 0;
}

TxResult TxRing::send(std::span<Packet* const> frames) noexcept {
  if (in_flight_ + frames.size() > capacity()) {
    reclaim();
  }
  TxResult r;
  for (Packet* p : frames) {
    if (const int err = check(p); err != 0) {
      ++stats_.refused;
      r.error = err;
      return r;
    }
    if (in_flight_ == capacity()) {
      ++stats_.full;
      r.error = -EAGAIN;
      return r;
    }
    volatile TxDescriptor& d = ring_[tail_];
    d.buffer = dma::to_u64(p->iova);
    d.length = static_cast<std::uint16_t>(p->length);
    d.cso = 0;
    d.command = kCommand;
    d.status = 0;
    d.css = 0;
    d.special = 0;
    slots_[tail_] = p;
    p->in_flight = true;
    tail_ = tail_ + 1 == count_ ? 0 : tail_ + 1;
    ++in_flight_;
    ++r.sent;
    stats_.frames += 1;
    stats_.bytes += p->length;
  }
  return r;
}

std::size_t TxRing::reclaim() noexcept {
  std::size_t n = 0;
  while (in_flight_ != 0 && (ring_[clean_].status & tx_status::kDone) != 0) {
    slots_[clean_]->in_flight = false;
    pool_.free(slots_[clean_]);
    slots_[clean_] = nullptr;
    clean_ = clean_ + 1 == count_ ? 0 : clean_ + 1;
    --in_flight_;
    ++n;
  }
  return n;
}

}  // namespace vfe::e1000e
