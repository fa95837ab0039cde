#pragma once
/// \file
/// End-to-end protection information (NVM Command Set 1.0 §5.2, "16b Guard" format): the 8 bytes
/// a namespace formatted with protection keeps in each block's metadata, and the command fields
/// that ask the controller to generate (PRACT) or check (PRCHK) them. Pure functions, noexcept, no
/// allocation, so a driver can make or check tuples for data it writes or reads itself.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace vfe::nvme::pi {

/// PRCHK bits (the low three of PRINFO): which fields the controller checks.
inline constexpr std::uint8_t kCheckGuard = 0x4;
inline constexpr std::uint8_t kCheckApp = 0x2;
inline constexpr std::uint8_t kCheckRef = 0x1;
inline constexpr std::uint8_t kCheckAll = kCheckGuard | kCheckApp | kCheckRef;

/// Bytes of one 16b Guard tuple.
inline constexpr std::size_t kTupleBytes = 8;

/// CRC-16 T10-DIF over `bytes`, continuing from `crc`: polynomial 8BB7h, initial value 0, no
/// reflection and no final XOR (the guard, §5.2.1.1).
[[nodiscard]] std::uint16_t crc16(std::span<const std::uint8_t> bytes, std::uint16_t crc = 0) noexcept;

/// One tuple, in host order. On the medium each field is big endian: guard, then application
/// tag, then reference tag.
struct Tuple {
  std::uint16_t guard = 0;
  std::uint16_t app_tag = 0;
  std::uint32_t ref_tag = 0;
  friend bool operator==(const Tuple&, const Tuple&) = default;
};

[[nodiscard]] std::array<std::uint8_t, kTupleBytes> encode(const Tuple& t) noexcept;
[[nodiscard]] Tuple decode(std::span<const std::uint8_t, kTupleBytes> raw) noexcept;

/// The tuple of one block: the guard covers the block's data and, where the protection
/// information is the last bytes of its metadata, the metadata bytes before it (`meta_before`,
/// empty otherwise).
[[nodiscard]] Tuple block_tuple(std::span<const std::uint8_t> data, std::span<const std::uint8_t> meta_before,
                               std::uint16_t app_tag, std::uint32_t ref_tag) noexcept;

}  // namespace vfe::nvme::pi
