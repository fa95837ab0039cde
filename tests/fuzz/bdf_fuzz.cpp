// Fuzzes Bdf::parse and Bdf::to_string (vfio/bdf.hpp) with the input as text. Checks:
//  - a parsed address is in range (device <= 0x1f, function <= 7) and round-trips:
//    parse(to_string(b)) == b;
//  - text already in the canonical form parses back to itself: lower-case "dddd:bb:dd.f" gives
//    to_string() == text, and lower-case "bb:dd.f" gives "0000:" + text;
//  - an error is EINVAL and shows the expected form ("DDDD:BB:DD.F");
//  - any Bdf made from the input's first 7 bytes round-trips through to_string and parse.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "tests/fuzz/fuzz_check.hpp"
#include "vfio/bdf.hpp"

namespace {

using vfe::vfio::Bdf;

void round_trip(const Bdf& b) {
  const std::string text = b.to_string();
  const auto back = Bdf::parse(text);
  VFE_FUZZ_CHECK(back && *back == b && back->to_string() == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (const auto bdf = Bdf::parse(text)) {
    VFE_FUZZ_CHECK(bdf->device <= 0x1f && bdf->function <= 7);
    round_trip(*bdf);
    const bool lower =
        std::none_of(text.begin(), text.end(), [](char c) { return c >= 'A' && c <= 'F'; });
    if (lower && text.size() == 12) {
      VFE_FUZZ_CHECK(bdf->to_string() == text);
    }
    if (lower && text.size() == 7) {
      VFE_FUZZ_CHECK(bdf->to_string() == "0000:" + std::string(text));
    }
  } else {
    VFE_FUZZ_CHECK(bdf.error().code.value() == EINVAL);
    VFE_FUZZ_CHECK(bdf.error().detail.find("DDDD:BB:DD.F") != std::string::npos);
  }

  if (size >= 7) {
    Bdf made;
    std::memcpy(&made.domain, data, sizeof(made.domain));
    made.bus = data[4];
    made.device = data[5] & 0x1fU;
    made.function = data[6] & 0x7U;
    round_trip(made);
  }
  return 0;
}
