#pragma once
/// \file
/// `RxRing`: the receive descriptor ring's software side (82574 §7.1.8), without registers.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "drivers/e1000e/packet_pool.hpp"
#include "drivers/e1000e/spec.hpp"

namespace vfe::e1000e {

/// Counters of one receive ring; written by the ring's thread only.
struct RxRingStats {
  std::uint64_t frames = 0;  ///< good frames handed out by `receive`
  std::uint64_t bytes = 0;   ///< their bytes (without FCS)
  std::uint64_t errors = 0;   ///< frames the device flagged (CRC, symbol, ...) or spread over
                              ///< several descriptors; dropped, their buffers handed back at once
  std::uint64_t starved = 0;  ///< times a frame waited because the pool had no buffer to refill with
};

/// Owns the buffers of the descriptors in a legacy receive ring in DMA memory and turns
/// written-back descriptors into `Packet`s. The register side (RDT) is the caller's: after
/// `receive` returned frames, write `tail()` to RDT. Every descriptor holds a buffer; the device
/// owns those from RDH up to RDT - 1 and the one at RDT waits as the gap that keeps a full ring
/// from looking empty. One thread at a time; noexcept and allocation-free after `fill`.
class RxRing {
 public:
  /// `ring`: `count` descriptors (a multiple of 8: RDLEN counts 128-byte units) in DMA memory.
  RxRing(volatile RxDescriptor* ring, std::uint32_t count, PacketPool& pool);
  RxRing(const RxRing&) = delete;
  RxRing& operator=(const RxRing&) = delete;
  /// Returns every buffer still on the ring to the pool (the device must have stopped).
  ~RxRing();

  /// Gives every descriptor a fresh buffer and clears its status; afterwards `tail()` is the
  /// RDT to write. Fails, changing nothing, when the pool has fewer than `count()` buffers.
  [[nodiscard]] Result<void> fill();

  /// Takes up to `out.size()` received frames in arrival order (each with its length set) and
  /// gives their descriptors fresh buffers. Stops early when the pool is dry: the frame stays
  /// on the ring until a later call. Returns how many; the caller owns them.
  [[nodiscard]] std::size_t receive(std::span<Packet*> out) noexcept;

  /// RDT value that hands every refilled descriptor back to the device.
  [[nodiscard]] std::uint32_t tail() const noexcept { return last_; }
  /// True once after `receive` refilled descriptors (also for frames it dropped): write RDT.
  [[nodiscard]] bool take_tail_update() noexcept {
    const bool moved = tail_moved_;
    tail_moved_ = false;
    return moved;
  }
  /// Descriptors in the ring.
  [[nodiscard]] std::uint32_t count() const noexcept { return count_; }
  /// The ring's counters (its thread).
  [[nodiscard]] const RxRingStats& stats() const noexcept { return stats_; }

 private:
  void give(std::uint32_t i, Packet* p) noexcept;

  volatile RxDescriptor* ring_;
  std::uint32_t count_;
  PacketPool& pool_;
  std::vector<Packet*> slots_;  // the buffer behind each descriptor
  std::uint32_t next_ = 0;      // the next descriptor the device writes back
  std::uint32_t last_ = 0;      // the last descriptor refilled: RDT
  bool discarding_ = false;     // inside a frame that spans descriptors (dropped to its EOP)
  bool tail_moved_ = false;     // descriptors were refilled since the last take_tail_update
  RxRingStats stats_;
};

}  // namespace vfe::e1000e
