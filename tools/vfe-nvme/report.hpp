#pragma once
// vfe-nvme's output: each structure the controller answers with, as JSON with nvme-cli's field
// names, and as the "name : value" lines nvme-cli prints by default.
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "drivers/nvme/admin_commands.hpp"
#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/log_pages.hpp"

namespace vfe::tools {

[[nodiscard]] nlohmann::ordered_json to_json(const nvme::ControllerIdentity& c);
[[nodiscard]] nlohmann::ordered_json to_json(const nvme::NamespaceInfo& ns);
[[nodiscard]] nlohmann::ordered_json to_json(const nvme::HealthLog& h);
[[nodiscard]] nlohmann::ordered_json to_json(std::span<const nvme::ErrorLogEntry> entries);
[[nodiscard]] nlohmann::ordered_json to_json(const nvme::FirmwareSlotLog& f);
[[nodiscard]] nlohmann::ordered_json to_json(const nvme::NvmControllerLimits& l);
/// A feature's answer: the value (dword 0) and its data, if any, in hex.
[[nodiscard]] nlohmann::ordered_json feature_json(std::uint8_t fid, nvme::FeatureSelect sel,
                                                  const nvme::FeatureValue& v);
/// Raw bytes (an Identify structure or a log page of any ID) in hex.
[[nodiscard]] nlohmann::ordered_json raw_json(std::span<const std::uint8_t> bytes);

/// `j` as text: one "name : value" line per field, nested objects and arrays indented under
/// their name; raw data as a hex dump of 16 bytes a line.
[[nodiscard]] std::string to_text(const nlohmann::ordered_json& j);

}  // namespace vfe::tools
