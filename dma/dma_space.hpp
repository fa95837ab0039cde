#pragma once
/// \file
/// `DmaSpace`: the device address space of one IOMMU backend: which IOVAs are free, what is
/// mapped where, and vaddr -> IOVA translation.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "base/result.hpp"
#include "dma/host_memory.hpp"
#include "dma/iova.hpp"
#include "dma/iova_allocator.hpp"
#include "dma/iova_map.hpp"
#include "vfio/iommu_backend.hpp"

namespace vfe::dma {

/// Maps process memory for DMA by the devices of one backend, choosing IOVAs inside the ranges
/// the kernel reports and below the devices' DMA mask, and translates addresses in O(1).
/// Held by unique_ptr (the translation table is neither copyable nor movable). `map`/`unmap`
/// are thread-safe setup-path calls; `translate` is lock-free and may run on any thread at the
/// same time.
class DmaSpace {
 public:
  /// `dma_mask_bits`: how many address bits the devices drive (64 for NVMe, 28 for edu). With
  /// no-IOMMU the IOVA is the physical address, so the mask is checked on each mapping instead.
  [[nodiscard]] static Result<std::unique_ptr<DmaSpace>> create(
      std::shared_ptr<vfio::IommuBackend> backend, unsigned dma_mask_bits = 64);

  /// Maps [vaddr, vaddr + size) (page aligned) and returns its IOVA. All or nothing: on error no
  /// IOVA stays allocated and nothing stays mapped. Memory that overlaps a live mapping of this
  /// space is refused (EEXIST) before the kernel is asked. Mapping pins the memory: without
  /// CAP_IPC_LOCK, more than RLIMIT_MEMLOCK in all is refused up front (ENOMEM, with the amount
  /// needed). `align`: IOVA alignment (the page size of
  /// the memory, so the IOMMU can use large pages).
  [[nodiscard]] Result<Iova> map(const void* vaddr, std::uint64_t size, std::uint64_t align = 4096);
  /// How to allocate memory for this space: `asked`, except that without an IOMMU (the IOVA is
  /// the physical address) the memory comes from hugepages and only from them: the kernel may
  /// migrate base pages under a device even while they are locked, and only a hugepage is
  /// physically contiguous beyond one page. DmaBuffer and DmaPool allocate with this.
  [[nodiscard]] MemoryOptions memory_options(MemoryOptions asked) const noexcept;
  /// Undoes one `map` of exactly this range: the device can no longer reach it when this
  /// returns; the IOVA is free for reuse.
  [[nodiscard]] Result<void> unmap(const void* vaddr, std::uint64_t size);

  /// The IOVA of a mapped address, or nullopt. O(1), lock-free, noexcept.
  [[nodiscard]] std::optional<Iova> translate(const void* vaddr) const noexcept {
    return map_.translate(vaddr);
  }

  [[nodiscard]] vfio::IommuBackend& backend() const noexcept { return *backend_; }
  [[nodiscard]] unsigned dma_mask_bits() const noexcept { return mask_bits_; }
  /// Free IOVA bytes (type1/iommufd); 0 when the backend chooses IOVAs itself (no-IOMMU).
  [[nodiscard]] std::uint64_t free_iova_bytes() const;
  /// How many mappings are live.
  [[nodiscard]] std::size_t mapping_count() const noexcept;

  DmaSpace(std::shared_ptr<vfio::IommuBackend> backend, unsigned mask_bits,
           std::optional<IovaAllocator> allocator) noexcept;

 private:
  [[nodiscard]] Result<Iova> map_at_chosen_iova(const void* vaddr, std::uint64_t size);
  // Refuses, before any kernel call, a mapping that would pin more than RLIMIT_MEMLOCK allows,
  // saying how much is needed.
  [[nodiscard]] Result<void> check_memlock(std::uint64_t size) const;

  std::shared_ptr<vfio::IommuBackend> backend_;
  unsigned mask_bits_;
  std::optional<IovaAllocator> allocator_;  // empty when the backend chooses (no-IOMMU)
  IovaMap map_;
  std::atomic<std::size_t> mappings_{0};
  std::atomic<std::uint64_t> pinned_bytes_{0};
};

}  // namespace vfe::dma
