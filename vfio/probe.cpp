#include "vfio/probe.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "base/fd.hpp"
#include "vfio/sysfs.hpp"
#include "vfio/uapi.hpp"

namespace vfe::vfio {
namespace {

Result<Fd> open_node(const std::string& path, std::string_view remedy) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    return Error::from_errno(errno, "open", fmt::format("{}: {}", path, remedy));
  }
  return fd;
}

Result<void> require_vfio_pci(const Bdf& bdf) {
  VFE_TRY(require_device_exists(bdf));
  const auto driver = bound_driver(bdf);
  if (driver != "vfio-pci") {
    return Error::from_errno(
        ENODEV, "open PCI device",
        fmt::format("{} is bound to {}, not vfio-pci; bind it with `scripts/devbind.sh bind {}`",
                    bdf.to_string(), driver.value_or("no driver"), bdf.to_string()));
  }
  return ok();
}

// A group is viable when every function in it is bound to vfio-pci or to no driver (or is a
// bridge the kernel allows); name the ones that are not.
Error not_viable(const std::string& group) {
  std::string culprits;
  for (const Bdf& member : iommu_group_devices(group)) {
    const auto driver = bound_driver(member);
    if (driver && *driver != "vfio-pci" && *driver != "pcieport") {
      culprits += fmt::format("{}{} is bound to {}", culprits.empty() ? "" : ", ",
                              member.to_string(), *driver);
    }
  }
  return Error::from_errno(
      EBUSY, "VFIO_GROUP_GET_STATUS",
      fmt::format("IOMMU group {} is not viable: {}; bind every function of the group to vfio-pci "
                  "or unbind it", group, culprits.empty() ? "a member is in use" : culprits));
}

// Legacy path (type1 and noiommu): container, group, device fd. Keeps the fds in `keep` so the
// caller closes them in reverse order of opening (the device before the group before the
// container).
struct LegacyFds {
  Fd container;
  Fd group;
};

Result<Fd> open_legacy(const Bdf& bdf, IommuMode mode, LegacyFds& keep, ProbeInfo& info) {
  const auto group = iommu_group(bdf);
  if (!group) {
    return Error::from_errno(ENODEV, "open VFIO group",
                             fmt::format("{} has no IOMMU group: boot with the IOMMU on "
                                         "(intel_iommu=on / amd_iommu=on), or use noiommu mode",
                                         bdf.to_string()));
  }
  const bool noiommu = mode == IommuMode::noiommu;
  info.iommu_group = *group;
  info.vfio_path = fmt::format("/dev/vfio/{}{}", noiommu ? "noiommu-" : "", *group);
  VFE_TRY_ASSIGN(keep.container,
                 open_node("/dev/vfio/vfio", "load vfio (modprobe vfio-pci) and run as root"));
  const int api = ::ioctl(keep.container.get(), VFIO_GET_API_VERSION);
  if (api != VFIO_API_VERSION) {
    return Error::from_errno(ENOTSUP, "VFIO_GET_API_VERSION",
                             fmt::format("kernel VFIO API {} (expected {})", api, VFIO_API_VERSION));
  }
  const unsigned long iommu_type = noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU;
  if (::ioctl(keep.container.get(), VFIO_CHECK_EXTENSION, iommu_type) != 1) {
    return Error::not_supported(
        "VFIO_CHECK_EXTENSION",
        noiommu ? "no-IOMMU mode is off: load vfio with enable_unsafe_noiommu_mode=1 "
                  "(the kernel needs CONFIG_VFIO_NOIOMMU)"
                : "the kernel has no VFIO_TYPE1v2_IOMMU: load vfio_iommu_type1");
  }
  VFE_TRY_ASSIGN(keep.group, open_node(info.vfio_path, "is the device bound to vfio-pci, and are "
                                                        "you root or the node's owner?"));
  vfio_group_status status{.argsz = sizeof(vfio_group_status), .flags = 0};
  if (::ioctl(keep.group.get(), VFIO_GROUP_GET_STATUS, &status) != 0) {
    return Error::from_errno(errno, "VFIO_GROUP_GET_STATUS", info.vfio_path);
  }
  if ((status.flags & VFIO_GROUP_FLAGS_VIABLE) == 0) {
    return not_viable(*group);
  }
  int container_fd = keep.container.get();
  if (::ioctl(keep.group.get(), VFIO_GROUP_SET_CONTAINER, &container_fd) != 0) {
    return Error::from_errno(errno, "VFIO_GROUP_SET_CONTAINER", info.vfio_path);
  }
  if (::ioctl(keep.container.get(), VFIO_SET_IOMMU, iommu_type) != 0) {
    return Error::from_errno(errno, "VFIO_SET_IOMMU", noiommu ? "VFIO_NOIOMMU_IOMMU" : "TYPE1v2");
  }
  const std::string name = bdf.to_string();
  Fd device(::ioctl(keep.group.get(), VFIO_GROUP_GET_DEVICE_FD, name.c_str()));
  if (!device) {
    return Error::from_errno(errno, "VFIO_GROUP_GET_DEVICE_FD", name);
  }
  return device;
}

// iommufd path: bind the device cdev to /dev/iommu and attach it to a fresh IOAS.
Result<Fd> open_iommufd(const Bdf& bdf, Fd& iommufd, ProbeInfo& info) {
  info.iommu_group = iommu_group(bdf).value_or("");
  std::string cdev;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(sysfs_device_path(bdf) + "/vfio-dev", ec)) {
    cdev = e.path().filename().string();
  }
  if (cdev.empty()) {
    return Error::not_supported("open VFIO device cdev",
                                fmt::format("{} has no vfio-dev entry: the kernel lacks "
                                            "CONFIG_VFIO_DEVICE_CDEV (use type1 mode)",
                                            bdf.to_string()));
  }
  info.vfio_path = "/dev/vfio/devices/" + cdev;
  VFE_TRY_ASSIGN(iommufd, open_node("/dev/iommu", "the kernel needs CONFIG_IOMMUFD"));
  VFE_TRY_ASSIGN(Fd device, open_node(info.vfio_path, "run as root or as the node's owner"));
  vfio_device_bind_iommufd bind{};
  bind.argsz = sizeof(bind);
  bind.iommufd = iommufd.get();
  if (::ioctl(device.get(), VFIO_DEVICE_BIND_IOMMUFD, &bind) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_BIND_IOMMUFD", info.vfio_path);
  }
  iommu_ioas_alloc alloc{};
  alloc.size = sizeof(alloc);
  if (::ioctl(iommufd.get(), IOMMU_IOAS_ALLOC, &alloc) != 0) {
    return Error::from_errno(errno, "IOMMU_IOAS_ALLOC", "/dev/iommu");
  }
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof(attach);
  attach.pt_id = alloc.out_ioas_id;
  if (::ioctl(device.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", info.vfio_path);
  }
  return device;
}

Result<void> read_ids(int device, ProbeInfo& info) {
  vfio_device_info dev{};
  dev.argsz = sizeof(dev);
  if (::ioctl(device, VFIO_DEVICE_GET_INFO, &dev) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_GET_INFO", info.bdf.to_string());
  }
  if ((dev.flags & VFIO_DEVICE_FLAGS_PCI) == 0 || dev.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX) {
    return Error::not_supported("VFIO_DEVICE_GET_INFO", "not a PCI device");
  }
  info.num_regions = dev.num_regions;
  info.num_irqs = dev.num_irqs;
  vfio_region_info region{};
  region.argsz = sizeof(region);
  region.index = VFIO_PCI_CONFIG_REGION_INDEX;
  if (::ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &region) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_GET_REGION_INFO", "config space");
  }
  std::uint16_t ids[2] = {};
  const ssize_t n = ::pread(device, ids, sizeof(ids), static_cast<off_t>(region.offset));
  if (n != static_cast<ssize_t>(sizeof(ids))) {
    return Error::from_errno(n < 0 ? errno : EIO, "pread", "config space vendor/device ID");
  }
  info.vendor_id = ids[0];  // little-endian host, little-endian PCI
  info.device_id = ids[1];
  return ok();
}

}  // namespace

std::string_view to_string(IommuMode mode) noexcept {
  switch (mode) {
    case IommuMode::type1:
      return "type1";
    case IommuMode::iommufd:
      return "iommufd";
    case IommuMode::noiommu:
      return "noiommu";
  }
  return "?";
}

Result<IommuMode> parse_iommu_mode(std::string_view text) {
  for (const auto m : {IommuMode::type1, IommuMode::iommufd, IommuMode::noiommu}) {
    if (text == to_string(m)) {
      return m;
    }
  }
  return Error::invalid("parse IOMMU mode",
                        fmt::format("'{}' is not a mode; use type1, iommufd or noiommu", text));
}

Result<IommuMode> select_iommu_mode(const Bdf& bdf) {
  if (const char* forced = std::getenv(kIommuModeEnv); forced != nullptr && *forced != '\0') {
    auto mode = parse_iommu_mode(forced);
    if (!mode) {
      return Error::invalid(kIommuModeEnv, std::move(mode).error().detail);
    }
    return mode;
  }
  std::error_code ec;
  const bool has_cdev =
      std::filesystem::is_directory(sysfs_device_path(bdf) + "/vfio-dev", ec) &&
      std::filesystem::exists("/dev/iommu", ec);
  return has_cdev ? IommuMode::iommufd : IommuMode::type1;
}

Result<ProbeInfo> probe(const Bdf& bdf, IommuMode mode) {
  VFE_TRY(require_vfio_pci(bdf));
  ProbeInfo info;
  info.bdf = bdf;
  info.mode = mode;
  info.numa_node = numa_node(bdf);
  // Declared before the device fd so they outlive it: C++ destroys in reverse order.
  LegacyFds legacy;
  Fd iommufd;
  Result<Fd> device = mode == IommuMode::iommufd ? open_iommufd(bdf, iommufd, info)
                                                 : open_legacy(bdf, mode, legacy, info);
  if (!device) {
    return std::move(device).error();
  }
  VFE_TRY(read_ids(device->get(), info));
  return info;
}

}  // namespace vfe::vfio
