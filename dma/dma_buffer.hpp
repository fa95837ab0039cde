#pragma once
/// \file
/// `DmaBuffer`: memory a device can read and write, with its device address.

#include <cstdint>
#include <optional>

#include "base/result.hpp"
#include "dma/dma_space.hpp"
#include "dma/host_memory.hpp"
#include "dma/iova.hpp"

namespace vfe::dma {

class DmaPool;

/// A block of DMA memory: process memory mapped for the devices of one DmaSpace, with its IOVA.
/// Move-only. Either it has a mapping of its own (`allocate`), or it is a slice of a DmaPool
/// arena (`DmaPool::allocate`). Destruction makes the memory unreachable for the device first
/// (own mapping: unmapped from the IOMMU, then the memory is freed and the IOVA returned; pool
/// slice: returned to the pool, whose arena stays mapped). The DmaSpace (and the pool) must
/// outlive the buffer. Reading and writing the memory is the caller's business; the buffer
/// object itself is not modified after creation, so it may be shared read-only between threads.
class DmaBuffer {
 public:
  /// Allocates `size` bytes (rounded up to the page size; 2 MiB hugepages by default where the
  /// system has them) and maps them. Without an IOMMU, where the device sees physical addresses,
  /// the memory comes from hugepages only (ENOMEM saying how many to reserve when there are too
  /// few; `options.hugepages` is ignored), must be physically contiguous and below the space's
  /// DMA mask: allocation retries a few times to find such memory.
  [[nodiscard]] static Result<DmaBuffer> allocate(DmaSpace& space, std::uint64_t size,
                                                  const MemoryOptions& options = {});

  DmaBuffer(DmaBuffer&& other) noexcept;
  DmaBuffer& operator=(DmaBuffer&&) = delete;
  DmaBuffer(const DmaBuffer&) = delete;
  DmaBuffer& operator=(const DmaBuffer&) = delete;
  ~DmaBuffer();

  [[nodiscard]] void* data() const noexcept { return data_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  [[nodiscard]] Iova iova() const noexcept { return iova_; }
  /// The device address of byte `offset` (offset < size()).
  [[nodiscard]] Iova iova_at(std::uint64_t offset) const noexcept { return iova_ + offset; }
  template <class T>
  [[nodiscard]] T* as() const noexcept {
    return static_cast<T*>(data_);
  }
  /// Keeps the memory allocated, mapped and its IOVA taken for good, and gives up ownership: for
  /// memory a device may still write after its owner is done (a device whose DMA could not be
  /// stopped). Freeing it, or reusing its IOVA, could hand the device's writes to someone else.
  void abandon() noexcept;

 private:
  friend class DmaPool;
  DmaBuffer(DmaSpace& space, HostMemory memory, Iova iova) noexcept;
  DmaBuffer(DmaPool& pool, void* data, std::uint64_t size, Iova iova) noexcept;

  DmaSpace* space_ = nullptr;
  DmaPool* pool_ = nullptr;
  // Destroyed after ~DmaBuffer's body unmapped it: the memory outlives its mapping.
  std::optional<HostMemory> memory_;
  void* data_ = nullptr;
  std::uint64_t size_ = 0;
  Iova iova_{};
};

}  // namespace vfe::dma
