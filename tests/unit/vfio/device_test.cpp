#include "vfio/device.hpp"

#include <gmock/gmock.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_vfio.hpp"

namespace vfe::vfio {

// For ElementsAre on RegionInfo::areas (found by argument-dependent lookup).
bool operator==(const SparseArea& a, const SparseArea& b) {
  return a.offset == b.offset && a.size == b.size;
}

namespace {

using vfe::test::error_of;
using test::CapChain;
using test::fail;
using test::kDevice;
using test::kDeviceName;
using test::pack;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class DeviceTest : public test::VfioFixture {};

constexpr std::uint32_t kRw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
constexpr std::uint32_t kRwMmap = kRw | VFIO_REGION_INFO_FLAG_MMAP;

// BAR 0 of a device whose MSI-X table sits in the middle page of three: two mmap-able areas
// around it (and an empty area the kernel may report, which means nothing).
CapChain sparse_bar_caps(std::uint32_t nr_areas = 3) {
  return CapChain()
      .add(VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1,
           pack(nr_areas, std::uint32_t{0}, vfio_region_sparse_mmap_area{0, 0x1000},
                vfio_region_sparse_mmap_area{0x2000, 0},
                vfio_region_sparse_mmap_area{0x3000, 0x1000}))
      .add(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1);
}

TEST_F(DeviceTest, OpenValidatesBeforeAnyKernelCall) {
  const DeviceOptions opts{IommuMode::type1, &sys_};
  const auto bad = Device::open("04.0", opts);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(EINVAL));
  const auto missing = Device::open("0000:00:09.0", opts);
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().detail, HasSubstr("0000:00:09.0: no such PCI function"));
  add_device("0000:00:05.0", nullptr, "8");
  const auto unbound = Device::open("0000:00:05.0", opts);
  ASSERT_FALSE(unbound);
  EXPECT_THAT(unbound.error().detail, HasSubstr("is bound to no driver, not vfio-pci"));
  EXPECT_TRUE(sys_.untouched());
}

TEST_F(DeviceTest, OpenWithoutBackendIsRefused) {
  const auto r = Device::open(kDevice, nullptr);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "open device: no IOMMU backend given (Invalid argument)");
}

TEST_F(DeviceTest, OpenReadsTheDeviceInfo) {
  const auto dev = Device::open(kDeviceName, {IommuMode::type1, &sys_});
  ASSERT_TRUE(dev) << dev.error().message();
  EXPECT_EQ(dev->bdf(), kDevice);
  EXPECT_EQ(sys_.path_of(dev->fd()), device_path(kDeviceName));
  EXPECT_EQ(dev->num_regions(), 9U);
  EXPECT_EQ(dev->num_irqs(), 5U);
  EXPECT_TRUE(dev->reset_supported());
  EXPECT_EQ(&dev->sys(), &sys_);
}

TEST_F(DeviceTest, ReleaseLeavesTheDescriptorNumberPointingAtDevNull) {
  auto dev = Device::open(kDeviceName, {IommuMode::type1, &sys_});
  ASSERT_TRUE(dev) << dev.error().message();
  const int fd = dev->fd();
  EXPECT_FALSE(dev->released());
  ASSERT_TRUE(dev->release());
  EXPECT_TRUE(dev->released());
  EXPECT_EQ(dev->fd(), fd) << "the number stays valid, so it cannot be reused for another file";
  EXPECT_EQ(std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd)), "/dev/null");
  EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_TRUE(dev->release()) << "idempotent";
  // What would now reach /dev/null (ENOTTY, or a write that "succeeds") answers ENODEV instead.
  const auto calls = sys_.ioctls().size();
  EXPECT_EQ(error_of(dev->irq_info(VFIO_PCI_MSIX_IRQ_INDEX)).message(),
            "VFIO_DEVICE_GET_IRQ_INFO: 0000:00:04.0 was given back to the kernel (hot-unplug or unbind); "
            "destroy what was made from it and open it again once it is back (No such device)");
  EXPECT_TRUE(error_of(dev->region_info(0)).is(ENODEV));
  EXPECT_TRUE(error_of(dev->reset()).is(ENODEV));
  EXPECT_TRUE(error_of(dev->hot_reset()).is(ENODEV));
  EXPECT_EQ(sys_.ioctls().size(), calls) << "no ioctl reaches the descriptor";
}

TEST_F(DeviceTest, ASecondOpenIsBusyAndAReopenAfterCloseWorks) {
  VFE_ASSERT_OK_AND_ASSIGN(auto backend, type1());
  {
    const auto first = Device::open(kDevice, backend);
    ASSERT_TRUE(first) << first.error().message();
    const auto second = Device::open(kDevice, backend);
    ASSERT_FALSE(second);
    EXPECT_TRUE(second.error().is(EBUSY));
    EXPECT_EQ(second.error().detail,
              "0000:00:04.0 is already open in this process; share that Device instead of "
              "opening it twice");
    EXPECT_EQ(device_fd_names_.size(), 1U);  // refused before asking the kernel
  }
  const auto again = Device::open(kDevice, backend);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(device_fd_names_.size(), 2U);
}

TEST_F(DeviceTest, ANonPciDeviceIsRefusedAndItsClaimReleased) {
  VFE_ASSERT_OK_AND_ASSIGN(auto backend, type1());
  device_flags_ = VFIO_DEVICE_FLAGS_PLATFORM;
  const auto r = Device::open(kDevice, backend);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOTSUP));
  EXPECT_EQ(r.error().detail, "0000:00:04.0 is not a PCI device as VFIO sees it");
  device_flags_ = VFIO_DEVICE_FLAGS_PCI;
  num_regions_ = VFIO_PCI_CONFIG_REGION_INDEX;  // no config region
  EXPECT_TRUE(error_of(Device::open(kDevice, backend)).is(ENOTSUP));
  num_regions_ = VFIO_PCI_NUM_REGIONS;
  EXPECT_TRUE(Device::open(kDevice, backend));
}

TEST_F(DeviceTest, DeviceInfoFailureIsReported) {
  sys_.on_ptr(VFIO_DEVICE_GET_INFO, [](int, void*) { return fail(EIO); });
  EXPECT_EQ(error_of(open_device()).message(),
            "VFIO_DEVICE_GET_INFO: 0000:00:04.0 (Input/output error)");
}

TEST_F(DeviceTest, RegionInfoReadsSparseAreasAndMsixMappable) {
  add_region(0, kRwMmap, 0x4000, 0x10000, sparse_bar_caps());
  const auto dev = open_device();
  ASSERT_TRUE(dev);
  const auto info = dev->region_info(0);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->index, 0U);
  EXPECT_EQ(info->flags, kRwMmap | VFIO_REGION_INFO_FLAG_CAPS);
  EXPECT_EQ(info->size, 0x4000U);
  EXPECT_EQ(info->offset, 0x10000U);
  EXPECT_TRUE(info->readable());
  EXPECT_TRUE(info->writable());
  EXPECT_TRUE(info->mappable());
  EXPECT_TRUE(info->msix_mappable);
  EXPECT_THAT(info->areas, ElementsAre(SparseArea{0, 0x1000}, SparseArea{0x3000, 0x1000}));
  EXPECT_EQ(sys_.count(VFIO_DEVICE_GET_REGION_INFO), 2U);  // again with room for the chain
}

TEST_F(DeviceTest, RegionWithoutCapabilitiesIsOneAreaOrNone) {
  add_region(0, kRwMmap, 0x4000, 0);
  add_region(2, kRw, 0x100, 0x20000);
  add_region(7, kRw, 0x1000, 0x70000);
  add_region(1, kRwMmap, 0, 0);  // an unimplemented BAR
  const auto dev = open_device();
  ASSERT_TRUE(dev);
  const auto bar0 = dev->region_info(0);
  ASSERT_TRUE(bar0);
  EXPECT_FALSE(bar0->msix_mappable);
  EXPECT_THAT(bar0->areas, ElementsAre(SparseArea{0, 0x4000}));
  EXPECT_EQ(sys_.count(VFIO_DEVICE_GET_REGION_INFO), 1U);
  EXPECT_THAT(dev->region_info(2)->areas, IsEmpty());
  EXPECT_FALSE(dev->region_info(7)->mappable());
  EXPECT_THAT(dev->region_info(1)->areas, IsEmpty());
}

TEST_F(DeviceTest, SparseAreasPastTheBufferAreRefused) {
  add_region(0, kRwMmap, 0x4000, 0, sparse_bar_caps(100));
  const auto dev = open_device();
  ASSERT_TRUE(dev);
  const auto r = dev->region_info(0);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().detail, "sparse mmap areas run past the buffer");
}

TEST_F(DeviceTest, CyclicRegionCapabilitiesAreRefused) {
  sys_.on_ptr(VFIO_DEVICE_GET_REGION_INFO, [](int, void* arg) {
    vfio_region_info info{};
    info.flags = kRwMmap;
    info.size = 0x4000;
    // A chain whose one capability names itself as the next.
    const std::uint32_t self = sizeof(vfio_region_info);
    return test::reply_info(arg, info, VFIO_REGION_INFO_FLAG_CAPS,
                            pack(std::uint16_t{VFIO_REGION_INFO_CAP_MSIX_MAPPABLE},
                                 std::uint16_t{1}, self));
  });
  const auto dev = open_device();
  ASSERT_TRUE(dev);
  EXPECT_THAT(error_of(dev->region_info(0)).detail, HasSubstr("loops back to offset 0x20"));
}

TEST_F(DeviceTest, RegionIndexOutOfRangeAsksNoKernel) {
  const auto dev = open_device();
  ASSERT_TRUE(dev);
  const auto r = dev->region_info(9);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().detail, "0000:00:04.0 has 9 regions, not 10");
  EXPECT_EQ(sys_.count(VFIO_DEVICE_GET_REGION_INFO), 0U);
}

TEST_F(DeviceTest, RegionInfoFailureNamesTheRegion) {
  const auto dev = open_device();
  ASSERT_TRUE(dev);
  EXPECT_EQ(error_of(dev->region_info(3)).message(),
            "VFIO_DEVICE_GET_REGION_INFO: 0000:00:04.0 region 3 (Invalid argument)");
}

TEST_F(DeviceTest, IrqInfoReportsFlagsAndCount) {
  add_irq(VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 65);
  const auto dev = open_device();
  ASSERT_TRUE(dev);
  const auto info = dev->irq_info(VFIO_PCI_MSIX_IRQ_INDEX);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->index, VFIO_PCI_MSIX_IRQ_INDEX);
  EXPECT_EQ(info->flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE);
  EXPECT_EQ(info->count, 65U);
  EXPECT_EQ(error_of(dev->irq_info(VFIO_PCI_ERR_IRQ_INDEX)).message(),
            "VFIO_DEVICE_GET_IRQ_INFO: 0000:00:04.0 irq index 3 (Invalid argument)");
}

TEST_F(DeviceTest, ResetWithoutSupportIsNotSupportedAndAsksNoKernel) {
  device_flags_ = VFIO_DEVICE_FLAGS_PCI;
  auto dev = open_device();
  ASSERT_TRUE(dev);
  EXPECT_FALSE(dev->reset_supported());
  const auto r = dev->reset();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOTSUP));
  EXPECT_EQ(r.error().detail, "0000:00:04.0 offers no function reset (no FLR or PM reset)");
  EXPECT_EQ(sys_.count(VFIO_DEVICE_RESET), 0U);
}

TEST_F(DeviceTest, ResetGoesToTheDeviceFd) {
  std::vector<std::string> reset_on;
  sys_.on_val(VFIO_DEVICE_RESET, [&](int fd, unsigned long) {
    reset_on.push_back(sys_.path_of(fd));
    return reset_on.size() == 1 ? 0 : fail(EIO);
  });
  auto dev = open_device();
  ASSERT_TRUE(dev);
  EXPECT_TRUE(dev->reset());
  EXPECT_EQ(error_of(dev->reset()).message(),
            "VFIO_DEVICE_RESET: 0000:00:04.0 (Input/output error)");
  EXPECT_THAT(reset_on, ElementsAre(device_path(kDeviceName), device_path(kDeviceName)));
}

}  // namespace
}  // namespace vfe::vfio
