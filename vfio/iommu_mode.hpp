#pragma once
/// \file
/// `IommuMode` and how one is chosen for a device.

#include <string_view>

#include "base/result.hpp"
#include "vfio/bdf.hpp"

namespace vfe::vfio {

/// How a device reaches the IOMMU.
enum class IommuMode {
  type1,    ///< legacy container (/dev/vfio/vfio) + group (/dev/vfio/N), VFIO_TYPE1v2_IOMMU
  iommufd,  ///< /dev/iommu + device cdev (/dev/vfio/devices/vfioN), one IOAS
  noiommu,  ///< /dev/vfio/noiommu-N, no translation or isolation: explicit opt-in only
};

[[nodiscard]] std::string_view to_string(IommuMode mode) noexcept;
/// "type1", "iommufd" or "noiommu"; anything else is an EINVAL error listing the choices.
[[nodiscard]] Result<IommuMode> parse_iommu_mode(std::string_view text);

/// The environment variable that forces a mode for every device: type1, iommufd or noiommu.
inline constexpr const char* kIommuModeEnv = "VFE_IOMMU_MODE";

/// The mode to use for `bdf` when the caller did not choose one: $VFE_IOMMU_MODE when set (an
/// invalid value is an error, not a silent fallback), else iommufd when /dev/iommu and the
/// device's VFIO cdev exist, else type1. Never noiommu unless asked for by name.
[[nodiscard]] Result<IommuMode> select_iommu_mode(const Bdf& bdf);

}  // namespace vfe::vfio
