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
