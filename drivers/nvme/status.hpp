#pragma once
/// \file
/// NVMe command status (NVMe 1.4 §4.6.1): decoding the status field of a completion queue entry
/// into something a person can act on, and into an errno for the data path.

#include <cstdint>
#include <string>

#include "base/error.hpp"

namespace vfe::nvme {

/// Status code types (§4.6.1.2, figure 126).
namespace sct {
inline constexpr std::uint8_t kGeneric = 0;
inline constexpr std::uint8_t kCommandSpecific = 1;
inline constexpr std::uint8_t kMediaError = 2;
inline constexpr std::uint8_t kPathRelated = 3;
inline constexpr std::uint8_t kVendorSpecific = 7;
}  // namespace sct

/// The status field of a completion, decoded. Trivially copyable; `ok()` for success.
struct Status {
  std::uint8_t sct = 0;  ///< status code type (3 bits)
  std::uint8_t sc = 0;   ///< status code (8 bits)
  std::uint8_t crd = 0;  ///< command retry delay (2 bits)
  bool more = false;     ///< M: more information in the Error Information log page
  bool dnr = false;      ///< DNR: do not retry, the same command will fail again

  /// Decodes CQE dword 3 bits 31:16, i.e. `Cqe::status` including the phase tag in bit 0
  /// (which is ignored).
  [[nodiscard]] static constexpr Status from_cqe(std::uint16_t status_and_phase) noexcept {
    const unsigned f = status_and_phase >> 1;  // bits 15:1 are the status field
    return Status{static_cast<std::uint8_t>((f >> 8) & 0x7), static_cast<std::uint8_t>(f & 0xff),
                  static_cast<std::uint8_t>((f >> 11) & 0x3), ((f >> 13) & 1) != 0,
                  ((f >> 14) & 1) != 0};
  }
  [[nodiscard]] constexpr bool ok() const noexcept { return sct == 0 && sc == 0; }
  /// Same type and code (the retry hints are not compared).
  [[nodiscard]] constexpr bool is(std::uint8_t type, std::uint8_t code) const noexcept {
    return sct == type && sc == code;
  }
};

/// A few codes the driver and its tests look for by name.
namespace sc {
inline constexpr std::uint8_t kSuccess = 0x00;
inline constexpr std::uint8_t kInvalidOpcode = 0x01;
inline constexpr std::uint8_t kInvalidField = 0x02;
inline constexpr std::uint8_t kAbortRequested = 0x07;
inline constexpr std::uint8_t kInvalidNamespace = 0x0b;
inline constexpr std::uint8_t kLbaOutOfRange = 0x80;  ///< generic, NVM command set
inline constexpr std::uint8_t kGuardCheck = 0x82;      ///< media: End-to-end Guard Check Error
inline constexpr std::uint8_t kAppTagCheck = 0x83;     ///< media: End-to-end Application Tag Check Error
inline constexpr std::uint8_t kRefTagCheck = 0x84;     ///< media: End-to-end Reference Tag Check Error
inline constexpr std::uint8_t kCompareFailure = 0x85;  ///< media and data integrity
inline constexpr std::uint8_t kInvalidQueueSize = 0x02;  ///< command specific
inline constexpr std::uint8_t kInvalidQueueId = 0x01;    ///< command specific
}  // namespace sc

/// A failed command that may succeed when sent again (§4.6.1.2): Do Not Retry clear, and not a
/// Compare Failure or an application or reference tag check error, which are the controller's
/// answer that the data or its tags differ from what the command expects rather than a fault
/// (QEMU 7.2 sets no DNR on them). A guard check error is retried: it may be a transfer fault.
[[nodiscard]] constexpr bool worth_retry(Status s) noexcept {
  return !s.ok() && !s.dnr && !s.is(sct::kMediaError, sc::kCompareFailure) &&
         !s.is(sct::kMediaError, sc::kAppTagCheck) && !s.is(sct::kMediaError, sc::kRefTagCheck);
}

/// The name of a status code type: "generic", "command specific", "media and data integrity",
/// "path related", "vendor specific", or "reserved".
[[nodiscard]] const char* status_type_name(std::uint8_t type) noexcept;
/// The specification's name of a status code ("LBA Out of Range"), or nullptr when the code is
/// reserved or vendor specific.
[[nodiscard]] const char* status_code_name(Status s) noexcept;
/// "LBA Out of Range (generic status 0x80, do not retry)"; "success" for ok().
[[nodiscard]] std::string to_string(Status s);
/// The errno that best describes `s` for callers that only look at numbers (0 for success):
/// ERANGE for LBA out of range, ENOSPC for capacity exceeded, EROFS for a write-protected
/// namespace, EINVAL for invalid opcode/field/namespace, EOPNOTSUPP for an unsupported command,
/// ECANCELED for aborted commands, EILSEQ for data that is not what it should be (Compare
/// Failure; end-to-end guard, application or reference tag check errors, as Linux's
/// BLK_STS_PROTECTION), EIO for the rest.
[[nodiscard]] int to_errno(Status s) noexcept;
/// An Error for a setup path: `op` failed with this status ("identify controller: Invalid Field
/// in Command (generic status 0x02, do not retry)").
[[nodiscard]] Error status_error(Status s, const char* op, const std::string& what);

}  // namespace vfe::nvme
