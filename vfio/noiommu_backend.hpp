#pragma once
/// \file
/// `NoIommuBackend`: VFIO without an IOMMU. Unsafe by design; only ever used when asked for.

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "vfio/iommu_backend.hpp"
#include "vfio/legacy_container.hpp"

namespace vfe::vfio {

/// Devices in no-IOMMU groups (/dev/vfio/noiommu-N; vfio loaded with
/// enable_unsafe_noiommu_mode=1). Nothing translates or isolates the device's DMA: it uses
/// physical addresses and can reach all memory. `map` pins the pages (mlock) and returns their
/// physical address from /proc/self/pagemap (which needs CAP_SYS_ADMIN), so a mapping must be
/// physically contiguous. It must also be hugetlb memory (checked in /proc/kpageflags): the
/// kernel migrates base pages (compaction, NUMA balancing) even while they are locked, and the
/// device would go on using the old frames. Opening a device needs CAP_SYS_RAWIO.
class NoIommuBackend final : public IommuBackend {
 public:
  /// Logs a loud warning: this is the only way a no-IOMMU backend comes to exist.
  [[nodiscard]] static Result<std::shared_ptr<NoIommuBackend>> create(Sys& sys);

  [[nodiscard]] Result<Fd> open_device(const Bdf& bdf) override;
  [[nodiscard]] Result<std::vector<int>> hot_reset_group_fds(
      const std::vector<std::uint32_t>& groups) override {
    return container_.group_fds(groups);
  }
  /// Ignores `iova`; returns the physical address of `vaddr`.
  [[nodiscard]] Result<std::uint64_t> map(const void* vaddr, std::uint64_t size,
                                          std::uint64_t iova) override;
  [[nodiscard]] Result<void> unmap(std::uint64_t iova, std::uint64_t size) override;
  /// The physical address space (52 bits on x86-64); the device's DMA mask is the caller's check.
  [[nodiscard]] Result<std::vector<IovaRange>> iova_ranges() override;
  [[nodiscard]] std::optional<std::uint32_t> dma_avail() override { return std::nullopt; }
  [[nodiscard]] bool chooses_iova() const noexcept override { return true; }

  /// Use `create`; public only for std::make_shared.
  NoIommuBackend(Sys& sys, LegacyContainer container) noexcept
      : IommuBackend(sys, IommuMode::noiommu), container_(std::move(container)) {}

 private:
  // Entries [first, first + count) of a file of 64-bit entries (pagemap, kpageflags).
  [[nodiscard]] Result<std::vector<std::uint64_t>> read_entries(const char* path, std::uint64_t first,
                                                                std::uint64_t count);
  [[nodiscard]] Result<std::uint64_t> physical_address(const void* vaddr, std::uint64_t size);
  // EINVAL unless every frame of the physically contiguous [phys, phys + size) belongs to a
  // hugetlb page.
  [[nodiscard]] Result<void> check_hugetlb(const void* vaddr, std::uint64_t phys, std::uint64_t size);
  // mlock does not nest, so pages must never be in two mappings (unmapping one would unpin the
  // other's): EEXIST when [va, va + size) overlaps a live mapping. Called with mu_ held, before
  // anything is locked, so the refusal changes nothing.
  [[nodiscard]] Result<void> check_no_overlap(std::uintptr_t va, std::uint64_t size) const;

  LegacyContainer container_;
  std::mutex mu_;
  struct Pinned {
    const void* vaddr;
    std::uint64_t size;
  };
  std::map<std::uint64_t, Pinned> pinned_;  // physical address -> pinned range
};

}  // namespace vfe::vfio
