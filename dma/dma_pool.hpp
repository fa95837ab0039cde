#pragma once
/// \file
/// `DmaPool`: many small DMA buffers carved out of a few large mappings.

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "base/result.hpp"
#include "dma/dma_buffer.hpp"
#include "dma/dma_space.hpp"
#include "dma/host_memory.hpp"

namespace vfe::dma {

/// Hands out DmaBuffers from arenas, each arena one IOMMU mapping (2 MiB by default, one
/// hugepage). This is how a driver registers thousands of buffers (queue entries, PRP lists,
/// packet buffers) without spending one kernel mapping on each: VFIO type1 allows only
/// dma_entry_limit mappings (65535 by default), and adjacent buffers from one arena share its
/// mapping. Arenas stay mapped until the pool is destroyed; freed slices are coalesced and
/// reused. Thread-safe (a mutex: setup path). Outlives every buffer it handed out.
class DmaPool {
 public:
  [[nodiscard]] static Result<std::unique_ptr<DmaPool>> create(DmaSpace& space,
                                                               std::uint64_t arena_size = 2 << 20,
                                                               const MemoryOptions& options = {});

  /// A buffer of `size` bytes (rounded up to `align`, a power of two from 64 to 4096) whose
  /// address and IOVA are `align`-aligned. A request larger than an arena gets an arena of its
  /// own.
  [[nodiscard]] Result<DmaBuffer> allocate(std::uint64_t size, std::uint64_t align = 64);

  /// IOMMU mappings the pool holds (one per arena).
  [[nodiscard]] std::size_t arena_count() const;
  /// Bytes handed out and not yet returned.
  [[nodiscard]] std::uint64_t bytes_in_use() const;

  DmaPool(DmaSpace& space, std::uint64_t arena_size, const MemoryOptions& options) noexcept
      : space_(&space), arena_size_(arena_size), options_(options) {}
  DmaPool(const DmaPool&) = delete;
  DmaPool& operator=(const DmaPool&) = delete;
  ~DmaPool();

 private:
  friend class DmaBuffer;
  struct Arena {
    HostMemory memory;
    Iova iova;
    std::map<std::uint64_t, std::uint64_t> free;  // offset -> size, coalesced
  };
  void release(void* data, std::uint64_t size) noexcept;
  [[nodiscard]] Result<void> grow(std::uint64_t at_least);

  DmaSpace* space_;
  std::uint64_t arena_size_;
  MemoryOptions options_;
  mutable std::mutex mu_;
  std::vector<Arena> arenas_;
  std::uint64_t in_use_ = 0;
};

}  // namespace vfe::dma
