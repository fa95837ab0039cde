#include "vfio/iommu_backend.hpp"

#include <fmt/format.h>

#include <cerrno>

#include "vfio/iommufd_backend.hpp"
#include "vfio/noiommu_backend.hpp"
#include "vfio/type1_backend.hpp"

namespace vfe::vfio {

Result<void> IommuBackend::claim(const Bdf& bdf) {
  const std::lock_guard lock(claims_mu_);
  if (!claimed_.insert(bdf).second) {
    return Error::from_errno(EBUSY, "open device",
                             bdf.to_string() + " is already open in this process; share that "
                                               "Device instead of opening it twice");
  }
  return ok();
}

void IommuBackend::release(const Bdf& bdf) noexcept {
  const std::lock_guard lock(claims_mu_);
  claimed_.erase(bdf);
}

std::string IommuBackend::outside_iova_ranges(std::uint64_t iova, std::uint64_t size) {
  const auto ranges = iova_ranges();
  if (!ranges || ranges->empty() || size == 0) {
    return "";
  }
  std::string list;
  for (const IovaRange& r : *ranges) {
    if (iova >= r.start && iova <= r.last && size - 1 <= r.last - iova) {
      return "";  // inside this range: the kernel refused it for another reason
    }
    list += fmt::format("{}[{:#x}, {:#x}]", list.empty() ? "" : ", ", r.start, r.last);
  }
  return fmt::format(": it is outside the IOVA ranges the IOMMU allows ({}); map inside them, "
                     "e.g. through a DmaSpace, which chooses the IOVA",
                     list);
}

Result<std::shared_ptr<IommuBackend>> make_backend(IommuMode mode, Sys& sys) {
  switch (mode) {
    case IommuMode::type1: {
      VFE_TRY_ASSIGN(auto b, Type1Backend::create(sys));
      return std::shared_ptr<IommuBackend>(std::move(b));
    }
    case IommuMode::iommufd: {
      VFE_TRY_ASSIGN(auto b, IommufdBackend::create(sys));
      return std::shared_ptr<IommuBackend>(std::move(b));
    }
    case IommuMode::noiommu: {
      VFE_TRY_ASSIGN(auto b, NoIommuBackend::create(sys));
      return std::shared_ptr<IommuBackend>(std::move(b));
    }
  }
  return Error::invalid("make IOMMU backend", "unknown mode");
}

}  // namespace vfe::vfio
