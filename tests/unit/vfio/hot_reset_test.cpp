#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_vfio.hpp"
#include "vfio/device.hpp"

namespace vfe::vfio {
namespace {

using vfe::test::error_of;
using test::fail;
using test::kDevice;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and VFIO_DEVICE_PCI_HOT_RESET as the kernel answers them:
// the functions on the bus to be reset, each with its group; ENOSPC with the count when the
// caller's buffer has no room for them all.
class HotResetTest : public test::VfioFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(VfioFixture::SetUp());
    sys_.on_ptr(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, [this](int, void* arg) {
      auto* info = static_cast<vfio_pci_hot_reset_info*>(arg);
      info_argsz_.push_back(info->argsz);
      info->flags = 0;
      info->count = static_cast<std::uint32_t>(affected_.size());
      if (info->argsz < sizeof(*info) + affected_.size() * sizeof(vfio_pci_dependent_device)) {
        return fail(ENOSPC);
      }
      if (!affected_.empty()) {
        std::memcpy(info->devices, affected_.data(), affected_.size() * sizeof(affected_[0]));
      }
      return 0;
    });
    sys_.on_ptr(VFIO_DEVICE_PCI_HOT_RESET, [this](int, void* arg) {
      vfio_pci_hot_reset head{};
      std::memcpy(&head, arg, sizeof(head));
      reset_argsz_ = head.argsz;
      reset_groups_.clear();
      for (std::uint32_t i = 0; i < head.count; ++i) {
        std::int32_t fd = -1;
        std::memcpy(&fd, static_cast<std::uint8_t*>(arg) + sizeof(head) + i * sizeof(fd),
                    sizeof(fd));
        reset_groups_.push_back(sys_.path_of(fd));
      }
      return 0;
    });
  }

  // A function on the bus, in `group`.
  void affects(std::uint32_t group, std::uint8_t devfn) {
    affected_.push_back({group, 0, 0, devfn});
  }

  std::vector<vfio_pci_dependent_device> affected_;
  std::vector<std::uint32_t> info_argsz_;
  std::uint32_t reset_argsz_ = 0;
  std::vector<std::string> reset_groups_;
};

TEST_F(HotResetTest, PassesTheFdOfEachAffectedGroupOnce) {
  add_device("0000:00:04.1", "vfio-pci", "7");
  add_device("0000:00:05.0", "vfio-pci", "8");
  affects(7, 0x20);
  affects(7, 0x21);
  affects(8, 0x28);
  VFE_ASSERT_OK_AND_ASSIGN(auto backend, type1());
  auto dev = Device::open(kDevice, backend);
  ASSERT_TRUE(dev) << dev.error().message();
  ASSERT_TRUE(backend->open_device(Bdf{0, 0, 5, 0}));
  const auto r = dev->hot_reset();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_THAT(info_argsz_, ElementsAre(sizeof(vfio_pci_hot_reset_info),
                                       sizeof(vfio_pci_hot_reset_info) +
                                           3 * sizeof(vfio_pci_dependent_device)));
  EXPECT_THAT(reset_groups_, ElementsAre("/dev/vfio/7", "/dev/vfio/8"));
  EXPECT_EQ(reset_argsz_, sizeof(vfio_pci_hot_reset) + 2 * sizeof(std::int32_t));
}

TEST_F(HotResetTest, AGroupThisProcessHasNotOpenedIsNamed) {
  affects(7, 0x20);
  affects(9, 0x30);
  auto dev = open_device();
  ASSERT_TRUE(dev);
  const auto r = dev->hot_reset();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EPERM));
  EXPECT_EQ(r.error().detail,
            "the bus reset also resets IOMMU group 9, which this process has not opened; open "
            "its devices through the same backend first");
  EXPECT_EQ(sys_.count(VFIO_DEVICE_PCI_HOT_RESET), 0U);
}

TEST_F(HotResetTest, NoResettableBusIsNotSupported) {
  sys_.on_ptr(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, [](int, void*) { return fail(ENODEV); });
  auto dev = open_device();
  ASSERT_TRUE(dev);
  const auto r = dev->hot_reset();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOTSUP));
  EXPECT_EQ(r.error().detail,
            "0000:00:04.0 has no bus the kernel can reset (no reset-capable bridge above it)");
  EXPECT_EQ(sys_.count(VFIO_DEVICE_PCI_HOT_RESET), 0U);
}

TEST_F(HotResetTest, KernelErrorsAreReported) {
  affects(7, 0x20);
  auto dev = open_device();
  ASSERT_TRUE(dev);
  sys_.on_ptr(VFIO_DEVICE_PCI_HOT_RESET, [](int, void*) { return fail(EBUSY); });
  EXPECT_EQ(error_of(dev->hot_reset()).message(),
            "VFIO_DEVICE_PCI_HOT_RESET: 0000:00:04.0 (Device or resource busy)");
  sys_.on_ptr(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, [](int, void*) { return fail(EINVAL); });
  EXPECT_EQ(error_of(dev->hot_reset()).message(),
            "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: 0000:00:04.0 (Invalid argument)");
}

TEST_F(HotResetTest, ACountThatKeepsGrowingIsAnError) {
  sys_.on_ptr(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, [this](int, void* arg) {
    auto* info = static_cast<vfio_pci_hot_reset_info*>(arg);
    info->count = static_cast<std::uint32_t>(info_argsz_.size() + 1);
    info_argsz_.push_back(info->argsz);
    return fail(ENOSPC);
  });
  auto dev = open_device();
  ASSERT_TRUE(dev);
  EXPECT_TRUE(error_of(dev->hot_reset()).is(ENOSPC));
  EXPECT_EQ(info_argsz_.size(), 2U);
  EXPECT_EQ(sys_.count(VFIO_DEVICE_PCI_HOT_RESET), 0U);
}

TEST_F(HotResetTest, IommufdPassesNoGroupFds) {
  add_cdev(test::kDeviceName, "vfio3");
  sys_.on_ptr(IOMMU_IOAS_ALLOC, [](int, void*) { return 0; });
  sys_.on_ptr(VFIO_DEVICE_BIND_IOMMUFD, [](int, void*) { return 0; });
  sys_.on_ptr(VFIO_DEVICE_ATTACH_IOMMUFD_PT, [](int, void*) { return 0; });
  affects(7, 0x20);
  auto dev = Device::open(test::kDeviceName, {IommuMode::iommufd, &sys_});
  ASSERT_TRUE(dev) << dev.error().message();
  ASSERT_TRUE(dev->hot_reset());
  EXPECT_THAT(reset_groups_, IsEmpty());
  EXPECT_EQ(reset_argsz_, sizeof(vfio_pci_hot_reset));
}

}  // namespace
}  // namespace vfe::vfio
