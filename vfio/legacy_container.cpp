#include "vfio/legacy_container.hpp"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "vfio/holders.hpp"
#include "vfio/sysfs.hpp"
#include "vfio/uapi.hpp"

namespace vfe::vfio {
namespace {

// Why a group node did not open; for EBUSY, who holds it: the group node, or (Linux 6.6+, where
// a device open through its cdev makes its group busy) the device's cdev.
Error group_open_error(int err, const std::string& path, const Bdf& bdf) {
  if (err == EPERM && path.find("/noiommu-") != std::string::npos) {
    // The kernel refuses a no-IOMMU group to anyone without CAP_SYS_RAWIO, owner or not.
    return Error::from_errno(err, "open",
                             path + ": a no-IOMMU group opens only with CAP_SYS_RAWIO (the device "
                                    "can reach all memory): run as root; owning the node is not "
                                    "enough");
  }
  if (err != EBUSY) {
    return Error::from_errno(err, "open", path + ": run as root or as the owner of the node");
  }
  if (const std::string held = held_by(path); !held.empty()) {
    return Error::from_errno(err, "open",
                             held + ": a VFIO group is open in one place at a time; close it there (in "
                                    "this process: open the device through the backend that has it)");
  }
  const auto cdev = vfio_cdev(bdf);
  if (const std::string held = cdev ? held_by("/dev/vfio/devices/" + *cdev) : ""; !held.empty()) {
    return Error::from_errno(err, "open", path + ": " + bdf.to_string() + " is open through its cdev: " + held);
  }
  return Error::from_errno(err, "open",
                           path + ": the group is already open in another process (`fuser " + path +
                               "` shows which)");
}

}  // namespace

Result<LegacyContainer> LegacyContainer::create(Sys& sys, unsigned long iommu_type) {
  const bool noiommu = iommu_type == VFIO_NOIOMMU_IOMMU;
  Fd container(sys.open("/dev/vfio/vfio", O_RDWR));
  if (!container) {
    return Error::from_errno(errno, "open",
                             "/dev/vfio/vfio: load vfio-pci (modprobe vfio-pci) and run as root "
                             "or as the owner of the node");
  }
  const int api = sys.ioctl_val(container.get(), VFIO_GET_API_VERSION, 0);
  if (api != VFIO_API_VERSION) {
    return Error::not_supported("VFIO_GET_API_VERSION",
                                fmt::format("the kernel speaks VFIO API {}, vfio-engine {}", api,
                                            VFIO_API_VERSION));
  }
  if (sys.ioctl_val(container.get(), VFIO_CHECK_EXTENSION, iommu_type) != 1) {
    return Error::not_supported(
        "VFIO_CHECK_EXTENSION",
        noiommu ? "no-IOMMU mode is off: load vfio with enable_unsafe_noiommu_mode=1 (the kernel "
                  "needs CONFIG_VFIO_NOIOMMU)"
                : "the kernel has no VFIO_TYPE1v2_IOMMU: load vfio_iommu_type1, or use iommufd");
  }
  return LegacyContainer(sys, std::move(container), iommu_type);
}

LegacyContainer::LegacyContainer(LegacyContainer&& other) noexcept
    : sys_(other.sys_),
      iommu_type_(other.iommu_type_),
      iommu_set_(other.iommu_set_),
      container_(std::move(other.container_)),
      groups_(std::move(other.groups_)) {}

Result<int> LegacyContainer::attach_group(const Bdf& bdf) {
  const bool noiommu = iommu_type_ == VFIO_NOIOMMU_IOMMU;
  const auto group = iommu_group(bdf);
  if (!group) {
    return Error::from_errno(ENODEV, "open VFIO group",
                             fmt::format("{} has no IOMMU group: boot with the IOMMU on "
                                         "(intel_iommu=on or amd_iommu=on)",
                                         bdf.to_string()));
  }
  if (is_noiommu_group(bdf) != noiommu) {
    return noiommu ? Error::from_errno(EPERM, "open VFIO group",
                                       fmt::format("{} is behind an IOMMU (group {}): use type1 "
                                                   "or iommufd mode, not no-IOMMU",
                                                   bdf.to_string(), *group))
                   : Error::from_errno(
                         EPERM, "open VFIO group",
                         fmt::format("{} has only a no-IOMMU group ({}): without an IOMMU the "
                                     "device can DMA to any memory in the machine. To accept "
                                     "that, choose noiommu mode explicitly (VFE_IOMMU_MODE="
                                     "noiommu or DeviceOptions::mode); better, turn the IOMMU on",
                                     bdf.to_string(), *group));
  }
  if (auto it = groups_.find(*group); it != groups_.end()) {
    return it->second.get();
  }
  const std::string path = fmt::format("/dev/vfio/{}{}", noiommu ? "noiommu-" : "", *group);
  Fd fd(sys_->open(path.c_str(), O_RDWR));
  if (!fd) {
    return group_open_error(errno, path, bdf);
  }
  vfio_group_status status{.argsz = sizeof(vfio_group_status), .flags = 0};
  if (sys_->ioctl_ptr(fd.get(), VFIO_GROUP_GET_STATUS, &status) != 0) {
    return Error::from_errno(errno, "VFIO_GROUP_GET_STATUS", path);
  }
  if ((status.flags & VFIO_GROUP_FLAGS_VIABLE) == 0) {
    return group_not_viable(*group);
  }
  int container_fd = container_.get();
  if (sys_->ioctl_ptr(fd.get(), VFIO_GROUP_SET_CONTAINER, &container_fd) != 0) {
    return Error::from_errno(errno, "VFIO_GROUP_SET_CONTAINER", path);
  }
  if (!iommu_set_) {
    if (sys_->ioctl_val(container_.get(), VFIO_SET_IOMMU, iommu_type_) != 0) {
      return Error::from_errno(errno, "VFIO_SET_IOMMU", noiommu ? "no-IOMMU" : "type1v2");
    }
    iommu_set_ = true;
  }
  const int raw = fd.get();
  groups_.emplace(*group, std::move(fd));
  return raw;
}

Result<std::vector<int>> LegacyContainer::group_fds(const std::vector<std::uint32_t>& groups) {
  const std::lock_guard lock(mu_);
  std::vector<int> fds;
  for (const std::uint32_t g : groups) {
    const auto it = groups_.find(std::to_string(g));
    if (it == groups_.end()) {
      return Error::from_errno(EPERM, "VFIO_DEVICE_PCI_HOT_RESET",
                               fmt::format("the bus reset also resets IOMMU group {}, which this "
                                           "process has not opened; open its devices through the "
                                           "same backend first",
                                           g));
    }
    if (std::find(fds.begin(), fds.end(), it->second.get()) == fds.end()) {
      fds.push_back(it->second.get());
    }
  }
  return fds;
}

Result<Fd> LegacyContainer::open_device(const Bdf& bdf) {
  VFE_TRY(require_bound_to_vfio_pci(bdf));
  const std::lock_guard lock(mu_);
  VFE_TRY_ASSIGN(const int group_fd, attach_group(bdf));
  const std::string name = bdf.to_string();
  Fd device(sys_->ioctl_ptr(group_fd, VFIO_GROUP_GET_DEVICE_FD, const_cast<char*>(name.c_str())));
  if (!device) {
    const int err = errno;
    return Error::from_errno(err, "VFIO_GROUP_GET_DEVICE_FD",
                             err == EBUSY ? name + " is already open (in this process or another)" : name);
  }
  return device;
}

}  // namespace vfe::vfio
