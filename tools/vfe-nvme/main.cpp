// vfe-nvme: what nvme-cli shows of a controller (Identify, log pages, features), for a controller
// bound to vfio-pci and driven by this library's NVMe driver instead of the kernel's. Opening the
// controller resets and enables it (the driver's bring-up), and closing shuts it down normally.
//
//   vfe-nvme id-ctrl 0000:00:02.0 [--json]
//   vfe-nvme id-ns 0000:00:02.0 [-n NSID]
//   vfe-nvme smart-log | error-log | fw-log 0000:00:02.0
//   vfe-nvme get-feature 0000:00:02.0 -f FID [-s SEL] [-c CDW11] [-l DATA_LEN] [-n NSID]
//   vfe-nvme get-log 0000:00:02.0 -i LID -l LEN [--lpo OFFSET] [--lsp N] [--lsi N] [-n NSID]
//   vfe-nvme id 0000:00:02.0 --cns CNS [-n NSID] [--cntid N] [--csi N]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "drivers/nvme/controller.hpp"
#include "tools/vfe-nvme/report.hpp"
#include "vfio/sysfs.hpp"

namespace {

namespace nvme = vfe::nvme;
using Json = nlohmann::ordered_json;

struct Common {
  std::string bdf;
  std::string mode = "auto";
  bool json = false;
  std::string format = "normal";
};

struct Args {
  std::uint32_t nsid = 0;  // 0: the command's default
  unsigned fid = 0;
  unsigned select = 0;
  std::uint32_t cdw11 = 0;
  std::uint32_t length = 0;
  std::uint64_t offset = 0;
  unsigned lid = 0;
  unsigned lsp = 0;
  unsigned lsi = 0;
  bool retain = true;
  unsigned cns = 0;
  unsigned cntid = 0;
  unsigned csi = 0;
};

using Command = std::function<vfe::Result<Json>(nvme::Controller&, const Args&)>;

vfe::Result<Json> id_ctrl(nvme::Controller& c, const Args&) {
  Json j = vfe::tools::to_json(c.identity());
  if (const auto& limits = c.nvm_limits()) {  // CNS 06h: NVMe 2.0 controllers answer it
    j["nvm"] = vfe::tools::to_json(*limits);
  }
  return j;
}

vfe::Result<Json> id_ns(nvme::Controller& c, const Args& a) {
  if (a.nsid != 0) {
    const nvme::NamespaceInfo* ns = c.find_namespace(a.nsid);
    if (ns == nullptr) {
      return vfe::Error::invalid("id-ns", fmt::format("namespace {} is not active on this controller", a.nsid));
    }
    return vfe::tools::to_json(*ns);
  }
  Json all = Json::array();
  for (const nvme::NamespaceInfo& ns : c.namespaces()) {
    all.push_back(vfe::tools::to_json(ns));
  }
  return Json{{"namespaces", all}};
}

vfe::Result<Json> smart_log(nvme::Controller& c, const Args& a) {
  VFE_TRY_ASSIGN(const auto h, c.health_log(a.nsid == 0 ? ~0U : a.nsid));
  return vfe::tools::to_json(h);
}

vfe::Result<Json> error_log(nvme::Controller& c, const Args&) {
  VFE_TRY_ASSIGN(const auto entries, c.error_log());
  return vfe::tools::to_json(entries);
}

vfe::Result<Json> fw_log(nvme::Controller& c, const Args&) {
  VFE_TRY_ASSIGN(const auto f, c.firmware_slot_log());
  return vfe::tools::to_json(f);
}

vfe::Result<Json> get_feature(nvme::Controller& c, const Args& a) {
  const auto sel = static_cast<nvme::FeatureSelect>(a.select);
  VFE_TRY_ASSIGN(const auto v, c.get_features(nvme::FeatureQuery{.fid = static_cast<std::uint8_t>(a.fid),
                                                                 .nsid = a.nsid,
                                                                 .select = sel,
                                                                 .cdw11 = a.cdw11,
                                                                 .data_bytes = a.length}));
  return vfe::tools::feature_json(static_cast<std::uint8_t>(a.fid), sel, v);
}

vfe::Result<Json> get_log(nvme::Controller& c, const Args& a) {
  VFE_TRY_ASSIGN(const auto bytes, c.get_log_page(nvme::LogPageQuery{.lid = static_cast<std::uint8_t>(a.lid),
                                                                      .bytes = a.length,
                                                                      .offset = a.offset,
                                                                      .nsid = a.nsid == 0 ? ~0U : a.nsid,
                                                                      .lsp = static_cast<std::uint8_t>(a.lsp),
                                                                      .lsi = static_cast<std::uint16_t>(a.lsi),
                                                                      .retain_event = a.retain}));
  Json j{{"log_id", a.lid}, {"offset", a.offset}};
  j.update(vfe::tools::raw_json(bytes));
  return j;
}

vfe::Result<Json> identify_raw(nvme::Controller& c, const Args& a) {
  VFE_TRY_ASSIGN(const auto page, c.identify(nvme::IdentifyQuery{.cns = static_cast<std::uint8_t>(a.cns),
                                                                  .nsid = a.nsid,
                                                                  .cntid = static_cast<std::uint16_t>(a.cntid),
                                                                  .csi = static_cast<std::uint8_t>(a.csi)}));
  Json j{{"cns", a.cns}, {"nsid", a.nsid}};
  j.update(vfe::tools::raw_json(page));
  return j;
}

int run(const Common& common, const Args& args, const Command& command) {
  const auto bdf = vfe::vfio::Bdf::parse(common.bdf);
  if (!bdf) {
    std::fprintf(stderr, "vfe-nvme: %s\n", bdf.error().message().c_str());
    return 2;
  }
  nvme::ControllerOptions options;
  options.io_queues = 1;
  options.shadow_doorbells = false;  // no I/O queue: nothing to hand the controller buffers for
  if (common.mode != "auto") {
    auto mode = vfe::vfio::parse_iommu_mode(common.mode);
    if (!mode) {
      std::fprintf(stderr, "vfe-nvme: %s\n", mode.error().message().c_str());
      return 2;
    }
    options.mode = *mode;
  }
  auto c = nvme::Controller::create(bdf->to_string(), options);
  if (!c) {
    std::fprintf(stderr, "vfe-nvme: %s\n", c.error().message().c_str());
    return 1;
  }
  auto out = command(**c, args);
  if (!out) {
    std::fprintf(stderr, "vfe-nvme: %s\n", out.error().message().c_str());
    return 1;
  }
  const bool json = common.json || common.format == "json";
  fmt::print("{}", json ? out->dump(2) + "\n" : vfe::tools::to_text(*out));
  return 0;
}

CLI::App* add_command(CLI::App& app, const char* name, const char* what, Common& common) {
  CLI::App* sub = app.add_subcommand(name, what);
  sub->add_option("BDF", common.bdf, "the controller's PCI address (DDDD:BB:DD.F or BB:DD.F), bound to vfio-pci")
      ->required();
  sub->add_flag("--json", common.json, "print JSON (the same as -o json)");
  sub->add_option("-o,--output-format", common.format, "normal or json")->check(CLI::IsMember({"normal", "json"}));
  sub->add_option("--mode", common.mode, "type1, iommufd, noiommu, or auto ($VFE_IOMMU_MODE, else the best)");
  return sub;
}

// The log and raw commands, whose options are many.
void add_raw_commands(CLI::App& app, Common& common, Args& a, std::map<CLI::App*, Command>& commands) {
  auto* gl = add_command(app, "get-log", "Get Log Page: any log, as raw bytes", common);
  gl->add_option("-i,--log-id", a.lid, "log page identifier")->required()->check(CLI::Range(0, 255));
  gl->add_option("-l,--log-len", a.length, "bytes to read (a multiple of 4)")->required();
  gl->add_option("--lpo", a.offset, "byte offset into the log (a multiple of 4)");
  gl->add_option("--lsp", a.lsp, "log specific field")->check(CLI::Range(0, 15));
  gl->add_option("--lsi", a.lsi, "log specific identifier")->check(CLI::Range(0, 65535));
  gl->add_option("--rae", a.retain, "retain the asynchronous event (default true)");
  gl->add_option("-n,--namespace-id", a.nsid, "the namespace; default: the controller (FFFFFFFFh)");
  commands[gl] = get_log;

  auto* id = add_command(app, "id", "Identify of any CNS, as raw bytes", common);
  id->add_option("--cns", a.cns, "Controller or Namespace Structure")->required()->check(CLI::Range(0, 255));
  id->add_option("--cntid", a.cntid, "controller identifier (CNS 12h, 13h)")->check(CLI::Range(0, 65535));
  id->add_option("--csi", a.csi, "command set identifier (CNS 05h, 06h)")->check(CLI::Range(0, 255));
  id->add_option("-n,--namespace-id", a.nsid, "namespace identifier");
  commands[id] = identify_raw;
}

void add_commands(CLI::App& app, Common& common, Args& a, std::map<CLI::App*, Command>& commands) {
  commands[add_command(app, "id-ctrl", "Identify Controller (CNS 01h), and the NVM command set's limits (CNS 06h)",
                       common)] = id_ctrl;
  auto* ns = add_command(app, "id-ns", "Identify Namespace (CNS 00h): every active namespace, or -n", common);
  ns->add_option("-n,--namespace-id", a.nsid, "only this namespace");
  commands[ns] = id_ns;
  auto* smart = add_command(app, "smart-log", "SMART / Health Information log (02h)", common);
  smart->add_option("-n,--namespace-id", a.nsid, "a namespace's own log (LPA bit 0); default: the controller's");
  commands[smart] = smart_log;
  commands[add_command(app, "error-log", "Error Information log (01h): the entries in use", common)] = error_log;
  commands[add_command(app, "fw-log", "Firmware Slot Information log (03h)", common)] = fw_log;
  auto* gf = add_command(app, "get-feature", "Get Features: one feature's value (and data)", common);
  gf->add_option("-f,--feature-id", a.fid, "feature identifier")->required()->check(CLI::Range(0, 255));
  gf->add_option("-s,--sel", a.select, "0 current, 1 default, 2 saved, 3 supported capabilities")
      ->check(CLI::Range(0, 3));
  gf->add_option("-c,--cdw11", a.cdw11, "Command Dword 11 (feature specific)");
  gf->add_option("-l,--data-len", a.length, "bytes of data the feature returns (e.g. 8 for Timestamp)");
  gf->add_option("-n,--namespace-id", a.nsid, "for a namespace-specific feature");
  commands[gf] = get_feature;
  add_raw_commands(app, common, a, commands);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Show an NVMe controller's Identify data, log pages and features, as nvme-cli does, through\n"
               "VFIO and this library's driver. Opening the controller resets and enables it; it is shut\n"
               "down normally on exit. Numbers take 0x for hex.",
               "vfe-nvme"};
  app.require_subcommand(1);
  Common common;
  Args a;
  std::map<CLI::App*, Command> commands;
  add_commands(app, common, a, commands);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints the help, or the error and a hint
    return rc == 0 ? 0 : 2;      // a usage error exits 2, as a bad BDF does; a failure 1
  }
  for (const auto& [sub, command] : commands) {
    if (sub->parsed()) {
      return run(common, a, command);
    }
  }
  return 2;
}
