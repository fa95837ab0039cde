#include "vfio/probe.hpp"

#include <fmt/format.h>

#include <cerrno>

#include "vfio/device.hpp"
#include "vfio/sysfs.hpp"
#include "vfio/uapi.hpp"

namespace vfe::vfio {
namespace {

// The node a device is reached through in `mode`.
std::string vfio_path(const Bdf& bdf, IommuMode mode) {
  switch (mode) {
    case IommuMode::type1:
      return "/dev/vfio/" + iommu_group(bdf).value_or("?");
    case IommuMode::noiommu:
      return "/dev/vfio/noiommu-" + iommu_group(bdf).value_or("?");
    case IommuMode::iommufd:
      return "/dev/vfio/devices/" + vfio_cdev(bdf).value_or("?");
  }
  return "?";
}

}  // namespace

Result<ProbeInfo> probe(const Bdf& bdf, IommuMode mode) {
  VFE_TRY(require_bound_to_vfio_pci(bdf));  // before anything is opened
  VFE_TRY_ASSIGN(auto backend, make_backend(mode));
  VFE_TRY_ASSIGN(const Device dev, Device::open(bdf, std::move(backend)));
  VFE_TRY_ASSIGN(const RegionInfo config, dev.region_info(VFIO_PCI_CONFIG_REGION_INDEX));
  std::uint16_t ids[2] = {};
  const ssize_t n = dev.sys().pread(dev.fd(), ids, sizeof(ids), static_cast<off_t>(config.offset));
  if (n != static_cast<ssize_t>(sizeof(ids))) {
    return Error::from_errno(n < 0 ? errno : EIO, "pread", "config space vendor/device ID");
  }
  ProbeInfo info;
  info.bdf = bdf;
  info.mode = mode;
  info.vendor_id = ids[0];  // PCI is little-endian, and so is every host vfio-engine runs on
  info.device_id = ids[1];
  info.numa_node = numa_node(bdf);
  info.iommu_group = iommu_group(bdf).value_or("");
  info.vfio_path = vfio_path(bdf, mode);
  info.num_regions = dev.num_regions();
  info.num_irqs = dev.num_irqs();
  return info;
}

}  // namespace vfe::vfio
