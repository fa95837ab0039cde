#pragma once
/// \file
/// Reading the little-endian structures an NVMe controller writes (Identify data, log pages):
/// byte by byte, so no unaligned or aliasing access happens and the host's byte order does not
/// matter. The caller checks that `offset + size` lies inside `data`.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace vfe::nvme::wire {

/// The little-endian unsigned integer of type T at `offset`.
template <class T>
[[nodiscard]] T read_le(std::span<const std::uint8_t> data, std::size_t offset) noexcept {
  T value = 0;
  for (std::size_t i = sizeof(T); i-- > 0;) {
    value = static_cast<T>((value << 8) | data[offset + i]);
  }
  return value;
}

/// An ASCII field of `len` bytes, padded with spaces on the right. Trailing spaces and NULs go;
/// any other byte that is not printable ASCII becomes '?', so a log line stays one line.
[[nodiscard]] inline std::string read_ascii(std::span<const std::uint8_t> data, std::size_t offset,
                                            std::size_t len) {
  std::size_t end = len;
  while (end > 0 && (data[offset + end - 1] == ' ' || data[offset + end - 1] == 0)) {
    --end;
  }
  std::string out(end, '?');
  for (std::size_t i = 0; i < end; ++i) {
    const std::uint8_t c = data[offset + i];
    if (c >= 0x20 && c < 0x7f) {
      out[i] = static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace vfe::nvme::wire
