#pragma once
/// \file
/// `FakeSysfs`: a scratch sysfs tree for host unit tests of what vfio/ reads from /sys.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace vfe::test {

/// A test fixture owning a scratch sysfs tree in /tmp, pointed to by VFE_SYSFS_ROOT from SetUp to
/// TearDown (so tests using it must not run in parallel threads of one process). Devices are
/// added with the links the kernel makes: bus/pci/devices/BDF, its driver and iommu_group links,
/// and the group's devices folder. A scratch /proc beside it (VFE_PROC_ROOT) starts with no
/// processes, so no real process on the host shows up as holding a VFIO node.
class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vfe-sysfs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ::setenv("VFE_SYSFS_ROOT", root_.c_str(), 1);
    std::filesystem::create_directories(root_ / "proc");
    ::setenv("VFE_PROC_ROOT", (root_ / "proc").c_str(), 1);
    std::filesystem::create_directories(root_ / "bus/pci/drivers/vfio-pci");
    std::filesystem::create_directories(root_ / "bus/pci/drivers/nvme");
  }
  void TearDown() override {
    ::unsetenv("VFE_SYSFS_ROOT");
    ::unsetenv("VFE_PROC_ROOT");
    std::filesystem::remove_all(root_);
  }

  /// A function `bdf` ("0000:00:04.0") bound to `driver` (nullptr: none), in IOMMU group `group`
  /// (nullptr: none), on NUMA node `node`.
  void add_device(const std::string& bdf, const char* driver, const char* group, int node = 0) {
    namespace fs = std::filesystem;
    const fs::path dev = root_ / "devices/pci0000:00" / bdf;
    fs::create_directories(dev);
    fs::create_directories(root_ / "bus/pci/devices");
    fs::create_directory_symlink(dev, root_ / "bus/pci/devices" / bdf);
    if (driver != nullptr) {
      fs::create_directories(root_ / "bus/pci/drivers" / driver);
      fs::create_directory_symlink(root_ / "bus/pci/drivers" / driver, dev / "driver");
    }
    if (group != nullptr) {
      const fs::path g = root_ / "kernel/iommu_groups" / group;
      fs::create_directories(g / "devices");
      fs::create_directory_symlink(g, dev / "iommu_group");
      fs::create_directory_symlink(dev, g / "devices" / bdf);
    }
    std::ofstream(dev / "numa_node") << node << "\n";
    std::ofstream(dev / "vendor") << "0x1b36\n";
  }

  /// Names a group: "vfio-noiommu" makes it a no-IOMMU group.
  void set_group_name(const std::string& group, const std::string& name) {
    std::ofstream(root_ / "kernel/iommu_groups" / group / "name") << name << "\n";
  }

  /// Gives `bdf` a VFIO device cdev ("vfio3": /dev/vfio/devices/vfio3).
  void add_cdev(const std::string& bdf, const std::string& name) {
    std::filesystem::create_directories(root_ / "devices/pci0000:00" / bdf / "vfio-dev" / name);
  }

  /// A process `pid` named `comm` whose descriptor `fd` is open on `target` ("/dev/vfio/7").
  void add_holder(int pid, const std::string& comm, int fd, const std::string& target) {
    const std::filesystem::path p = root_ / "proc" / std::to_string(pid);
    std::filesystem::create_directories(p / "fd");
    std::ofstream(p / "comm") << comm << "\n";
    std::filesystem::create_symlink(target, p / "fd" / std::to_string(fd));
  }

  std::filesystem::path root_;
};

}  // namespace vfe::test
