#include "vfio/sysfs.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace vfe::vfio {
namespace fs = std::filesystem;

namespace {

std::string sysfs_root() {
  const char* env = std::getenv("VFE_SYSFS_ROOT");
  return env != nullptr && *env != '\0' ? env : "/sys";
}

// The last path component of a symlink's target ("../../../bus/pci/drivers/nvme" -> "nvme").
std::optional<std::string> link_basename(const std::string& link) {
  std::error_code ec;
  const fs::path target = fs::read_symlink(link, ec);
  if (ec) {
    return std::nullopt;
  }
  return target.filename().string();
}

}  // namespace

std::string sysfs_device_path(const Bdf& bdf) {
  return fmt::format("{}/bus/pci/devices/{}", sysfs_root(), bdf.to_string());
}

Result<void> require_device_exists(const Bdf& bdf) {
  std::error_code ec;
  if (!fs::exists(sysfs_device_path(bdf), ec)) {
    return Error::from_errno(ENODEV, "open PCI device",
                             fmt::format("{}: no such PCI function (`lspci -D` or "
                                         "`scripts/devbind.sh list` shows the ones there are)",
                                         bdf.to_string()));
  }
  return ok();
}

Result<void> require_bound_to_vfio_pci(const Bdf& bdf) {
  VFE_TRY(require_device_exists(bdf));
  const auto driver = bound_driver(bdf);
  if (driver != "vfio-pci") {
    return Error::from_errno(
        ENODEV, "open PCI device",
        fmt::format("{} is bound to {}, not vfio-pci; bind it with `scripts/devbind.sh bind {}`",
                    bdf.to_string(), driver.value_or("no driver"), bdf.to_string()));
  }
  return ok();
}

Error group_not_viable(const std::string& group) {
  // vfio-pci accepts members bound to vfio-pci, to no driver, or PCIe ports (bridges).
  std::string culprits;
  for (const Bdf& member : iommu_group_devices(group)) {
    const auto driver = bound_driver(member);
    if (driver && *driver != "vfio-pci" && *driver != "pcieport") {
      culprits += fmt::format("{}{} is bound to {}", culprits.empty() ? "" : ", ",
                              member.to_string(), *driver);
    }
  }
  return Error::from_errno(
      EBUSY, "VFIO_GROUP_GET_STATUS",
      fmt::format("IOMMU group {} is not viable: {}; bind every function of the group to vfio-pci "
                  "or unbind it",
                  group, culprits.empty() ? "a member is in use" : culprits));
}

std::optional<std::string> vfio_cdev(const Bdf& bdf) {
  const auto names = [&] {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(sysfs_device_path(bdf) + "/vfio-dev", ec)) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }();
  if (names.size() != 1) {
    return std::nullopt;
  }
  return names.front();
}

bool is_noiommu_group(const Bdf& bdf) {
  return read_line(sysfs_device_path(bdf) + "/iommu_group/name") == "vfio-noiommu";
}

std::optional<std::string> bound_driver(const Bdf& bdf) {
  return link_basename(sysfs_device_path(bdf) + "/driver");
}

std::optional<std::string> iommu_group(const Bdf& bdf) {
  return link_basename(sysfs_device_path(bdf) + "/iommu_group");
}

namespace {

// The entries of `dir` that are PCI addresses, sorted; empty if `dir` can't be read.
std::vector<Bdf> bdfs_in(const std::string& dir) {
  std::vector<Bdf> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (auto b = Bdf::parse(entry.path().filename().string())) {
      out.push_back(*b);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<Bdf> iommu_group_devices(const std::string& group) {
  return bdfs_in(fmt::format("{}/kernel/iommu_groups/{}/devices", sysfs_root(), group));
}

std::vector<Bdf> vfio_pci_devices() {
  return bdfs_in(fmt::format("{}/bus/pci/drivers/vfio-pci", sysfs_root()));
}

int numa_node(const Bdf& bdf) {
  const auto line = read_line(sysfs_device_path(bdf) + "/numa_node");
  if (!line) {
    return -1;
  }
  char* end = nullptr;
  const long v = std::strtol(line->c_str(), &end, 10);
  return end != line->c_str() && v >= 0 && v < 1 << 16 ? static_cast<int>(v) : -1;
}

std::optional<unsigned> read_hex_attr(const Bdf& bdf, const char* attr) {
  const auto line = read_line(sysfs_device_path(bdf) + "/" + attr);
  if (!line || line->empty()) {
    return std::nullopt;
  }
  char* end = nullptr;
  const unsigned long v = std::strtoul(line->c_str(), &end, 16);
  if (*end != '\0' || v > 0xffffffffUL) {
    return std::nullopt;
  }
  return static_cast<unsigned>(v);
}

std::optional<std::string> read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return std::nullopt;
  }
  return line;
}

}  // namespace vfe::vfio
