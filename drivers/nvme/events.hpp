#pragma once
/// \file
/// Asynchronous events (NVMe 1.4 §5.2): what the controller reports on its own, decoded.

#include <cstdint>
#include <string>
#include <vector>

namespace vfe::nvme {

/// §5.2.1 Asynchronous Event Type (completion Dword 0 bits 2:0).
enum class AsyncEventType : std::uint8_t {
  error = 0,        ///< an error not tied to one command (e.g. a write to an invalid doorbell)
  health = 1,       ///< SMART / health: reliability, temperature, spare capacity
  notice = 2,       ///< namespace attributes changed, firmware activation starting, ...
  command_set = 6,  ///< I/O command set specific
  vendor = 7,
};

/// One event as the controller reported it, with the log page it names as read for it (reading
/// it also clears the event, so the controller reports the next one of that type).
struct AsyncEvent {
  AsyncEventType type = AsyncEventType::error;
  std::uint8_t info = 0;      ///< Asynchronous Event Information (Dword 0 bits 15:8)
  std::uint8_t log_page = 0;  ///< the log page to read (Dword 0 bits 23:16)
  std::vector<std::uint8_t> log;  ///< that page (its first `event_log_bytes` bytes); empty when not read

  /// Decodes completion Dword 0 of an Asynchronous Event Request.
  [[nodiscard]] static AsyncEvent from_dw0(std::uint32_t dw0) noexcept;
  /// Type and information with their names, e.g. "SMART / health: temperature threshold
  /// (log page 0x02)".
  [[nodiscard]] std::string describe() const;
  /// A notice that the attributes of some namespace changed (information 0).
  [[nodiscard]] bool namespaces_changed() const noexcept {
    return type == AsyncEventType::notice && info == 0;
  }
};

/// How many bytes of log page `lid` an event reads: the error log's newest entry (64), the
/// SMART / health and firmware slot logs (512), the changed namespace list (4096); 0 for pages
/// this driver does not know (the event is reported without its page).
[[nodiscard]] std::uint32_t event_log_bytes(std::uint8_t lid) noexcept;

}  // namespace vfe::nvme
