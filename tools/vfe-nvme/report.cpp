#include "tools/vfe-nvme/report.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace vfe::tools {
namespace {

using Json = nlohmann::ordered_json;

std::string hex(std::span<const std::uint8_t> bytes) {
  std::string s;
  s.reserve(bytes.size() * 2);
  for (const std::uint8_t b : bytes) {
    s += fmt::format("{:02x}", b);
  }
  return s;
}

Json status_json(const nvme::Status& s) {
  return {{"sct", s.sct}, {"sc", s.sc}, {"dnr", s.dnr}, {"more", s.more}, {"text", nvme::to_string(s)}};
}

// Kelvin to whole degrees Celsius, as nvme-cli shows beside the Kelvin value.
int celsius(std::uint16_t kelvin) { return static_cast<int>(kelvin) - 273; }

void append_text(std::string& out, const Json& j, const std::string& indent);

// `base`: the offset of raw data's first byte in what it was read from (a log read with --lpo).
void append_field(std::string& out, const std::string& key, const Json& v, const std::string& indent,
                  std::uint64_t base = 0) {
  if (v.is_object() || v.is_array()) {
    out += fmt::format("{}{}:\n", indent, key);
    append_text(out, v, indent + "  ");
    return;
  }
  if (key == "data" && v.is_string()) {  // raw bytes: a hex dump, 16 bytes a line
    const std::string h = v.get<std::string>();
    for (std::size_t at = 0; at < h.size(); at += 32) {
      out += fmt::format("{}{:04x}: {}\n", indent, base + at / 2, h.substr(at, 32));
    }
    return;
  }
  out += fmt::format("{}{:<28}: {}\n", indent, key, v.is_string() ? v.get<std::string>() : v.dump());
}

void append_text(std::string& out, const Json& j, const std::string& indent) {
  if (j.is_array()) {
    for (std::size_t i = 0; i < j.size(); ++i) {
      append_field(out, fmt::format("[{}]", i), j[i], indent);
    }
    return;
  }
  const auto offset = j.find("offset");
  const std::uint64_t base = offset != j.end() && offset->is_number_unsigned() ? offset->get<std::uint64_t>() : 0;
  for (const auto& [key, value] : j.items()) {
    append_field(out, key, value, indent, base);
  }
}

}  // namespace

Json to_json(const nvme::ControllerIdentity& c) {
  return {{"vid", c.vendor_id},        {"ssvid", c.subsystem_vendor_id},
          {"sn", c.serial},            {"mn", c.model},
          {"fr", c.firmware},          {"mdts", c.mdts},
          {"cntlid", c.controller_id}, {"ver", c.version},
          {"oaes", c.oaes},            {"oacs", c.oacs},
          {"aerl", c.aerl},            {"frmw", c.frmw},
          {"lpa", c.lpa},              {"elpe", c.elpe},
          {"sqes", c.sqes},            {"cqes", c.cqes},
          {"maxcmd", c.max_cmd},       {"nn", c.namespace_count},
          {"oncs", c.oncs},            {"vwc", c.vwc},
          {"sgls", c.sgls}};
}

Json to_json(const nvme::NamespaceInfo& ns) {
  Json formats = Json::array();
  for (std::size_t i = 0; i < ns.formats.size(); ++i) {
    const nvme::LbaFormat& f = ns.formats[i];
    formats.push_back({{"ms", f.metadata_bytes},
                       {"ds", f.data_shift},
                       {"rp", f.relative_performance},
                       {"in_use", i == ns.format_index}});
  }
  return {{"nsid", ns.nsid},
          {"nsze", ns.size_blocks},
          {"ncap", ns.capacity_blocks},
          {"nuse", ns.used_blocks},
          {"flbas", ns.format_index | (ns.extended_lba ? 0x10 : 0)},
          {"nlbaf", ns.formats.size() - 1},
          {"dps", ns.dps},
          {"dlfeat", ns.dlfeat},
          {"block_size", ns.block_size},
          {"lbafs", formats}};
}

Json to_json(const nvme::HealthLog& h) {
  Json sensors = Json::array();
  for (const std::uint16_t k : h.sensor_kelvin) {
    sensors.push_back(k);
  }
  return {{"critical_warning", h.critical_warning},
          {"temperature", h.temperature_kelvin},
          {"temperature_celsius", celsius(h.temperature_kelvin)},
          {"avail_spare", h.available_spare},
          {"spare_thresh", h.available_spare_threshold},
          {"percent_used", h.percentage_used},
          {"endurance_grp_critical_warning_summary", h.endurance_group_warning},
          {"data_units_read", h.data_units_read.to_string()},
          {"data_units_written", h.data_units_written.to_string()},
          {"host_read_commands", h.host_reads.to_string()},
          {"host_write_commands", h.host_writes.to_string()},
          {"controller_busy_time", h.controller_busy_minutes.to_string()},
          {"power_cycles", h.power_cycles.to_string()},
          {"power_on_hours", h.power_on_hours.to_string()},
          {"unsafe_shutdowns", h.unsafe_shutdowns.to_string()},
          {"media_errors", h.media_errors.to_string()},
          {"num_err_log_entries", h.error_log_entries.to_string()},
          {"warning_temp_time", h.warning_temperature_minutes},
          {"critical_comp_time", h.critical_temperature_minutes},
          {"temperature_sensors", sensors},
          {"thm_temp1_trans_count", h.thermal_transitions[0]},
          {"thm_temp2_trans_count", h.thermal_transitions[1]},
          {"thm_temp1_total_time", h.thermal_seconds[0]},
          {"thm_temp2_total_time", h.thermal_seconds[1]}};
}

Json to_json(std::span<const nvme::ErrorLogEntry> entries) {
  Json out = Json::array();
  for (const nvme::ErrorLogEntry& e : entries) {
    out.push_back({{"error_count", e.error_count},
                   {"sqid", e.sqid},
                   {"cmdid", e.cid},
                   {"status_field", status_json(e.status)},
                   {"parm_error_location", e.parameter_error_location},
                   {"lba", e.lba},
                   {"nsid", e.nsid},
                   {"vs", e.vendor_log_page},
                   {"trtype", e.transport_type},
                   {"cs", e.command_specific},
                   {"trtype_spec_info", e.transport_specific}});
  }
  return {{"errors", out}};
}

Json to_json(const nvme::FirmwareSlotLog& f) {
  Json j{{"afi_active_slot", f.active_slot}, {"afi_next_reset_slot", f.next_reset_slot}};
  for (std::size_t i = 0; i < f.revisions.size(); ++i) {
    if (!f.revisions[i].empty()) {
      j[fmt::format("frs{}", i + 1)] = f.revisions[i];
    }
  }
  return j;
}

Json to_json(const nvme::NvmControllerLimits& l) {
  return {{"vsl", l.vsl},     {"wzsl", l.wzsl},   {"wusl", l.wusl},
          {"dmrl", l.dmrl},   {"dmrsl", l.dmrsl}, {"dmsl", l.dmsl}};
}

Json feature_json(std::uint8_t fid, nvme::FeatureSelect sel, const nvme::FeatureValue& v) {
  static constexpr const char* kSelect[] = {"current", "default", "saved", "supported capabilities"};
  Json j{{"feature_id", fid},
         {"select", kSelect[static_cast<int>(sel) & 3]},
         {"value", v.dw0},
         {"value_hex", fmt::format("{:#010x}", v.dw0)}};
  if (sel == nvme::FeatureSelect::capabilities) {
    const nvme::FeatureCapabilities caps{v.dw0};
    j["saveable"] = caps.saveable();
    j["namespace_specific"] = caps.namespace_specific();
    j["changeable"] = caps.changeable();
  }
  if (!v.data.empty()) {
    j["data"] = hex(v.data);
  }
  return j;
}

Json raw_json(std::span<const std::uint8_t> bytes) { return {{"bytes", bytes.size()}, {"data", hex(bytes)}}; }

std::string to_text(const Json& j) {
  std::string out;
  append_text(out, j, "");
  return out;
}

}  // namespace vfe::tools
