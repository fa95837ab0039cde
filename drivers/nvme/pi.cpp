#include "drivers/nvme/pi.hpp"

namespace vfe::nvme::pi {
namespace {

constexpr std::uint16_t kPoly = 0x8bb7;

// The CRC of each byte value as the high byte of an otherwise empty register, MSB first.
constexpr std::array<std::uint16_t, 256> make_table() noexcept {
  std::array<std::uint16_t, 256> table{};
  for (std::uint32_t byte = 0; byte < 256; ++byte) {
    std::uint32_t crc = byte << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000U) != 0 ? (crc << 1) ^ kPoly : crc << 1;
    }
    table[byte] = static_cast<std::uint16_t>(crc);
  }
  return table;
}

constexpr std::array<std::uint16_t, 256> kTable = make_table();

}  // namespace

std::uint16_t crc16(std::span<const std::uint8_t> bytes, std::uint16_t crc) noexcept {
  for (const std::uint8_t b : bytes) {
    crc = static_cast<std::uint16_t>((crc << 8) ^ kTable[((crc >> 8) ^ b) & 0xffU]);
  }
  return crc;
}

std::array<std::uint8_t, kTupleBytes> encode(const Tuple& t) noexcept {
  return {static_cast<std::uint8_t>(t.guard >> 8),    static_cast<std::uint8_t>(t.guard),
          static_cast<std::uint8_t>(t.app_tag >> 8),  static_cast<std::uint8_t>(t.app_tag),
          static_cast<std::uint8_t>(t.ref_tag >> 24), static_cast<std::uint8_t>(t.ref_tag >> 16),
          static_cast<std::uint8_t>(t.ref_tag >> 8),  static_cast<std::uint8_t>(t.ref_tag)};
}

Tuple decode(std::span<const std::uint8_t, kTupleBytes> raw) noexcept {
  return Tuple{static_cast<std::uint16_t>((raw[0] << 8) | raw[1]), static_cast<std::uint16_t>((raw[2] << 8) | raw[3]),
               (std::uint32_t{raw[4]} << 24) | (std::uint32_t{raw[5]} << 16) | (std::uint32_t{raw[6]} << 8) | raw[7]};
}

Tuple block_tuple(std::span<const std::uint8_t> data, std::span<const std::uint8_t> meta_before, std::uint16_t app_tag,
                 std::uint32_t ref_tag) noexcept {
  return Tuple{crc16(meta_before, crc16(data)), app_tag, ref_tag};
}

}  // namespace vfe::nvme::pi
