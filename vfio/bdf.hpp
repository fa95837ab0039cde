#pragma once
/// \file
/// `Bdf`: a PCI function address (domain:bus:device.function).

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace vfe::vfio {

/// A PCI address as sysfs spells it: "0000:81:00.0". Plain value type.
struct Bdf {
  std::uint32_t domain = 0;
  std::uint8_t bus = 0;
  std::uint8_t device = 0;    ///< 0..31
  std::uint8_t function = 0;  ///< 0..7

  /// Parses "DDDD:BB:DD.F" (4 to 8 hex digits of domain) or "BB:DD.F" (domain 0), in either
  /// case of hex digit. Anything else is an `EINVAL` error that shows the expected form.
  [[nodiscard]] static Result<Bdf> parse(std::string_view text);

  /// The canonical sysfs name: lower-case hex, "%04x:%02x:%02x.%x".
  [[nodiscard]] std::string to_string() const;

  friend constexpr auto operator<=>(const Bdf&, const Bdf&) = default;
};

}  // namespace vfe::vfio
