// vfe-probe: opens PCI functions through VFIO and prints what it found, one line each: address,
// vendor:device, NUMA node, IOMMU group, the mode and the VFIO node used. A quick check that a
// machine (or the test guest) is ready for a vfio-engine driver.
//
//   vfe-probe                      every function bound to vfio-pci, mode chosen per device
//   vfe-probe --mode type1 81:00.0 one function, forced through the type1 container API
//   vfe-probe --json               the same as a JSON array
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vfio/probe.hpp"
#include "vfio/sysfs.hpp"

namespace {
using vfe::vfio::Bdf;
using vfe::vfio::IommuMode;

nlohmann::json to_json(const vfe::vfio::ProbeInfo& p) {
  return {{"bdf", p.bdf.to_string()},
          {"vendor_id", fmt::format("{:04x}", p.vendor_id)},
          {"device_id", fmt::format("{:04x}", p.device_id)},
          {"numa_node", p.numa_node},
          {"iommu_group", p.iommu_group},
          {"mode", std::string(to_string(p.mode))},
          {"vfio_path", p.vfio_path},
          {"regions", p.num_regions},
          {"irqs", p.num_irqs}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Open PCI functions through VFIO and print what was found.\n"
               "Without addresses, probes every function bound to vfio-pci.",
               "vfe-probe"};
  std::vector<std::string> addresses;
  std::string mode_name = "auto";
  bool json = false;
  app.add_option("BDF", addresses, "PCI addresses, DDDD:BB:DD.F or BB:DD.F");
  app.add_option("--mode", mode_name,
                 "type1, iommufd, noiommu, or auto ($VFE_IOMMU_MODE, else iommufd when the "
                 "kernel has it, else type1)")
      ->capture_default_str();
  app.add_flag("--json", json, "print a JSON array instead of a table");
  CLI11_PARSE(app, argc, argv);

  std::vector<Bdf> bdfs;
  for (const auto& a : addresses) {
    auto b = Bdf::parse(a);
    if (!b) {
      std::fprintf(stderr, "vfe-probe: %s\n", b.error().message().c_str());
      return 2;
    }
    bdfs.push_back(*b);
  }
  if (addresses.empty()) {
    bdfs = vfe::vfio::vfio_pci_devices();
    if (bdfs.empty()) {
      std::fprintf(stderr, "vfe-probe: no function is bound to vfio-pci (see scripts/devbind.sh)\n");
      return 1;
    }
  }

  int failures = 0;
  nlohmann::json out = nlohmann::json::array();
  if (!json) {
    fmt::print("{:<14} {:<10} {:>4}  {:<6} {:<8} {}\n", "BDF", "ID", "NUMA", "GROUP", "MODE",
               "VFIO PATH");
  }
  for (const Bdf& bdf : bdfs) {
    auto mode = mode_name == "auto" ? vfe::vfio::select_iommu_mode(bdf)
                                    : vfe::vfio::parse_iommu_mode(mode_name);
    auto info = mode ? vfe::vfio::probe(bdf, *mode) : vfe::Result<vfe::vfio::ProbeInfo>(mode.error());
    if (!info) {
      ++failures;
      std::fprintf(stderr, "vfe-probe: %s: %s\n", bdf.to_string().c_str(),
                   info.error().message().c_str());
      continue;
    }
    if (json) {
      out.push_back(to_json(*info));
    } else {
      fmt::print("{:<14} {:04x}:{:04x}  {:>4}  {:<6} {:<8} {}\n", info->bdf.to_string(),
                 info->vendor_id, info->device_id, info->numa_node,
                 info->iommu_group.empty() ? "-" : info->iommu_group, to_string(info->mode),
                 info->vfio_path);
    }
  }
  if (json) {
    fmt::print("{}\n", out.dump(2));
  }
  return failures == 0 ? 0 : 1;
}
