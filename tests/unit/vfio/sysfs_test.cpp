#include "vfio/sysfs.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "tests/unit/support/fake_sysfs.hpp"
#include "vfio/probe.hpp"

namespace vfe::vfio {
namespace {
namespace fs = std::filesystem;

using test::FakeSysfs;

const Bdf kNvme{0, 0, 4, 0};
const Bdf kOther{0, 0, 5, 0};

TEST_F(FakeSysfs, ReadsDriverGroupNodeAndIds) {
  add_device("0000:00:04.0", "vfio-pci", "7", 1);
  EXPECT_TRUE(require_device_exists(kNvme));
  EXPECT_EQ(bound_driver(kNvme), "vfio-pci");
  EXPECT_EQ(iommu_group(kNvme), "7");
  EXPECT_EQ(numa_node(kNvme), 1);
  EXPECT_EQ(read_hex_attr(kNvme, "vendor"), 0x1b36U);
  EXPECT_EQ(read_hex_attr(kNvme, "device"), std::nullopt);
  EXPECT_EQ(iommu_group_devices("7"), std::vector<Bdf>{kNvme});
}

TEST_F(FakeSysfs, UnboundDeviceWithoutGroupOrNode) {
  add_device("0000:00:05.0", nullptr, nullptr, -1);
  EXPECT_EQ(bound_driver(kOther), std::nullopt);
  EXPECT_EQ(iommu_group(kOther), std::nullopt);
  EXPECT_EQ(numa_node(kOther), -1);
}

TEST_F(FakeSysfs, MissingDeviceSaysHowToListDevices) {
  const auto r = require_device_exists(kNvme);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENODEV));
  EXPECT_NE(r.error().message().find("0000:00:04.0: no such PCI function"), std::string::npos)
      << r.error().message();
}

TEST_F(FakeSysfs, ProbeRefusesADeviceBoundToAnotherDriver) {
  add_device("0000:00:04.0", "nvme", "7", 0);
  const auto r = probe(kNvme, IommuMode::type1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail,
            "0000:00:04.0 is bound to nvme, not vfio-pci; bind it with "
            "`scripts/devbind.sh bind 0000:00:04.0`");
}

TEST_F(FakeSysfs, ProbeRefusesAnUnboundDevice) {
  add_device("0000:00:04.0", nullptr, "7", 0);
  const auto r = probe(kNvme, IommuMode::iommufd);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("is bound to no driver, not vfio-pci"), std::string::npos);
}

TEST_F(FakeSysfs, ModeSelectionHonoursTheEnvironment) {
  add_device("0000:00:04.0", "vfio-pci", "7", 0);
  ::setenv(kIommuModeEnv, "noiommu", 1);
  EXPECT_EQ(select_iommu_mode(kNvme).value(), IommuMode::noiommu);
  ::setenv(kIommuModeEnv, "vfio", 1);
  const auto bad = select_iommu_mode(kNvme);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(),
            "VFE_IOMMU_MODE: 'vfio' is not a mode; use type1, iommufd or noiommu (Invalid argument)");
  ::unsetenv(kIommuModeEnv);
  // No vfio-dev folder in the fake tree: never iommufd, and never noiommu unasked.
  EXPECT_EQ(select_iommu_mode(kNvme).value(), IommuMode::type1);
}

TEST_F(FakeSysfs, ListsDevicesBoundToVfioPci) {
  add_device("0000:00:04.0", "vfio-pci", "7", 0);
  fs::create_directory_symlink(root_ / "devices/pci0000:00/0000:00:04.0",
                               root_ / "bus/pci/drivers/vfio-pci/0000:00:04.0");
  fs::create_directories(root_ / "bus/pci/drivers/vfio-pci/module");
  EXPECT_EQ(vfio_pci_devices(), std::vector<Bdf>{kNvme});
}

TEST(IommuMode, ParsesTheThreeModes) {
  EXPECT_EQ(parse_iommu_mode("type1").value(), IommuMode::type1);
  EXPECT_EQ(parse_iommu_mode("iommufd").value(), IommuMode::iommufd);
  EXPECT_EQ(parse_iommu_mode("noiommu").value(), IommuMode::noiommu);
  const auto bad = parse_iommu_mode("vfio");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().detail, "'vfio' is not a mode; use type1, iommufd or noiommu");
}

}  // namespace
}  // namespace vfe::vfio
