#pragma once
// Building the little-endian structures an NVMe controller writes (Identify data, log pages) by
// hand, for the parsers' tests.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace vfe::test {

using Bytes = std::vector<std::uint8_t>;

template <class T>
void put_le(Bytes& page, std::size_t offset, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    page.at(offset + i) = static_cast<std::uint8_t>(value >> (8 * i));
  }
}

// An ASCII field as a controller writes it: left-justified, space padded.
inline void put_ascii(Bytes& page, std::size_t offset, std::size_t len, std::string_view text) {
  for (std::size_t i = 0; i < len; ++i) {
    page.at(offset + i) = i < text.size() ? static_cast<std::uint8_t>(text[i]) : ' ';
  }
}

}  // namespace vfe::test
