#pragma once
/// \file
/// vfio-engine's own definitions of the iommufd and VFIO cdev ABI it uses, for systems whose
/// kernel headers predate them (Debian 12's linux-libc-dev is 6.1; both arrived in 6.6). Written
/// from the documented ABI of Linux 6.12 (include/uapi/linux/iommufd.h and vfio.h), in a
/// namespace of their own so that tests/uapi/uapi_check.cpp can compare every size, offset and
/// request number with the real headers of the rig's 6.12 tree. Use them through vfio/uapi.hpp.

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

namespace vfe::vfio::own {

inline constexpr unsigned kIommufdType = ';';
inline constexpr unsigned kCmdDestroy = 0x80;
inline constexpr unsigned kCmdIoasAlloc = 0x81;
inline constexpr unsigned kCmdIoasIovaRanges = 0x84;
inline constexpr unsigned kCmdIoasMap = 0x85;
inline constexpr unsigned kCmdIoasUnmap = 0x86;

struct iommu_destroy {
  __u32 size;
  __u32 id;
};

struct iommu_ioas_alloc {
  __u32 size;
  __u32 flags;
  __u32 out_ioas_id;
};

struct iommu_iova_range {
  __aligned_u64 start;
  __aligned_u64 last;
};

struct iommu_ioas_iova_ranges {
  __u32 size;
  __u32 ioas_id;
  __u32 num_iovas;
  __u32 __reserved;
  __aligned_u64 allowed_iovas;
  __aligned_u64 out_iova_alignment;
};

inline constexpr __u32 kIoasMapFixedIova = 1U << 0;
inline constexpr __u32 kIoasMapWriteable = 1U << 1;
inline constexpr __u32 kIoasMapReadable = 1U << 2;

struct iommu_ioas_map {
  __u32 size;
  __u32 flags;
  __u32 ioas_id;
  __u32 __reserved;
  __aligned_u64 user_va;
  __aligned_u64 length;
  __aligned_u64 iova;
};

struct iommu_ioas_unmap {
  __u32 size;
  __u32 ioas_id;
  __aligned_u64 iova;
  __aligned_u64 length;
};

// The iommufd commands are _IO(type, nr): the struct's size travels in its first field.
inline constexpr unsigned long kIommuDestroy = _IO(kIommufdType, kCmdDestroy);
inline constexpr unsigned long kIommuIoasAlloc = _IO(kIommufdType, kCmdIoasAlloc);
inline constexpr unsigned long kIommuIoasIovaRanges = _IO(kIommufdType, kCmdIoasIovaRanges);
inline constexpr unsigned long kIommuIoasMap = _IO(kIommufdType, kCmdIoasMap);
inline constexpr unsigned long kIommuIoasUnmap = _IO(kIommufdType, kCmdIoasUnmap);

struct vfio_device_bind_iommufd {
  __u32 argsz;
  __u32 flags;
  __s32 iommufd;
  __u32 out_devid;
};

struct vfio_device_attach_iommufd_pt {
  __u32 argsz;
  __u32 flags;
  __u32 pt_id;
};

struct vfio_device_detach_iommufd_pt {
  __u32 argsz;
  __u32 flags;
};

inline constexpr unsigned long kVfioDeviceBindIommufd = _IO(VFIO_TYPE, VFIO_BASE + 18);
inline constexpr unsigned long kVfioDeviceAttachIommufdPt = _IO(VFIO_TYPE, VFIO_BASE + 19);
inline constexpr unsigned long kVfioDeviceDetachIommufdPt = _IO(VFIO_TYPE, VFIO_BASE + 20);

}  // namespace vfe::vfio::own
