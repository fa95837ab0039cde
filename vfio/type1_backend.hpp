#pragma once
/// \file
/// `Type1Backend`: VFIO's legacy container API with the type1 (v2) IOMMU driver.

#include "vfio/iommu_backend.hpp"
#include "vfio/legacy_container.hpp"

namespace vfe::vfio {

/// Devices in one or more IOMMU groups attached to one container, sharing its mappings
/// (VFIO_IOMMU_MAP_DMA / UNMAP_DMA). The kernel bounds the number of mappings by
/// vfio_iommu_type1's dma_entry_limit (65535 by default), reported by `dma_avail()`.
class Type1Backend final : public IommuBackend {
 public:
  [[nodiscard]] static Result<std::shared_ptr<Type1Backend>> create(Sys& sys);

  [[nodiscard]] Result<Fd> open_device(const Bdf& bdf) override;
  [[nodiscard]] Result<std::vector<int>> hot_reset_group_fds(
      const std::vector<std::uint32_t>& groups) override {
    return container_.group_fds(groups);
  }
  [[nodiscard]] Result<std::uint64_t> map(const void* vaddr, std::uint64_t size,
                                          std::uint64_t iova) override;
  [[nodiscard]] Result<void> unmap(std::uint64_t iova, std::uint64_t size) override;
  [[nodiscard]] Result<std::vector<IovaRange>> iova_ranges() override;
  [[nodiscard]] std::optional<std::uint32_t> dma_avail() override;

  /// Use `create`; public only for std::make_shared.
  Type1Backend(Sys& sys, LegacyContainer container) noexcept
      : IommuBackend(sys, IommuMode::type1), container_(std::move(container)) {}

 private:
  struct Info {
    std::vector<IovaRange> ranges;
    std::optional<std::uint32_t> dma_avail;
  };
  [[nodiscard]] Result<Info> get_info();

  LegacyContainer container_;
};

}  // namespace vfe::vfio
