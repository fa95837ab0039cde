// The first integration tests: run inside the rig's guest (tests/vm/run.sh), against the real
// kernel's VFIO. For each device the rig bound to vfio-pci they open the VFIO path the IOMMU mode
// implies and check the IDs read through VFIO against sysfs. The guest's init passes
//   VFE_VM_MODE     type1 | iommufd | noiommu
//   VFE_VM_DEVICES  "nvme=0000:00:02.0 edu=0000:00:03.0 ..."
//   VFE_VM_VFIO_PATHS "0000:00:02.0=/dev/vfio/2 ..." (the node each device opens through, as the
//                   rig's shell worked it out from sysfs)
// Tests are registered at run time, one per device, so a failure names the device.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "vfio/probe.hpp"
#include "vfio/sysfs.hpp"
#include "tests/vm/vm_env.hpp"

namespace {
using vfe::vfio::Bdf;
using vfe::vfio::IommuMode;
using vfe::vmtest::pairs_from_env;
using vfe::vmtest::VmDevice;

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Opens the device the way the mode implies and compares what VFIO reads with sysfs.
void check_device_opens(const VmDevice& dev, IommuMode mode) {
  const auto info = vfe::vfio::probe(dev.bdf, mode);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->bdf, dev.bdf);
  EXPECT_EQ(info->vendor_id, vfe::vfio::read_hex_attr(dev.bdf, "vendor"));
  EXPECT_EQ(info->device_id, vfe::vfio::read_hex_attr(dev.bdf, "device"));
  EXPECT_GT(info->num_regions, 7U);  // BARs 0-5, ROM, config space at least
  EXPECT_EQ(info->mode, mode);
  EXPECT_EQ(info->vfio_path, pairs_from_env("VFE_VM_VFIO_PATHS")[dev.bdf.to_string()]);
  const char* prefix = mode == IommuMode::type1     ? "/dev/vfio/"
                       : mode == IommuMode::noiommu ? "/dev/vfio/noiommu-"
                                                    : "/dev/vfio/devices/vfio";
  EXPECT_EQ(info->vfio_path.rfind(prefix, 0), 0U) << info->vfio_path;
}

class DeviceOpens : public ::testing::Test {
 public:
  DeviceOpens(VmDevice dev, IommuMode mode) : dev_(std::move(dev)), mode_(mode) {}
  void TestBody() override { check_device_opens(dev_, mode_); }

 private:
  VmDevice dev_;
  IommuMode mode_;
};

}  // namespace

// The rig put the machine together as documented: every device present, the NUMA placement
// visible, and the kernel's VFIO in the mode the rig claims.
TEST(Rig, HasTheDocumentedDevices) {
  std::map<std::string, int> count;
  int node1_nvme = 0;
  for (const auto& d : vfe::vmtest::devices()) {
    ++count[d.kind];
    if (d.kind == "nvme" && vfe::vfio::numa_node(d.bdf) == 1) {
      ++node1_nvme;
    }
  }
  EXPECT_EQ(count["nvme"], 2);
  EXPECT_EQ(count["edu"], 1);
  EXPECT_EQ(count["e1000e"], 2);
  EXPECT_EQ(node1_nvme, 1) << "the NVMe behind the pxb-pcie expander should be on node 1";
}

TEST(Rig, KernelOffersTheMode) {
  const IommuMode mode = vfe::vmtest::mode();
  const auto devs = vfe::vmtest::devices();
  ASSERT_FALSE(devs.empty());
  const std::string group = vfe::vfio::iommu_group(devs.front().bdf).value_or("");
  ASSERT_FALSE(group.empty());
  EXPECT_TRUE(exists("/dev/vfio/vfio"));
  switch (mode) {
    case IommuMode::type1:
      EXPECT_TRUE(exists("/dev/vfio/" + group));
      EXPECT_FALSE(exists("/dev/vfio/noiommu-" + group));
      break;
    case IommuMode::iommufd:
      EXPECT_TRUE(exists("/dev/iommu"));
      EXPECT_TRUE(std::filesystem::exists(vfe::vfio::sysfs_device_path(devs.front().bdf) + "/vfio-dev"));
      break;
    case IommuMode::noiommu:
      EXPECT_TRUE(exists("/dev/vfio/noiommu-" + group));
      EXPECT_FALSE(exists("/sys/class/iommu/dmar0"));
      break;
  }
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const IommuMode mode = vfe::vmtest::mode();
  for (const auto& dev : vfe::vmtest::devices()) {
    std::string name = dev.kind + "_" + dev.bdf.to_string();
    for (char& c : name) {
      c = (c == ':' || c == '.') ? '_' : c;
    }
    ::testing::RegisterTest("DeviceOpens", name.c_str(), nullptr, nullptr, __FILE__, __LINE__,
                            [dev, mode]() -> ::testing::Test* { return new DeviceOpens(dev, mode); });
  }
  return RUN_ALL_TESTS();
}
