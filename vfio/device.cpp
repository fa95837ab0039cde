#include "vfio/device.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vfio/info_caps.hpp"
#include "vfio/iommu_mode.hpp"
#include "vfio/sysfs.hpp"
#include "vfio/uapi.hpp"

namespace vfe::vfio {

bool RegionInfo::readable() const noexcept { return (flags & VFIO_REGION_INFO_FLAG_READ) != 0; }
bool RegionInfo::writable() const noexcept { return (flags & VFIO_REGION_INFO_FLAG_WRITE) != 0; }
bool RegionInfo::mappable() const noexcept { return (flags & VFIO_REGION_INFO_FLAG_MMAP) != 0; }

Result<Device> Device::open(std::string_view bdf_text, const DeviceOptions& options) {
  VFE_TRY_ASSIGN(const Bdf bdf, Bdf::parse(bdf_text));
  // Bad input is reported before anything is opened.
  VFE_TRY(require_bound_to_vfio_pci(bdf));
  IommuMode mode{};
  if (options.mode) {
    mode = *options.mode;
  } else {
    VFE_TRY_ASSIGN(mode, select_iommu_mode(bdf));
  }
  Sys& sys = options.sys != nullptr ? *options.sys : linux_sys();
  VFE_TRY_ASSIGN(auto backend, make_backend(mode, sys));
  return open(bdf, std::move(backend));
}

Result<Device> Device::open(const Bdf& bdf, std::shared_ptr<IommuBackend> backend) {
  if (!backend) {
    return Error::invalid("open device", "no IOMMU backend given");
  }
  VFE_TRY(backend->claim(bdf));
  Claim claim(backend.get(), bdf);
  VFE_TRY_ASSIGN(Fd fd, backend->open_device(bdf));
  Device dev(std::move(backend), std::move(claim), std::move(fd), bdf);
  VFE_TRY(dev.read_info());
  return dev;
}

Result<void> Device::read_info() {
  vfio_device_info info{};
  info.argsz = sizeof(info);
  if (sys().ioctl_ptr(fd(), VFIO_DEVICE_GET_INFO, &info) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_GET_INFO", bdf_.to_string());
  }
  if ((info.flags & VFIO_DEVICE_FLAGS_PCI) == 0 || info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX) {
    return Error::not_supported("VFIO_DEVICE_GET_INFO",
                                bdf_.to_string() + " is not a PCI device as VFIO sees it");
  }
  num_regions_ = info.num_regions;
  num_irqs_ = info.num_irqs;
  reset_supported_ = (info.flags & VFIO_DEVICE_FLAGS_RESET) != 0;
  return ok();
}

namespace {

// Fills `out.areas` from the region's capability chain (sparse mmap, MSI-X mappable).
Result<void> parse_region_caps(std::span<const std::uint8_t> buf, std::uint32_t cap_offset,
                               RegionInfo& out) {
  VFE_TRY_ASSIGN(const auto caps, walk_info_caps(buf, cap_offset));
  for (const InfoCap& cap : caps) {
    if (cap.id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) {
      out.msix_mappable = true;
    } else if (cap.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
      vfio_region_info_cap_sparse_mmap head{};
      if (buf.size() - cap.offset < sizeof(head)) {
        return Error::invalid("VFIO_DEVICE_GET_REGION_INFO", "truncated sparse mmap capability");
      }
      std::memcpy(&head, buf.data() + cap.offset, sizeof(head));
      const std::size_t first = cap.offset + sizeof(head);
      if ((buf.size() - first) / sizeof(vfio_region_sparse_mmap_area) < head.nr_areas) {
        return Error::invalid("VFIO_DEVICE_GET_REGION_INFO", "sparse mmap areas run past the buffer");
      }
      out.areas.clear();
      for (std::uint32_t i = 0; i < head.nr_areas; ++i) {
        vfio_region_sparse_mmap_area a{};
        std::memcpy(&a, buf.data() + first + i * sizeof(a), sizeof(a));
        if (a.size != 0) {
          out.areas.push_back({a.offset, a.size});
        }
      }
    }
  }
  return ok();
}

}  // namespace

Result<RegionInfo> Device::region_info(std::uint32_t index) const {
  if (index >= num_regions_) {
    return Error::invalid("VFIO_DEVICE_GET_REGION_INFO",
                          fmt::format("{} has {} regions, not {}", bdf_.to_string(), num_regions_,
                                      index + 1));
  }
  if (released()) {
    return released_error("VFIO_DEVICE_GET_REGION_INFO");
  }
  const auto set_index = [](void* req, std::uint32_t i) { static_cast<vfio_region_info*>(req)->index = i; };
  VFE_TRY_ASSIGN(const auto buf,
                 get_info_with_caps(sys(), fd(), VFIO_DEVICE_GET_REGION_INFO, sizeof(vfio_region_info),
                                    set_index, index, "VFIO_DEVICE_GET_REGION_INFO",
                                    fmt::format("{} region {}", bdf_.to_string(), index)));
  vfio_region_info info{};
  std::memcpy(&info, buf.data(), sizeof(info));
  RegionInfo out{index, info.flags, info.size, info.offset, false, {}};
  if (out.mappable() && out.size != 0) {
    out.areas.push_back({0, out.size});  // replaced by the sparse areas if there are any
  }
  if ((info.flags & VFIO_REGION_INFO_FLAG_CAPS) != 0 && info.cap_offset != 0) {
    VFE_TRY(parse_region_caps(buf, info.cap_offset, out));
  }
  return out;
}

Result<IrqInfo> Device::irq_info(std::uint32_t index) const {
  if (released()) {
    return released_error("VFIO_DEVICE_GET_IRQ_INFO");
  }
  vfio_irq_info info{};
  info.argsz = sizeof(info);
  info.index = index;
  if (sys().ioctl_ptr(fd(), VFIO_DEVICE_GET_IRQ_INFO, &info) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_GET_IRQ_INFO",
                             fmt::format("{} irq index {}", bdf_.to_string(), index));
  }
  return IrqInfo{index, info.flags, info.count};
}

Result<void> Device::reset() {
  if (!reset_supported_) {
    return Error::not_supported("VFIO_DEVICE_RESET",
                                bdf_.to_string() + " offers no function reset (no FLR or PM reset)");
  }
  if (released()) {
    return released_error("VFIO_DEVICE_RESET");
  }
  if (sys().ioctl_val(fd(), VFIO_DEVICE_RESET, 0) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_RESET", bdf_.to_string());
  }
  return ok();
}

Error Device::released_error(const char* op) const {
  return Error::from_errno(ENODEV, op,
                           bdf_.to_string() + " was given back to the kernel (hot-unplug or unbind); destroy "
                                              "what was made from it and open it again once it is back");
}

Result<void> Device::release() {
  if (released()) {
    return ok();
  }
  // Not through Sys: /dev/null and dup3 are no VFIO calls, and with a fake the fd is a real
  // placeholder descriptor all the same.
  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) {
    return Error::from_errno(errno, "release device", "open /dev/null");
  }
  if (::dup3(null.get(), fd_.get(), O_CLOEXEC) < 0) {
    return Error::from_errno(errno, "release device", fmt::format("{}: dup3 over the device fd", bdf_.to_string()));
  }
  released_->store(true, std::memory_order_release);
  return ok();
}

}  // namespace vfe::vfio

namespace vfe::vfio {

Result<void> Device::hot_reset() {
  if (released()) {
    return released_error("VFIO_DEVICE_PCI_HOT_RESET");
  }
  // Which groups (legacy) or devices (cdev) the bus reset touches: ask with room for none, then
  // again with room for the count the kernel returned.
  std::vector<std::uint8_t> buf(sizeof(vfio_pci_hot_reset_info));
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto* info = reinterpret_cast<vfio_pci_hot_reset_info*>(buf.data());
    info->argsz = static_cast<std::uint32_t>(buf.size());
    if (sys().ioctl_ptr(fd(), VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info) == 0) {
      break;
    }
    if (errno != ENOSPC || attempt == 1) {
      const int err = errno;
      return Error::from_errno(err == ENODEV ? ENOTSUP : err, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
                               err == ENODEV ? bdf_.to_string() + " has no bus the kernel can reset "
                                                                  "(no reset-capable bridge above it)"
                                             : bdf_.to_string());
    }
    buf.resize(sizeof(vfio_pci_hot_reset_info) + info->count * sizeof(vfio_pci_dependent_device));
  }
  vfio_pci_hot_reset_info head{};
  std::memcpy(&head, buf.data(), sizeof(head));
  std::vector<std::uint32_t> groups;
  for (std::uint32_t i = 0; i < head.count; ++i) {
    vfio_pci_dependent_device d{};
    std::memcpy(&d, buf.data() + sizeof(head) + i * sizeof(d), sizeof(d));
    groups.push_back(d.group_id);
  }
  VFE_TRY_ASSIGN(const std::vector<int> fds, backend_->hot_reset_group_fds(groups));
  std::vector<std::uint8_t> req(sizeof(vfio_pci_hot_reset) + fds.size() * sizeof(std::int32_t));
  vfio_pci_hot_reset reset{};
  reset.argsz = static_cast<std::uint32_t>(req.size());
  reset.count = static_cast<std::uint32_t>(fds.size());
  std::memcpy(req.data(), &reset, sizeof(reset));
  for (std::size_t i = 0; i < fds.size(); ++i) {
    const std::int32_t fd32 = fds[i];
    std::memcpy(req.data() + sizeof(reset) + i * sizeof(fd32), &fd32, sizeof(fd32));
  }
  if (sys().ioctl_ptr(fd(), VFIO_DEVICE_PCI_HOT_RESET, req.data()) != 0) {
    return Error::from_errno(errno, "VFIO_DEVICE_PCI_HOT_RESET", bdf_.to_string());
  }
  return ok();
}

}  // namespace vfe::vfio
