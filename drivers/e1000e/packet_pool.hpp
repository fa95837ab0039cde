#pragma once
/// \file
/// `PacketPool` and `Packet`: fixed-size frame buffers in DMA memory, handed between the
/// application and a NIC's rings without copying.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "dma/dma_buffer.hpp"
#include "dma/dma_space.hpp"
#include "dma/iova.hpp"

namespace vfe::e1000e {

class PacketPool;

/// One frame buffer of `PacketPool::kBufferSize` bytes. Whoever holds the pointer owns the
/// buffer: the pool (free), the application, or a NIC ring (the device may read or write it).
/// Ownership moves with `alloc`/`free`, `rx_batch` (to the application) and `tx_batch` (to the
/// ring, back to the pool once sent).
struct Packet {
  std::byte* data = nullptr;  ///< the frame's first byte (without FCS)
  dma::Iova iova{};           ///< where the device sees `data`
  std::uint32_t length = 0;   ///< bytes of frame in `data`
  std::uint32_t index = 0;    ///< position in its pool
  const PacketPool* pool = nullptr;
  bool in_pool = false;    ///< set while free; catches a double free
  bool in_flight = false;  ///< set while on a transmit ring; catches sending it twice

  [[nodiscard]] std::span<std::byte> bytes() const noexcept { return {data, length}; }
};

/// A fixed set of packet buffers, carved from DMA buffers of at most 2 MiB each (so each is
/// physically contiguous without an IOMMU). Not thread-safe: one thread uses a pool at a time,
/// normally the worker that runs its NIC. `alloc*`/`free*` are noexcept, O(1) per packet, and
/// never allocate.
class PacketPool {
 public:
  /// Bytes per buffer: the receive buffer size programmed in RCTL.BSIZE.
  static constexpr std::uint32_t kBufferSize = 2048;

  /// `count` buffers in `space`, rounded up to fill whole 2 MiB chunks, on `numa_node` (-1: the
  /// calling thread's). The space must outlive the pool.
  [[nodiscard]] static Result<std::unique_ptr<PacketPool>> create(dma::DmaSpace& space, std::uint32_t count,
                                                                  int numa_node = -1);
  /// Buffers carved from caller memory whose first byte the device sees at `iova` (host tests);
  /// the memory must outlive the pool.
  [[nodiscard]] static Result<std::unique_ptr<PacketPool>> over(std::span<std::byte> memory, dma::Iova iova);

  PacketPool(const PacketPool&) = delete;
  PacketPool& operator=(const PacketPool&) = delete;
  ~PacketPool();

  /// A free buffer with length 0, or nullptr when none is left.
  [[nodiscard]] Packet* alloc() noexcept;
  /// Fills `out` from the front with free buffers; returns how many (fewer when the pool runs dry).
  [[nodiscard]] std::size_t alloc_bulk(std::span<Packet*> out) noexcept;
  /// Returns `p` to the pool. A null pointer, a buffer already free, another pool's, or one still
  /// on a transmit ring is counted in `bad_frees` and otherwise ignored (the data path has no
  /// error to return).
  void free(Packet* p) noexcept;
  /// `free` for each.
  void free_bulk(std::span<Packet* const> packets) noexcept;

  /// Buffers free now.
  [[nodiscard]] std::size_t available() const noexcept { return top_; }
  /// Buffers in the pool, free or not.
  [[nodiscard]] std::size_t capacity() const noexcept { return packets_.size(); }
  /// Frees refused so far (see `free`): each is a bug in the caller.
  [[nodiscard]] std::uint64_t bad_frees() const noexcept { return bad_frees_; }
  /// True when `p` is one of this pool's buffers.
  [[nodiscard]] bool owns(const Packet* p) const noexcept { return p != nullptr && p->pool == this; }

 private:
  PacketPool() = default;
  void carve(std::byte* base, dma::Iova iova, std::uint64_t bytes);
  void finish() noexcept;

  // Teardown: packets_ and free_ only point into the chunks; the chunks unmap last.
  std::vector<dma::DmaBuffer> chunks_;
  std::vector<Packet> packets_;
  std::vector<Packet*> free_;  // a stack; sized once, so free() never allocates
  std::size_t top_ = 0;
  std::uint64_t bad_frees_ = 0;
};

}  // namespace vfe::e1000e
