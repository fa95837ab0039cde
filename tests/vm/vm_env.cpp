#include "tests/vm/vm_env.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace vfe::vmtest {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

vfio::IommuMode mode() {
  auto m = vfio::parse_iommu_mode(env("VFE_VM_MODE"));
  if (!m) {
    std::fprintf(stderr, "VFE_VM_MODE: %s (run me through tests/vm/run.sh)\n",
                 m.error().message().c_str());
    std::exit(2);
  }
  return *m;
}

std::map<std::string, std::string> pairs_from_env(const char* name) {
  std::map<std::string, std::string> out;
  std::istringstream in(env(name));
  for (std::string item; in >> item;) {
    const auto eq = item.find('=');
    out[item.substr(0, eq)] = eq == std::string::npos ? "" : item.substr(eq + 1);
  }
  return out;
}

bool is_root() { return ::geteuid() == 0; }

std::vector<VmDevice> devices() {
  std::vector<VmDevice> out;
  std::istringstream in(env("VFE_VM_DEVICES"));
  for (std::string item; in >> item;) {
    const auto eq = item.find('=');
    auto bdf = vfio::Bdf::parse(eq == std::string::npos ? "" : item.substr(eq + 1));
    if (!bdf) {
      std::fprintf(stderr, "bad VFE_VM_DEVICES entry '%s': %s\n", item.c_str(),
                   bdf.error().message().c_str());
      std::exit(2);
    }
    out.push_back({item.substr(0, eq), *bdf});
  }
  return out;
}

std::vector<vfio::Bdf> devices_of(const std::string& kind) {
  std::vector<vfio::Bdf> out;
  for (const auto& d : devices()) {
    if (d.kind == kind) {
      out.push_back(d.bdf);
    }
  }
  return out;
}

Result<vfio::Bdf> device_of(const std::string& kind, unsigned index) {
  const std::vector<vfio::Bdf> all = devices_of(kind);
  if (index >= all.size()) {
    return Error::from_errno(ENODEV, "device_of",
                             "the rig has " + std::to_string(all.size()) + " " + kind + " device(s), no #" +
                                 std::to_string(index) + " (VFE_VM_DEVICES: see tests/vm/run.sh)");
  }
  return all[index];
}

}  // namespace vfe::vmtest
