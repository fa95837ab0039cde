#include "drivers/nvme/events.hpp"

#include <fmt/format.h>

#include <array>
#include <string_view>

#include "drivers/nvme/spec.hpp"

namespace vfe::nvme {
namespace {

// NVMe 1.4 figures 146 to 148: the information values of each type.
constexpr std::array<std::string_view, 6> kErrorInfo{
    "write to an invalid doorbell register", "invalid doorbell write value", "diagnostic failure",
    "persistent internal error",             "transient internal error",     "firmware image load error"};
constexpr std::array<std::string_view, 3> kHealthInfo{"NVM subsystem reliability", "temperature threshold",
                                                      "spare below threshold"};
constexpr std::array<std::string_view, 7> kNoticeInfo{
    "namespace attribute changed",     "firmware activation starting",
    "telemetry log changed",           "asymmetric namespace access change",
    "predictable latency event aggregate log change", "LBA status information alert",
    "endurance group event aggregate log page change"};

template <std::size_t N>
std::string_view name_in(const std::array<std::string_view, N>& names, std::uint8_t info) {
  return info < N ? names[info] : std::string_view("information not known to this driver");
}

}  // namespace

AsyncEvent AsyncEvent::from_dw0(std::uint32_t dw0) noexcept {
  AsyncEvent e;
  e.type = static_cast<AsyncEventType>(dw0 & 0x7U);
  e.info = static_cast<std::uint8_t>((dw0 >> 8) & 0xffU);
  e.log_page = static_cast<std::uint8_t>((dw0 >> 16) & 0xffU);
  return e;
}

std::string AsyncEvent::describe() const {
  std::string_view type_name;
  std::string_view info_name;
  switch (type) {
    case AsyncEventType::error:
      type_name = "error";
      info_name = name_in(kErrorInfo, info);
      break;
    case AsyncEventType::health:
      type_name = "SMART / health";
      info_name = name_in(kHealthInfo, info);
      break;
    case AsyncEventType::notice:
      type_name = "notice";
      info_name = name_in(kNoticeInfo, info);
      break;
    case AsyncEventType::command_set:
      type_name = "I/O command set";
      info_name = "command set specific";
      break;
    case AsyncEventType::vendor:
      type_name = "vendor specific";
      info_name = "vendor specific";
      break;
    default:
      type_name = "reserved type";
      info_name = "reserved";
      break;
  }
  return fmt::format("{}: {} (information {:#04x}, log page {:#04x})", type_name, info_name, info, log_page);
}

std::uint32_t event_log_bytes(std::uint8_t lid) noexcept {
  switch (lid) {
    case log_page::kError:
      return 64;
    case log_page::kHealth:
    case log_page::kFirmwareSlot:
      return 512;
    case log_page::kChangedNamespaces:
      return 4096;
    default:
      return 0;
  }
}

}  // namespace vfe::nvme
