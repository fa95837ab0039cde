#include "drivers/nvme/log_pages.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "drivers/nvme/wire.hpp"

namespace vfe::nvme {
namespace {

using wire::read_le;

Counter128 read_counter(std::span<const std::uint8_t> data, std::size_t offset) noexcept {
  return Counter128{read_le<std::uint64_t>(data, offset), read_le<std::uint64_t>(data, offset + 8)};
}

Result<void> check_at_least(const char* op, std::size_t size, std::size_t needed) {
  if (size < needed) {
    return Error::invalid(op, fmt::format("the log is {} bytes; it has {}", size, needed));
  }
  return ok();
}

}  // namespace

std::string Counter128::to_string() const {
  // Long division by 10 on 32-bit limbs (most significant first): the high half may be set.
  std::array<std::uint32_t, 4> limbs{static_cast<std::uint32_t>(high >> 32), static_cast<std::uint32_t>(high),
                                     static_cast<std::uint32_t>(low >> 32), static_cast<std::uint32_t>(low)};
  std::string digits;
  do {
    std::uint64_t rest = 0;
    for (std::uint32_t& limb : limbs) {
      const std::uint64_t cur = (rest << 32) | limb;
      limb = static_cast<std::uint32_t>(cur / 10);
      rest = cur % 10;
    }
    digits.push_back(static_cast<char>('0' + rest));
  } while (std::any_of(limbs.begin(), limbs.end(), [](std::uint32_t l) { return l != 0; }));
  std::reverse(digits.begin(), digits.end());
  return digits;
}

Result<std::vector<ErrorLogEntry>> parse_error_log(std::span<const std::uint8_t> data) {
  if (data.empty() || data.size() % kErrorLogEntrySize != 0) {
    return Error::invalid("parse error log", fmt::format("the log is {} bytes; it must be a positive "
                                                         "multiple of the {}-byte entry",
                                                         data.size(), kErrorLogEntrySize));
  }
  std::vector<ErrorLogEntry> out;
  for (std::size_t at = 0; at < data.size(); at += kErrorLogEntrySize) {
    const auto e = data.subspan(at, kErrorLogEntrySize);
    ErrorLogEntry entry;
    entry.error_count = read_le<std::uint64_t>(e, 0);
    if (entry.error_count == 0) {
      continue;  // §5.14.1.1: an entry with error count 0 is not valid
    }
    entry.sqid = read_le<std::uint16_t>(e, 8);
    entry.cid = read_le<std::uint16_t>(e, 10);
    entry.status = Status::from_cqe(read_le<std::uint16_t>(e, 12));  // bit 0 is the phase tag
    entry.parameter_error_location = read_le<std::uint16_t>(e, 14);
    entry.lba = read_le<std::uint64_t>(e, 16);
    entry.nsid = read_le<std::uint32_t>(e, 24);
    entry.vendor_log_page = e[28];
    entry.transport_type = e[29];
    entry.command_specific = read_le<std::uint64_t>(e, 32);
    entry.transport_specific = read_le<std::uint16_t>(e, 40);
    out.push_back(entry);
  }
  return out;
}

Result<HealthLog> parse_health_log(std::span<const std::uint8_t> data) {
  VFE_TRY(check_at_least("parse health log", data.size(), kHealthLogSize));
  HealthLog h;
  h.critical_warning = data[0];
  h.temperature_kelvin = read_le<std::uint16_t>(data, 1);
  h.available_spare = data[3];
  h.available_spare_threshold = data[4];
  h.percentage_used = data[5];
  h.endurance_group_warning = data[6];
  Counter128* counters[] = {&h.data_units_read, &h.data_units_written,     &h.host_reads,
                            &h.host_writes,     &h.controller_busy_minutes, &h.power_cycles,
                            &h.power_on_hours,  &h.unsafe_shutdowns,        &h.media_errors,
                            &h.error_log_entries};
  std::size_t at = 32;
  for (Counter128* c : counters) {
    *c = read_counter(data, at);
    at += 16;
  }
  h.warning_temperature_minutes = read_le<std::uint32_t>(data, 192);
  h.critical_temperature_minutes = read_le<std::uint32_t>(data, 196);
  for (std::size_t i = 0; i < h.sensor_kelvin.size(); ++i) {
    h.sensor_kelvin[i] = read_le<std::uint16_t>(data, 200 + 2 * i);
  }
  for (std::size_t i = 0; i < 2; ++i) {
    h.thermal_transitions[i] = read_le<std::uint32_t>(data, 216 + 4 * i);
    h.thermal_seconds[i] = read_le<std::uint32_t>(data, 224 + 4 * i);
  }
  return h;
}

Result<FirmwareSlotLog> parse_firmware_slot_log(std::span<const std::uint8_t> data) {
  VFE_TRY(check_at_least("parse firmware slot log", data.size(), kFirmwareSlotLogSize));
  FirmwareSlotLog f;
  f.active_slot = data[0] & 0x7;
  f.next_reset_slot = (data[0] >> 4) & 0x7;
  for (std::size_t i = 0; i < f.revisions.size(); ++i) {
    f.revisions[i] = wire::read_ascii(data, 8 + 8 * i, 8);
  }
  return f;
}

}  // namespace vfe::nvme
