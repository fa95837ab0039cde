#include "vfio/iommufd_backend.hpp"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "vfio/holders.hpp"
#include "vfio/sysfs.hpp"
#include "vfio/uapi.hpp"

namespace vfe::vfio {

Result<std::shared_ptr<IommufdBackend>> IommufdBackend::create(Sys& sys) {
  Fd iommufd(sys.open("/dev/iommu", O_RDWR));
  if (!iommufd) {
    return Error::from_errno(errno, "open",
                             "/dev/iommu: the kernel needs CONFIG_IOMMUFD (Linux 6.6+), and you "
                             "need to be root or the node's owner; or use type1 mode");
  }
  iommu_ioas_alloc alloc{};
  alloc.size = sizeof(alloc);
  if (sys.ioctl_ptr(iommufd.get(), IOMMU_IOAS_ALLOC, &alloc) != 0) {
    return Error::from_errno(errno, "IOMMU_IOAS_ALLOC", "/dev/iommu");
  }
  return std::make_shared<IommufdBackend>(sys, std::move(iommufd), alloc.out_ioas_id);
}

namespace {

// Why VFIO_DEVICE_BIND_IOMMUFD failed. The kernel binds a device to one iommufd at a time and
// refuses another (EINVAL; EBUSY while its group is open through the legacy API): when some
// process other than this open holds the cdev or the group, that is the reason, and it is named.
Error bind_error(int err, const Bdf& bdf, const std::string& path, Fd& device) {
  std::string held;
  if (err == EINVAL || err == EBUSY) {
    device.reset();  // our own descriptor is no holder
    held = held_by(path);
    if (const auto group = iommu_group(bdf); held.empty() && group) {
      held = held_by("/dev/vfio/" + *group);
    }
  }
  if (held.empty()) {
    // Another user's /proc is not readable without privilege, so the holder may be unknown.
    return Error::from_errno(err, "VFIO_DEVICE_BIND_IOMMUFD",
                             err == EINVAL ? path + ": the device may be bound to an iommufd elsewhere already "
                                                    "(`fuser " + path + "` shows who holds it)"
                                           : path);
  }
  return Error::from_errno(EBUSY, "VFIO_DEVICE_BIND_IOMMUFD",
                           fmt::format("{} is in use: {}; a device is bound to one iommufd at a "
                                       "time, so close it there (in this process: open the "
                                       "device through the backend that has it)",
                                       bdf.to_string(), held));
}

}  // namespace

Result<Fd> IommufdBackend::open_device(const Bdf& bdf) {
  VFE_TRY(require_bound_to_vfio_pci(bdf));
  const auto cdev = vfio_cdev(bdf);
  if (!cdev) {
    return Error::not_supported("open VFIO device cdev",
                                fmt::format("{} has no /dev/vfio/devices node: the kernel lacks "
                                            "CONFIG_VFIO_DEVICE_CDEV; use type1 mode",
                                            bdf.to_string()));
  }
  const std::string path = "/dev/vfio/devices/" + *cdev;
  Fd device(sys().open(path.c_str(), O_RDWR));
  if (!device) {
    const int err = errno;
    const std::string held = err == EBUSY ? held_by(path) : "";
    return Error::from_errno(err, "open",
                             err != EBUSY    ? path + ": run as root or as the owner of the node"
                             : held.empty() ? path + " is already open in another process"
                                            : held);
  }
  vfio_device_bind_iommufd bind{};
  bind.argsz = sizeof(bind);
  bind.iommufd = iommufd_.get();
  if (sys().ioctl_ptr(device.get(), VFIO_DEVICE_BIND_IOMMUFD, &bind) != 0) {
    return bind_error(errno, bdf, path, device);
  }
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof(attach);
  attach.pt_id = ioas_id_;
  if (sys().ioctl_ptr(device.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", path);
  }
  return device;
}

Result<std::uint64_t> IommufdBackend::map(const void* vaddr, std::uint64_t size,
                                          std::uint64_t iova) {
  iommu_ioas_map req{};
  req.size = sizeof(req);
  req.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  req.ioas_id = ioas_id_;
  req.user_va = reinterpret_cast<std::uintptr_t>(vaddr);
  req.length = size;
  req.iova = iova;
  if (sys().ioctl_ptr(iommufd_.get(), IOMMU_IOAS_MAP, &req) == 0) {
    return iova;
  }
  const int err = errno;
  const std::string what = fmt::format("{} bytes at IOVA {:#x}", size, iova);
  return Error::from_errno(
      err, "IOMMU_IOAS_MAP",
      err == ENOMEM ? what + ": pinning it exceeds RLIMIT_MEMLOCK (or memory is short); raise "
                             "the memlock limit to cover all DMA memory"
      : err == EEXIST ? what + ": overlaps an existing mapping"
      : err == EINVAL ? what + outside_iova_ranges(iova, size)
                      : what);
}

Result<void> IommufdBackend::unmap(std::uint64_t iova, std::uint64_t size) {
  iommu_ioas_unmap req{};
  req.size = sizeof(req);
  req.ioas_id = ioas_id_;
  req.iova = iova;
  req.length = size;
  if (sys().ioctl_ptr(iommufd_.get(), IOMMU_IOAS_UNMAP, &req) != 0) {
    const int err = errno;
    return Error::from_errno(err, "IOMMU_IOAS_UNMAP",
                             fmt::format("{} bytes at IOVA {:#x}{}", size, iova,
                                         err == ENOENT ? ": nothing is mapped there (double "
                                                         "unmap?)"
                                                       : ""));
  }
  if (req.length != size) {
    return Error::from_errno(ENOENT, "IOMMU_IOAS_UNMAP",
                             fmt::format("{} bytes at IOVA {:#x}: only {} were mapped there", size,
                                         iova, req.length));
  }
  return ok();
}

Result<std::vector<IovaRange>> IommufdBackend::iova_ranges() {
  // Ask for the count first (the kernel answers EMSGSIZE with num_iovas set), then the ranges.
  std::vector<iommu_iova_range> ranges;
  iommu_ioas_iova_ranges req{};
  bool complete = false;
  for (int attempt = 0; attempt < 3 && !complete; ++attempt) {
    req = {};
    req.size = sizeof(req);
    req.ioas_id = ioas_id_;
    req.num_iovas = static_cast<std::uint32_t>(ranges.size());
    req.allowed_iovas = reinterpret_cast<std::uintptr_t>(ranges.data());
    if (sys().ioctl_ptr(iommufd_.get(), IOMMU_IOAS_IOVA_RANGES, &req) == 0) {
      complete = true;
    } else if (errno != EMSGSIZE) {
      return Error::from_errno(errno, "IOMMU_IOAS_IOVA_RANGES", "/dev/iommu");
    } else {
      ranges.resize(req.num_iovas);
    }
  }
  // Still EMSGSIZE: the buffer holds fewer ranges than there are, the rest zeros. Never report
  // those as usable IOVA windows.
  if (!complete) {
    return Error::from_errno(EMSGSIZE, "IOMMU_IOAS_IOVA_RANGES",
                             "the IOVA ranges kept changing while being read (devices attaching?); "
                             "try again");
  }
  ranges.resize(std::min<std::size_t>(ranges.size(), req.num_iovas));
  std::vector<IovaRange> out;
  for (const auto& r : ranges) {
    out.push_back({r.start, r.last});
  }
  std::sort(out.begin(), out.end(),
            [](const IovaRange& a, const IovaRange& b) { return a.start < b.start; });
  return out;
}

}  // namespace vfe::vfio
