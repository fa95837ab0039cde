#pragma once
/// \file
/// The error type of every setup path in vfio-engine.

#include <cerrno>
#include <string>
#include <system_error>

namespace vfe {

/// What went wrong, where, and what to do about it.
///
/// `code` is the machine-readable cause (usually an errno in std::generic_category()), `op` names
/// the operation that failed ("VFIO_GROUP_SET_CONTAINER", "open") and must point at a string with
/// static storage duration, and `detail` is the human part: which object, why, and the remedy
/// ("group 7 is not viable: 0000:01:00.1 is bound to ixgbe; bind it to vfio-pci or unbind it").
/// Copyable and cheap to move; carries no ownership of anything else.
struct Error {
  std::error_code code;
  const char* op = "";
  std::string detail;

  /// An error from an errno value (as left by a failed system call).
  [[nodiscard]] static Error from_errno(int err, const char* op, std::string detail);
  /// An error for input that is wrong no matter what the system state is (EINVAL).
  [[nodiscard]] static Error invalid(const char* op, std::string detail);
  /// A path that vfio-engine (or this kernel, or this device) does not support (ENOTSUP).
  [[nodiscard]] static Error not_supported(const char* op, std::string detail);

  /// "op: detail (Reason)": one line a person can act on. The reason is left out when `detail`
  /// already says everything (code == 0).
  [[nodiscard]] std::string message() const;

  /// True when the cause is the given errno value in the generic category.
  [[nodiscard]] bool is(int err) const noexcept { return code == std::errc(err); }
};

}  // namespace vfe
