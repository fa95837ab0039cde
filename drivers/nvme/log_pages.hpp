#pragma once
/// \file
/// Decoding of the log pages every controller keeps (NVMe 1.4 §5.14.1): Error Information (01h),
/// SMART / Health Information (02h) and Firmware Slot Information (03h). Pure functions over the
/// bytes the controller wrote; they trust nothing in them.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "drivers/nvme/status.hpp"

namespace vfe::nvme {

/// A 128-bit counter of the health log, little endian as the controller keeps it.
struct Counter128 {
  std::uint64_t low = 0;
  std::uint64_t high = 0;
  /// In decimal, as nvme-cli prints it.
  [[nodiscard]] std::string to_string() const;
  friend bool operator==(const Counter128&, const Counter128&) = default;
};

/// One entry of the Error Information log (figure 194, 64 bytes).
struct ErrorLogEntry {
  std::uint64_t error_count = 0;  ///< bytes 7:0: unique and increasing; 0: the entry is unused
  std::uint16_t sqid = 0;         ///< bytes 9:8: submission queue of the command (FFFFh: none)
  std::uint16_t cid = 0;          ///< bytes 11:10: its command ID (FFFFh: none)
  Status status{};                ///< bytes 13:12, bits 15:1: the status it completed with
  std::uint16_t parameter_error_location = 0;  ///< bytes 15:14: byte (7:0) and bit (10:8) at fault
  std::uint64_t lba = 0;                       ///< bytes 23:16: the first LBA in error
  std::uint32_t nsid = 0;                      ///< bytes 27:24
  std::uint8_t vendor_log_page = 0;            ///< byte 28: vendor log with more (0: none)
  std::uint8_t transport_type = 0;             ///< byte 29 (NVMe 1.4)
  std::uint64_t command_specific = 0;          ///< bytes 39:32
  std::uint16_t transport_specific = 0;        ///< bytes 41:40
};
inline constexpr std::size_t kErrorLogEntrySize = 64;

/// Decodes an Error Information log of whole 64-byte entries: those in use (error count not 0),
/// in the order the controller put them (newest first, §5.14.1.1). Fails when `data` is empty
/// or not a multiple of 64 bytes.
[[nodiscard]] Result<std::vector<ErrorLogEntry>> parse_error_log(std::span<const std::uint8_t> data);

/// The SMART / Health Information log (figure 196, 512 bytes).
struct HealthLog {
  std::uint8_t critical_warning = 0;        ///< byte 0: bit 0 spare, 1 temperature, 2 reliability,
                                            ///< 3 read only, 4 volatile backup, 5 PMR read only
  std::uint16_t temperature_kelvin = 0;     ///< bytes 2:1: composite temperature
  std::uint8_t available_spare = 0;         ///< byte 3: percent
  std::uint8_t available_spare_threshold = 0;  ///< byte 4: percent
  std::uint8_t percentage_used = 0;            ///< byte 5: may exceed 100
  std::uint8_t endurance_group_warning = 0;    ///< byte 6
  Counter128 data_units_read;                  ///< bytes 47:32: thousands of 512-byte units
  Counter128 data_units_written;               ///< bytes 63:48
  Counter128 host_reads;                       ///< bytes 79:64: read commands completed
  Counter128 host_writes;                      ///< bytes 95:80
  Counter128 controller_busy_minutes;          ///< bytes 111:96
  Counter128 power_cycles;                     ///< bytes 127:112
  Counter128 power_on_hours;                   ///< bytes 143:128
  Counter128 unsafe_shutdowns;                 ///< bytes 159:144
  Counter128 media_errors;                     ///< bytes 175:160
  Counter128 error_log_entries;                ///< bytes 191:176: over the controller's life
  std::uint32_t warning_temperature_minutes = 0;   ///< bytes 195:192
  std::uint32_t critical_temperature_minutes = 0;  ///< bytes 199:196
  std::array<std::uint16_t, 8> sensor_kelvin{};    ///< bytes 215:200: 0 = not reported
  std::array<std::uint32_t, 2> thermal_transitions{};  ///< bytes 223:216: TMT1, TMT2 counts
  std::array<std::uint32_t, 2> thermal_seconds{};      ///< bytes 231:224: time at TMT1, TMT2
};
inline constexpr std::size_t kHealthLogSize = 512;

/// Decodes the health log. Fails when `data` is shorter than 512 bytes.
[[nodiscard]] Result<HealthLog> parse_health_log(std::span<const std::uint8_t> data);

/// The Firmware Slot Information log (figure 197, 512 bytes).
struct FirmwareSlotLog {
  std::uint8_t active_slot = 0;      ///< AFI bits 2:0: the slot running now (1 to 7)
  std::uint8_t next_reset_slot = 0;  ///< AFI bits 6:4: the slot the next reset activates (0: none)
  std::array<std::string, 7> revisions;  ///< FRS1..FRS7, bytes 15:8 on: empty for an empty slot
};
inline constexpr std::size_t kFirmwareSlotLogSize = 512;

/// Decodes the firmware slot log. Fails when `data` is shorter than 512 bytes.
[[nodiscard]] Result<FirmwareSlotLog> parse_firmware_slot_log(std::span<const std::uint8_t> data);

}  // namespace vfe::nvme
