#pragma once
/// \file
/// `probe()`: open one PCI function through VFIO the way an IOMMU mode implies and report what
/// it is. Used by the VM rig's first test and by the demo's smoke program. It exercises the whole
/// open path (container or iommufd, group viability, device fd, config space) and then closes
/// everything again; drivers hold a device open with `Device` instead.

#include <cstdint>
#include <string>
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

/// What `probe()` found.
struct ProbeInfo {
  Bdf bdf;
  IommuMode mode = IommuMode::type1;
  std::uint16_t vendor_id = 0;  ///< read from config space through VFIO
  std::uint16_t device_id = 0;  ///< read from config space through VFIO
  int numa_node = -1;           ///< from sysfs; -1 when unknown
  std::string iommu_group;      ///< group number; empty in iommufd mode if the kernel has none
  std::string vfio_path;        ///< the node opened: "/dev/vfio/7", "/dev/vfio/devices/vfio0", ...
  std::uint32_t num_regions = 0;
  std::uint32_t num_irqs = 0;
};

/// Opens `bdf` in `mode`, reads its vendor and device IDs from config space through the device
/// fd, and closes everything (device, then group or IOAS, then container or iommufd). Fails with
/// an actionable error when the function does not exist, is not bound to vfio-pci, its group is
/// not viable (naming the devices that make it so), or the kernel lacks the mode.
[[nodiscard]] Result<ProbeInfo> probe(const Bdf& bdf, IommuMode mode);

}  // namespace vfe::vfio
