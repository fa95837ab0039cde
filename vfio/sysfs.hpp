#pragma once
/// \file
/// Reading what sysfs says about a PCI function: driver, IOMMU group, NUMA node, IDs.

#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "vfio/bdf.hpp"

namespace vfe::vfio {

/// The sysfs folder of a function, "/sys/bus/pci/devices/0000:81:00.0". The root can be moved
/// (VFE_SYSFS_ROOT, for tests); the default is "/sys".
[[nodiscard]] std::string sysfs_device_path(const Bdf& bdf);

/// Checks that the function exists; the error says how to list the functions there are.
[[nodiscard]] Result<void> require_device_exists(const Bdf& bdf);

/// Checks that the function exists and is bound to vfio-pci; the error names the driver it is
/// bound to and the command that binds it.
[[nodiscard]] Result<void> require_bound_to_vfio_pci(const Bdf& bdf);

/// The error for a group the kernel says is not viable, naming each member bound to another
/// driver and what to do about it.
[[nodiscard]] Error group_not_viable(const std::string& group);

/// The VFIO device cdev of a function bound to vfio-pci ("vfio3" for /dev/vfio/devices/vfio3),
/// or nullopt when the kernel has none (no CONFIG_VFIO_DEVICE_CDEV).
[[nodiscard]] std::optional<std::string> vfio_cdev(const Bdf& bdf);

/// True when the function's group is a no-IOMMU group (its name is "vfio-noiommu").
[[nodiscard]] bool is_noiommu_group(const Bdf& bdf);

/// The name of the bound driver ("vfio-pci", "nvme"), or nullopt when none is bound.
[[nodiscard]] std::optional<std::string> bound_driver(const Bdf& bdf);

/// The IOMMU group number (the name of the group's folder), or nullopt without a group.
[[nodiscard]] std::optional<std::string> iommu_group(const Bdf& bdf);

/// Every function in a group, sorted.
[[nodiscard]] std::vector<Bdf> iommu_group_devices(const std::string& group);

/// Every function bound to vfio-pci now, sorted.
[[nodiscard]] std::vector<Bdf> vfio_pci_devices();

/// The NUMA node sysfs reports, -1 when unknown (one node, or no firmware information).
[[nodiscard]] int numa_node(const Bdf& bdf);

/// A hex attribute such as "vendor" ("0x1b36"), or nullopt if unreadable or malformed.
[[nodiscard]] std::optional<unsigned> read_hex_attr(const Bdf& bdf, const char* attr);

/// The first line of a small text file, without the newline; nullopt if it can't be read.
[[nodiscard]] std::optional<std::string> read_line(const std::string& path);

}  // namespace vfe::vfio
