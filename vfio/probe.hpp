#pragma once
/// \file
/// `probe()`: open one PCI function through VFIO the way an IOMMU mode implies and report what
/// it is. Used by the VM rig's first test and by the demo's smoke program. It exercises the whole
/// open path (container or iommufd, group viability, device fd, config space) and then closes
/// everything again; drivers hold a device open with `Device` instead.

#include <cstdint>
#include <string>

#include "base/result.hpp"
#include "vfio/bdf.hpp"
#include "vfio/iommu_mode.hpp"

namespace vfe::vfio {

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
