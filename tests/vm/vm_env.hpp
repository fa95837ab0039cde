#pragma once
// What the rig tells the tests running in the guest (tests/vm/guest/init):
//   VFE_VM_MODE        type1 | iommufd | noiommu
//   VFE_VM_DEVICES     "nvme=0000:00:02.0 edu=0000:00:03.0 ..."
//   VFE_VM_VFIO_PATHS  "0000:00:02.0=/dev/vfio/2 ..." (each device's node, worked out from sysfs)
// The tests run as root and, through tests/vm/guest/nonroot_check.sh, again as an unprivileged
// user; a test that needs root for itself (not for the library) skips there, saying what for.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vfio/bdf.hpp"
#include "vfio/iommu_mode.hpp"

namespace vfe::vmtest {

struct VmDevice {
  std::string kind;  // nvme, edu, e1000e
  vfio::Bdf bdf;
};

/// The mode the rig booted; exits the process with a message when run outside the rig.
vfio::IommuMode mode();
/// Every device the rig bound, in bus order.
std::vector<VmDevice> devices();
/// The devices of one kind, in bus order.
std::vector<vfio::Bdf> devices_of(const std::string& kind);
/// Device `index` (in bus order) of one kind, or an ENODEV error saying what the rig lacks.
Result<vfio::Bdf> device_of(const std::string& kind, unsigned index = 0);
/// "key=value key=value" from an environment variable.
std::map<std::string, std::string> pairs_from_env(const char* name);
/// True when the process runs as root (effective uid 0).
bool is_root();

}  // namespace vfe::vmtest

/// In a test body (one that includes gtest): skips the test when it runs without root, saying
/// what the test itself does that needs root: VFE_SKIP_UNLESS_ROOT("writes /sys/module/...").
#define VFE_SKIP_UNLESS_ROOT(what)                \
  do {                                            \
    if (!::vfe::vmtest::is_root()) {              \
      GTEST_SKIP() << "needs root: " << (what);   \
    }                                             \
  } while (0)
