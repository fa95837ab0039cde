#include "vfio/bdf.hpp"

#include <fmt/format.h>


namespace vfe::vfio {
namespace {

// Exactly `digits` hex digits (no sign, no prefix, no spaces) into `out`; false otherwise.
// (A bool and an out-parameter rather than std::optional: g++ 12 reports a false
// maybe-uninitialized on four optionals read together.)
bool parse_hex(std::string_view text, std::size_t min_digits, std::size_t max_digits,
               std::uint32_t& out) {
  if (text.size() < min_digits || text.size() > max_digits) {
    return false;
  }
  std::uint32_t v = 0;
  for (const char c : text) {
    std::uint32_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<std::uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<std::uint32_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<std::uint32_t>(c - 'A' + 10);
    } else {
      return false;
    }
    v = (v << 4) | digit;
  }
  out = v;
  return true;
}

// `text` with control and non-ASCII bytes written as escapes, so that a stray newline (a BDF
// read from a file) shows in the message instead of breaking it.
std::string printable(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    out += c == '\n' ? std::string("\\n")
           : c == '\t' ? std::string("\\t")
           : u < 0x20 || u > 0x7e ? fmt::format("\\x{:02x}", u)
                                  : std::string(1, c);
  }
  return out;
}

Error bad_bdf(std::string_view text, std::string_view why) {
  return Error::invalid("parse PCI address",
                        fmt::format("'{}' is not a PCI address ({}); expected DDDD:BB:DD.F or "
                                    "BB:DD.F, e.g. 0000:81:00.0",
                                    printable(text), why));
}

}  // namespace

Result<Bdf> Bdf::parse(std::string_view text) {
  // Split from the right: "[domain:]bus:device.function".
  const auto dot = text.rfind('.');
  if (dot == std::string_view::npos) {
    return bad_bdf(text, "no '.' before the function number");
  }
  const auto colon = text.rfind(':', dot);
  if (colon == std::string_view::npos) {
    return bad_bdf(text, "no ':' before the device number");
  }
  const auto dom_colon = colon == 0 ? std::string_view::npos : text.rfind(':', colon - 1);
  const std::string_view dom_s =
      dom_colon == std::string_view::npos ? std::string_view{} : text.substr(0, dom_colon);
  const std::string_view bus_s =
      text.substr(dom_colon == std::string_view::npos ? 0 : dom_colon + 1,
                  colon - (dom_colon == std::string_view::npos ? 0 : dom_colon + 1));
  const std::string_view dev_s = text.substr(colon + 1, dot - colon - 1);
  const std::string_view fn_s = text.substr(dot + 1);

  std::uint32_t dom = 0;
  std::uint32_t bus = 0;
  std::uint32_t dev = 0;
  std::uint32_t fn = 0;
  if (dom_colon != std::string_view::npos && !parse_hex(dom_s, 4, 8, dom)) {
    return bad_bdf(text, "the domain must be 4 to 8 hex digits");
  }
  if (!parse_hex(bus_s, 2, 2, bus) || !parse_hex(dev_s, 2, 2, dev) || !parse_hex(fn_s, 1, 1, fn)) {
    return bad_bdf(text, "each field must be hex digits: 2 for bus and device, 1 for function");
  }
  if (dev > 0x1f) {
    return bad_bdf(text, "the device number must be at most 1f");
  }
  if (fn > 7) {
    return bad_bdf(text, "the function number must be at most 7");
  }
  return Bdf{dom, static_cast<std::uint8_t>(bus), static_cast<std::uint8_t>(dev),
             static_cast<std::uint8_t>(fn)};
}

std::string Bdf::to_string() const {
  return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", domain, bus, device, function);
}

}  // namespace vfe::vfio
