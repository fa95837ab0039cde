#include "vfio/type1_backend.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "vfio/info_caps.hpp"
#include "vfio/uapi.hpp"

namespace vfe::vfio {

Result<std::shared_ptr<Type1Backend>> Type1Backend::create(Sys& sys) {
  VFE_TRY_ASSIGN(auto container, LegacyContainer::create(sys, VFIO_TYPE1v2_IOMMU));
  return std::make_shared<Type1Backend>(sys, std::move(container));
}

Result<Fd> Type1Backend::open_device(const Bdf& bdf) { return container_.open_device(bdf); }

Result<std::uint64_t> Type1Backend::map(const void* vaddr, std::uint64_t size,
                                        std::uint64_t iova) {
  vfio_iommu_type1_dma_map req{};
  req.argsz = sizeof(req);
  req.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  req.vaddr = reinterpret_cast<std::uintptr_t>(vaddr);
  req.iova = iova;
  req.size = size;
  if (sys().ioctl_ptr(container_.fd(), VFIO_IOMMU_MAP_DMA, &req) == 0) {
    return iova;
  }
  const int err = errno;
  const std::string what = fmt::format("{} bytes at IOVA {:#x}", size, iova);
  switch (err) {
    case ENOSPC:
      return Error::from_errno(err, "VFIO_IOMMU_MAP_DMA",
                               what + ": the kernel's limit on type1 mappings is reached "
                                      "(vfio_iommu_type1 dma_entry_limit); map fewer, larger "
                                      "buffers or raise the module parameter");
    case ENOMEM:
      return Error::from_errno(err, "VFIO_IOMMU_MAP_DMA",
                               what + ": pinning it exceeds RLIMIT_MEMLOCK (or memory is "
                                      "short); raise the memlock limit to cover all DMA memory");
    case EEXIST:
      return Error::from_errno(err, "VFIO_IOMMU_MAP_DMA", what + ": overlaps an existing mapping");
    case EINVAL:
      return Error::from_errno(err, "VFIO_IOMMU_MAP_DMA", what + outside_iova_ranges(iova, size));
    default:
      return Error::from_errno(err, "VFIO_IOMMU_MAP_DMA", what);
  }
}

Result<void> Type1Backend::unmap(std::uint64_t iova, std::uint64_t size) {
  vfio_iommu_type1_dma_unmap req{};
  req.argsz = sizeof(req);
  req.iova = iova;
  req.size = size;
  if (sys().ioctl_ptr(container_.fd(), VFIO_IOMMU_UNMAP_DMA, &req) != 0) {
    const int err = errno;
    // When the last device of the container's last group goes (a hot-unplug the driver gave the
    // device back for), the kernel detaches the group itself, and the container's IOMMU with it:
    // every mapping is gone and unpinned, and any IOMMU ioctl fails with EINVAL. Then nothing
    // can reach the memory any more, and the unmap is done.
    if (err == EINVAL) {
      if (const auto info = get_info(); !info && info.error().is(EINVAL)) {
        return ok();
      }
    }
    return Error::from_errno(err, "VFIO_IOMMU_UNMAP_DMA", fmt::format("{} bytes at IOVA {:#x}", size, iova));
  }
  // The kernel reports how much it unmapped; nothing means nothing was mapped there.
  if (req.size != size) {
    return Error::from_errno(ENOENT, "VFIO_IOMMU_UNMAP_DMA",
                             fmt::format("{} bytes at IOVA {:#x}: {} bytes were mapped there "
                                         "(double unmap, or not the range that was mapped?)",
                                         size, iova, req.size));
  }
  return ok();
}

Result<Type1Backend::Info> Type1Backend::get_info() {
  VFE_TRY_ASSIGN(const auto buf, get_info_with_caps(sys(), container_.fd(), VFIO_IOMMU_GET_INFO,
                                                  sizeof(vfio_iommu_type1_info), nullptr, 0,
                                                  "VFIO_IOMMU_GET_INFO", "type1 container"));
  vfio_iommu_type1_info info{};
  std::memcpy(&info, buf.data(), sizeof(info));
  Info out;
  if ((info.flags & VFIO_IOMMU_INFO_CAPS) == 0) {
    return out;
  }
  VFE_TRY_ASSIGN(const auto caps, walk_info_caps(buf, info.cap_offset));
  for (const InfoCap& cap : caps) {
    if (cap.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      vfio_iommu_type1_info_cap_iova_range head{};
      if (buf.size() - cap.offset < sizeof(head)) {
        return Error::invalid("VFIO_IOMMU_GET_INFO", "truncated IOVA range capability");
      }
      std::memcpy(&head, buf.data() + cap.offset, sizeof(head));
      const std::size_t first = cap.offset + sizeof(head);
      if ((buf.size() - first) / sizeof(vfio_iova_range) < head.nr_iovas) {
        return Error::invalid("VFIO_IOMMU_GET_INFO", "IOVA ranges run past the buffer");
      }
      for (std::uint32_t i = 0; i < head.nr_iovas; ++i) {
        vfio_iova_range r{};
        std::memcpy(&r, buf.data() + first + i * sizeof(r), sizeof(r));
        out.ranges.push_back({r.start, r.end});
      }
    } else if (cap.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
      vfio_iommu_type1_info_dma_avail avail{};
      if (buf.size() - cap.offset < sizeof(avail)) {
        return Error::invalid("VFIO_IOMMU_GET_INFO", "truncated DMA_AVAIL capability");
      }
      std::memcpy(&avail, buf.data() + cap.offset, sizeof(avail));
      out.dma_avail = avail.avail;
    }
  }
  std::sort(out.ranges.begin(), out.ranges.end(),
            [](const IovaRange& a, const IovaRange& b) { return a.start < b.start; });
  return out;
}

Result<std::vector<IovaRange>> Type1Backend::iova_ranges() {
  VFE_TRY_ASSIGN(auto info, get_info());
  if (info.ranges.empty()) {
    return Error::not_supported("VFIO_IOMMU_GET_INFO",
                                "the kernel reports no IOVA ranges (needs Linux 5.4 or later, "
                                "and a device attached)");
  }
  return std::move(info.ranges);
}

std::optional<std::uint32_t> Type1Backend::dma_avail() {
  auto info = get_info();
  return info ? info->dma_avail : std::nullopt;
}

}  // namespace vfe::vfio
