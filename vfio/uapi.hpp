#pragma once
/// \file
/// The kernel ABI vfio-engine uses: <linux/vfio.h> plus the iommufd and VFIO cdev definitions.
///
/// When the system headers have iommufd and the cdev ioctls they are used as they are;
/// otherwise (Debian 12) vfio/uapi_own.hpp stands in, under the kernel's own names, so the code
/// reads the same either way.

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#else
#include "vfio/uapi_own.hpp"
#define VFE_OWN_IOMMUFD_UAPI 1
using vfe::vfio::own::iommu_destroy;
using vfe::vfio::own::iommu_ioas_alloc;
using vfe::vfio::own::iommu_ioas_iova_ranges;
using vfe::vfio::own::iommu_ioas_map;
using vfe::vfio::own::iommu_ioas_unmap;
using vfe::vfio::own::iommu_iova_range;
#define IOMMU_DESTROY (vfe::vfio::own::kIommuDestroy)
#define IOMMU_IOAS_ALLOC (vfe::vfio::own::kIommuIoasAlloc)
#define IOMMU_IOAS_IOVA_RANGES (vfe::vfio::own::kIommuIoasIovaRanges)
#define IOMMU_IOAS_MAP (vfe::vfio::own::kIommuIoasMap)
#define IOMMU_IOAS_UNMAP (vfe::vfio::own::kIommuIoasUnmap)
#define IOMMU_IOAS_MAP_FIXED_IOVA (vfe::vfio::own::kIoasMapFixedIova)
#define IOMMU_IOAS_MAP_WRITEABLE (vfe::vfio::own::kIoasMapWriteable)
#define IOMMU_IOAS_MAP_READABLE (vfe::vfio::own::kIoasMapReadable)
#endif

#ifndef VFIO_DEVICE_BIND_IOMMUFD
#include "vfio/uapi_own.hpp"
#define VFE_OWN_VFIO_CDEV_UAPI 1
using vfe::vfio::own::vfio_device_attach_iommufd_pt;
using vfe::vfio::own::vfio_device_bind_iommufd;
using vfe::vfio::own::vfio_device_detach_iommufd_pt;
#define VFIO_DEVICE_BIND_IOMMUFD (vfe::vfio::own::kVfioDeviceBindIommufd)
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT (vfe::vfio::own::kVfioDeviceAttachIommufdPt)
#define VFIO_DEVICE_DETACH_IOMMUFD_PT (vfe::vfio::own::kVfioDeviceDetachIommufdPt)
#endif
