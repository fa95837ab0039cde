#include "drivers/nvme/status.hpp"

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <span>

namespace vfe::nvme {
namespace {

// A run of consecutive status codes and their names (nullptr: reserved inside the run).
struct CodeRange {
  std::uint8_t sct;
  std::uint8_t first;
  std::span<const char* const> names;
};

// NVMe 1.4 §4.6.1.2.1: generic command status, 00h-22h.
constexpr std::array<const char*, 0x23> kGeneric = {
    "Successful Completion",
    "Invalid Command Opcode",
    "Invalid Field in Command",
    "Command ID Conflict",
    "Data Transfer Error",
    "Commands Aborted due to Power Loss Notification",
    "Internal Error",
    "Command Abort Requested",
    "Command Aborted due to SQ Deletion",
    "Command Aborted due to Failed Fused Command",
    "Command Aborted due to Missing Fused Command",
    "Invalid Namespace or Format",
    "Command Sequence Error",
    "Invalid SGL Segment Descriptor",
    "Invalid Number of SGL Descriptors",
    "Data SGL Length Invalid",
    "Metadata SGL Length Invalid",
    "SGL Descriptor Type Invalid",
    "Invalid Use of Controller Memory Buffer",
    "PRP Offset Invalid",
    "Atomic Write Unit Exceeded",
    "Operation Denied",
    "SGL Offset Invalid",
    nullptr,  // 17h reserved
    "Host Identifier Inconsistent Format",
    "Keep Alive Timer Expired",
    "Keep Alive Timeout Invalid",
    "Command Aborted due to Preempt and Abort",
    "Sanitize Failed",
    "Sanitize In Progress",
    "SGL Data Block Granularity Invalid",
    "Command Not Supported for Queue in CMB",
    "Namespace is Write Protected",
    "Command Interrupted",
    "Transient Transport Error",
};

// §4.6.1.2.1: generic command status of the NVM command set, 80h-84h.
constexpr std::array<const char*, 5> kGenericNvm = {
    "LBA Out of Range", "Capacity Exceeded", "Namespace Not Ready", "Reservation Conflict",
    "Format In Progress",
};

// §4.6.1.2.2: command specific status, 00h-25h (70h-7Fh, directive specific, have no names).
constexpr std::array<const char*, 0x26> kCommandSpecific = {
    "Completion Queue Invalid",
    "Invalid Queue Identifier",
    "Invalid Queue Size",
    "Abort Command Limit Exceeded",
    nullptr,  // 04h reserved
    "Asynchronous Event Request Limit Exceeded",
    "Invalid Firmware Slot",
    "Invalid Firmware Image",
    "Invalid Interrupt Vector",
    "Invalid Log Page",
    "Invalid Format",
    "Firmware Activation Requires Conventional Reset",
    "Invalid Queue Deletion",
    "Feature Identifier Not Saveable",
    "Feature Not Changeable",
    "Feature Not Namespace Specific",
    "Firmware Activation Requires NVM Subsystem Reset",
    "Firmware Activation Requires Controller Level Reset",
    "Firmware Activation Requires Maximum Time Violation",
    "Firmware Activation Prohibited",
    "Overlapping Range",
    "Namespace Insufficient Capacity",
    "Namespace Identifier Unavailable",
    nullptr,  // 17h reserved
    "Namespace Already Attached",
    "Namespace Is Private",
    "Namespace Not Attached",
    "Thin Provisioning Not Supported",
    "Controller List Invalid",
    "Device Self-test In Progress",
    "Boot Partition Write Prohibited",
    "Invalid Controller Identifier",
    "Invalid Secondary Controller State",
    "Invalid Number of Controller Resources",
    "Invalid Resource Identifier",
    "Sanitize Prohibited While Persistent Memory Region is Enabled",
    "ANA Group Identifier Invalid",
    "ANA Attach Failed",
};

// §4.6.1.2.2: command specific status of the NVM command set, 80h-82h.
constexpr std::array<const char*, 3> kCommandSpecificNvm = {
    "Conflicting Attributes", "Invalid Protection Information",
    "Attempted Write to Read Only Range",
};

// §4.6.1.2.3: media and data integrity errors of the NVM command set, 80h-87h.
constexpr std::array<const char*, 8> kMedia = {
    "Write Fault",
    "Unrecovered Read Error",
    "End-to-end Guard Check Error",
    "End-to-end Application Tag Check Error",
    "End-to-end Reference Tag Check Error",
    "Compare Failure",
    "Access Denied",
    "Deallocated or Unwritten Logical Block",
};

// §4.6.1.2.4: path related status.
constexpr std::array<const char*, 1> kPathInternal = {"Internal Path Error"};
constexpr std::array<const char*, 3> kPathAna = {
    "Asymmetric Access Persistent Loss", "Asymmetric Access Inaccessible",
    "Asymmetric Access Transition",
};
constexpr std::array<const char*, 3> kPathHost = {
    "Controller Pathing Error", "Host Pathing Error", "Command Aborted By Host",
};

constexpr std::array<CodeRange, 8> kRanges = {{
    {sct::kGeneric, 0x00, kGeneric},
    {sct::kGeneric, 0x80, kGenericNvm},
    {sct::kCommandSpecific, 0x00, kCommandSpecific},
    {sct::kCommandSpecific, 0x80, kCommandSpecificNvm},
    {sct::kMediaError, 0x80, kMedia},
    {sct::kPathRelated, 0x00, kPathInternal},
    {sct::kPathRelated, 0x60, kPathAna},
    {sct::kPathRelated, 0x70, kPathHost},
}};

// The codes that mean the command was aborted before it finished, not that it was wrong.
bool is_abort(Status s) noexcept {
  if (s.sct == sct::kPathRelated) {
    return s.sc == 0x72;  // Command Aborted By Host
  }
  if (s.sct != sct::kGeneric) {
    return false;
  }
  switch (s.sc) {
    case 0x05:  // power loss notification
    case sc::kAbortRequested:
    case 0x08:  // SQ deletion
    case 0x09:  // failed fused command
    case 0x0a:  // missing fused command
    case 0x1b:  // preempt and abort
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* status_type_name(std::uint8_t type) noexcept {
  switch (type) {
    case sct::kGeneric:
      return "generic";
    case sct::kCommandSpecific:
      return "command specific";
    case sct::kMediaError:
      return "media and data integrity";
    case sct::kPathRelated:
      return "path related";
    case sct::kVendorSpecific:
      return "vendor specific";
    default:
      return "reserved";
  }
}

const char* status_code_name(Status s) noexcept {
  for (const CodeRange& r : kRanges) {
    if (r.sct != s.sct || s.sc < r.first) {
      continue;
    }
    const std::size_t i = s.sc - r.first;
    if (i < r.names.size()) {
      return r.names[i];
    }
  }
  return nullptr;
}

std::string to_string(Status s) {
  if (s.ok()) {
    return "success";
  }
  const char* name = status_code_name(s);
  return fmt::format("{} ({} status {:#04x}{})", name != nullptr ? name : "unknown status",
                     status_type_name(s.sct), s.sc, s.dnr ? ", do not retry" : "");
}

int to_errno(Status s) noexcept {
  if (s.ok()) {
    return 0;
  }
  if (is_abort(s)) {
    return ECANCELED;
  }
  if (s.sct == sct::kGeneric) {
    switch (s.sc) {
      case sc::kInvalidOpcode:
      case sc::kInvalidField:
      case sc::kInvalidNamespace:
        return EINVAL;
      case 0x1f:  // Command Not Supported for Queue in CMB
        return EOPNOTSUPP;
      case 0x20:  // Namespace is Write Protected
        return EROFS;
      case sc::kLbaOutOfRange:
        return ERANGE;
      case 0x81:  // Capacity Exceeded
        return ENOSPC;
      default:
        return EIO;
    }
  }
  if (s.sct == sct::kMediaError && s.sc >= 0x82 && s.sc <= 0x85) {
    return EILSEQ;  // end-to-end guard, application tag, reference tag check; compare failure
  }
  if (s.sct == sct::kCommandSpecific) {
    if (s.sc == 0x1b) {  // Thin Provisioning Not Supported
      return EOPNOTSUPP;
    }
    if (s.sc == 0x82) {  // Attempted Write to Read Only Range
      return EROFS;
    }
  }
  return EIO;
}

Error status_error(Status s, const char* op, const std::string& what) {
  std::string detail = what.empty() ? to_string(s) : fmt::format("{}: {}", what, to_string(s));
  if (s.more) {
    detail += "; the controller's Error Information log page has more";
  }
  // A success status passed here is the caller's bug; still give the Error a nonzero code so
  // that nothing mistakes it for success.
  const int err = s.ok() ? EIO : to_errno(s);
  return Error::from_errno(err, op, std::move(detail));
}

}  // namespace vfe::nvme
