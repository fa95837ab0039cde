#pragma once
/// \file
/// `IommufdBackend`: /dev/iommu with one IO address space (IOAS) and VFIO device cdevs.

#include <mutex>

#include "vfio/iommu_backend.hpp"

namespace vfe::vfio {

/// Devices bound to one iommufd and attached to one IOAS, sharing its mappings
/// (IOMMU_IOAS_MAP / IOMMU_IOAS_UNMAP at fixed IOVAs). Linux 6.6+ with CONFIG_IOMMUFD and
/// CONFIG_VFIO_DEVICE_CDEV.
class IommufdBackend final : public IommuBackend {
 public:
  [[nodiscard]] static Result<std::shared_ptr<IommufdBackend>> create(Sys& sys);

  [[nodiscard]] Result<Fd> open_device(const Bdf& bdf) override;
  [[nodiscard]] Result<std::uint64_t> map(const void* vaddr, std::uint64_t size,
                                          std::uint64_t iova) override;
  [[nodiscard]] Result<void> unmap(std::uint64_t iova, std::uint64_t size) override;
  [[nodiscard]] Result<std::vector<IovaRange>> iova_ranges() override;
  [[nodiscard]] std::optional<std::uint32_t> dma_avail() override { return std::nullopt; }

  /// Use `create`; public only for std::make_shared.
  IommufdBackend(Sys& sys, Fd iommufd, std::uint32_t ioas_id) noexcept
      : IommuBackend(sys, IommuMode::iommufd), iommufd_(std::move(iommufd)), ioas_id_(ioas_id) {}

 private:
  Fd iommufd_;  // closing it destroys the IOAS and every mapping in it
  std::uint32_t ioas_id_;
};

}  // namespace vfe::vfio
