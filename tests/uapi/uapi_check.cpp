// Checks vfio-engine's own iommufd / VFIO cdev definitions (vfio/uapi_own.hpp) against the real
// kernel headers of the rig's 6.12 tree, which this file is compiled against
// (-DVFE_KERNEL_HEADERS=.../include; see tests/CMakeLists.txt). Everything is checked at compile
// time; the program only reports what it compared.
#include <linux/iommufd.h>
#include <linux/vfio.h>

#include <cstddef>
#include <cstdio>

#include "vfio/uapi_own.hpp"

namespace own = vfe::vfio::own;

#define SAME_STRUCT(name)                                                     \
  static_assert(sizeof(own::name) == sizeof(::name), #name ": size differs"); \
  static_assert(alignof(own::name) == alignof(::name), #name ": alignment differs")
#define SAME_FIELD(name, field)                                          \
  static_assert(offsetof(own::name, field) == offsetof(::name, field) && \
                    sizeof(own::name::field) == sizeof(::name::field),   \
                #name "." #field " differs")

SAME_STRUCT(iommu_destroy);
SAME_FIELD(iommu_destroy, id);
SAME_STRUCT(iommu_ioas_alloc);
SAME_FIELD(iommu_ioas_alloc, flags);
SAME_FIELD(iommu_ioas_alloc, out_ioas_id);
SAME_STRUCT(iommu_iova_range);
SAME_FIELD(iommu_iova_range, start);
SAME_FIELD(iommu_iova_range, last);
SAME_STRUCT(iommu_ioas_iova_ranges);
SAME_FIELD(iommu_ioas_iova_ranges, ioas_id);
SAME_FIELD(iommu_ioas_iova_ranges, num_iovas);
SAME_FIELD(iommu_ioas_iova_ranges, allowed_iovas);
SAME_FIELD(iommu_ioas_iova_ranges, out_iova_alignment);
SAME_STRUCT(iommu_ioas_map);
SAME_FIELD(iommu_ioas_map, flags);
SAME_FIELD(iommu_ioas_map, ioas_id);
SAME_FIELD(iommu_ioas_map, user_va);
SAME_FIELD(iommu_ioas_map, length);
SAME_FIELD(iommu_ioas_map, iova);
SAME_STRUCT(iommu_ioas_unmap);
SAME_FIELD(iommu_ioas_unmap, ioas_id);
SAME_FIELD(iommu_ioas_unmap, iova);
SAME_FIELD(iommu_ioas_unmap, length);
SAME_STRUCT(vfio_device_bind_iommufd);
SAME_FIELD(vfio_device_bind_iommufd, iommufd);
SAME_FIELD(vfio_device_bind_iommufd, out_devid);
SAME_FIELD(vfio_device_attach_iommufd_pt, pt_id);
SAME_STRUCT(vfio_device_detach_iommufd_pt);

// The 6.12 attach struct is the same for the fields vfio-engine sets; newer kernels may append
// fields (the kernel accepts the shorter argsz).
static_assert(sizeof(own::vfio_device_attach_iommufd_pt) <= sizeof(::vfio_device_attach_iommufd_pt));

static_assert(own::kIommuDestroy == IOMMU_DESTROY);
static_assert(own::kIommuIoasAlloc == IOMMU_IOAS_ALLOC);
static_assert(own::kIommuIoasIovaRanges == IOMMU_IOAS_IOVA_RANGES);
static_assert(own::kIommuIoasMap == IOMMU_IOAS_MAP);
static_assert(own::kIommuIoasUnmap == IOMMU_IOAS_UNMAP);
static_assert(own::kIoasMapFixedIova == IOMMU_IOAS_MAP_FIXED_IOVA);
static_assert(own::kIoasMapWriteable == IOMMU_IOAS_MAP_WRITEABLE);
static_assert(own::kIoasMapReadable == IOMMU_IOAS_MAP_READABLE);
static_assert(own::kVfioDeviceBindIommufd == VFIO_DEVICE_BIND_IOMMUFD);
static_assert(own::kVfioDeviceAttachIommufdPt == VFIO_DEVICE_ATTACH_IOMMUFD_PT);
static_assert(own::kVfioDeviceDetachIommufdPt == VFIO_DEVICE_DETACH_IOMMUFD_PT);

int main() {
  std::puts("vfio/uapi_own.hpp matches the kernel headers: 8 structs, 11 request numbers and flags");
  return 0;
}
