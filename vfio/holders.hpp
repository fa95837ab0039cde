#pragma once
/// \file
/// Who holds a VFIO node open: so that an EBUSY names the process in the way ("/dev/vfio/7 is
/// held by process 1234 (qemu-system-x86)") instead of sending the user to fuser.

#include <string>
#include <vector>

namespace vfe::vfio {

/// A process with an open descriptor on some node.
struct Holder {
  int pid = 0;
  std::string name;  ///< its /proc/PID/comm ("?" when unreadable)
};

/// Every process with a descriptor whose link in /proc/PID/fd is exactly `path` ("/dev/vfio/7"),
/// in pid order. Reads /proc (moved with VFE_PROC_ROOT, for tests, like VFE_SYSFS_ROOT for
/// /sys); processes that vanish while it looks, or whose descriptors this process may not read
/// (another user's, without privilege), are skipped, so the list can be incomplete but never
/// names a process that does not hold `path`. Setup/error paths only: it walks every process.
[[nodiscard]] std::vector<Holder> processes_holding(const std::string& path);

/// "process 1234 (qemu-system-x86)", "this process (pid 99)" for the caller itself, joined with
/// ", " for several; empty for none.
[[nodiscard]] std::string describe_holders(const std::vector<Holder>& holders);

/// "/dev/vfio/7 is held by process 1234 (vfe_vm_tests)" from `processes_holding(path)`, or
/// empty when no holder is found: the start of an EBUSY message, which the caller finishes with
/// the remedy.
[[nodiscard]] std::string held_by(const std::string& path);

}  // namespace vfe::vfio
