#pragma once
/// \file
/// `TxRing`: the transmit descriptor ring's software side (82574 §7.2), without registers.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "drivers/e1000e/packet_pool.hpp"
#include "drivers/e1000e/spec.hpp"

namespace vfe::e1000e {

/// What `tx_batch` did with a batch of frames.
struct TxResult {
  std::size_t sent = 0;  ///< the first `sent` frames are on the ring (the ring owns them now)
  /// 0: all sent. -EAGAIN: the ring is full; offer frames[sent..] again later (backpressure).
  /// -EMSGSIZE: frames[sent] is shorter than an Ethernet header or longer than `kMaxFrame`.
  /// -EINVAL: frames[sent] is null, another pool's, free, or already on the ring. Frames from
  /// `sent` on stay the caller's.
  int error = 0;
};

/// Counters of one transmit ring; written by the ring's thread only.
struct TxRingStats {
  std::uint64_t frames = 0;  ///< put on the ring
  std::uint64_t bytes = 0;
  std::uint64_t refused = 0;  ///< frames refused as invalid (EMSGSIZE, EINVAL)
  std::uint64_t full = 0;     ///< batches cut short by a full ring
};

/// Puts frames on a legacy transmit ring in DMA memory and takes them back once the device set
/// DD. The register side (TDT) is the caller's: after `send` took frames, write `tail()` to TDT.
/// The device owns descriptors from TDH up to TDT - 1; one is always left empty, so TDT never
/// catches up with TDH (that would read as an empty ring). One thread at a time; noexcept and
/// allocation-free.
class TxRing {
 public:
  /// `ring`: `count` descriptors (a multiple of 8) in DMA memory; `pool`: where sent frames go.
  TxRing(volatile TxDescriptor* ring, std::uint32_t count, PacketPool& pool);
  TxRing(const TxRing&) = delete;
  TxRing& operator=(const TxRing&) = delete;
  /// Returns frames still on the ring to the pool (the device must have stopped).
  ~TxRing();

  /// Zeroes the ring; afterwards TDH = TDT = 0 matches it.
  void reset() noexcept;
  /// Checks each frame and writes its descriptor (EOP, IFCS, RS), in order, until the ring is
  /// full or a frame is refused (see `TxResult`). Reclaims first when the ring looks full.
  [[nodiscard]] TxResult send(std::span<Packet* const> frames) noexcept;
  /// Returns the buffers of every descriptor the device has finished (DD) to the pool, in one
  /// pass; returns how many.
  std::size_t reclaim() noexcept;

  /// TDT value that hands every written descriptor to the device.
  [[nodiscard]] std::uint32_t tail() const noexcept { return tail_; }
  /// Frames on the ring that have not been reclaimed yet.
  [[nodiscard]] std::uint32_t in_flight() const noexcept { return in_flight_; }
  /// Frames the ring holds at once: one descriptor less than it has.
  [[nodiscard]] std::uint32_t capacity() const noexcept { return count_ - 1; }
  /// Descriptors in the ring.
  [[nodiscard]] std::uint32_t count() const noexcept { return count_; }
  /// The ring's counters (its thread).
  [[nodiscard]] const TxRingStats& stats() const noexcept { return stats_; }

 private:
  [[nodiscard]] int check(const Packet* p) const noexcept;
  void release_frames() noexcept;  // every frame on the ring back to the pool

  volatile TxDescriptor* ring_;
  std::uint32_t count_;
  PacketPool& pool_;
  std::vector<Packet*> slots_;  // the frame behind each descriptor in flight
  std::uint32_t tail_ = 0;      // the next descriptor to write: TDT
  std::uint32_t clean_ = 0;     // the oldest descriptor in flight
  std::uint32_t in_flight_ = 0;
  TxRingStats stats_;
};

}  // namespace vfe::e1000e
