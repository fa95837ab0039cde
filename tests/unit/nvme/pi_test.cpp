// Protection information (16b Guard): the guard against the published CRC-16 T10-DIF codewords
// (T10 03-290r0 §4.5.6, the test cases the NVM Command Set repeats) and the catalogue's check
// value, and the tuple's big-endian layout.
#include "drivers/nvme/pi.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace vfe::nvme::pi {
namespace {

std::vector<std::uint8_t> bytes32(std::uint8_t (*at)(std::size_t)) {
  std::vector<std::uint8_t> v(32);
  for (std::size_t i = 0; i < v.size(); ++i) {
    v[i] = at(i);
  }
  return v;
}

TEST(PiGuard, TheT10Codewords) {
  EXPECT_EQ(crc16(bytes32([](std::size_t) -> std::uint8_t { return 0x00; })), 0x0000);
  EXPECT_EQ(crc16(bytes32([](std::size_t) -> std::uint8_t { return 0xff; })), 0xa293);
  EXPECT_EQ(crc16(bytes32([](std::size_t i) { return static_cast<std::uint8_t>(i); })), 0x0224);
  EXPECT_EQ(crc16(bytes32([](std::size_t i) -> std::uint8_t { return i < 2 ? 0xff : 0x00; })), 0x21b8);
  EXPECT_EQ(crc16(bytes32([](std::size_t i) { return static_cast<std::uint8_t>(0xff - i); })), 0xa0b7);
}

TEST(PiGuard, CheckValueAndContinuation) {
  constexpr std::string_view kCheck = "123456789";
  const auto* p = reinterpret_cast<const std::uint8_t*>(kCheck.data());
  EXPECT_EQ(crc16({p, kCheck.size()}), 0xd0db) << "CRC-16/T10-DIF's catalogue check value";
  EXPECT_EQ(crc16({p + 4, 5}, crc16({p, 4})), 0xd0db) << "a guard can run over data, then metadata";
}

TEST(PiTuple, BigEndianGuardAppRef) {
  const Tuple t{0x1234, 0xabcd, 0x01020304};
  const auto raw = encode(t);
  EXPECT_EQ(raw, (std::array<std::uint8_t, 8>{0x12, 0x34, 0xab, 0xcd, 0x01, 0x02, 0x03, 0x04}));
  EXPECT_EQ(decode(raw), t);
}

TEST(PiTuple, GuardCoversMetadataBeforeTheTuple) {
  std::vector<std::uint8_t> block(512, 0x5a);
  const std::array<std::uint8_t, 8> meta{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<std::uint8_t> both = block;
  both.insert(both.end(), meta.begin(), meta.end());
  const Tuple t = block_tuple(block, meta, 0x0042, 7);
  EXPECT_EQ(t.guard, crc16(both));
  EXPECT_NE(t.guard, block_tuple(block, {}, 0x0042, 7).guard);
  EXPECT_EQ(t.app_tag, 0x0042);
  EXPECT_EQ(t.ref_tag, 7U);
}

}  // namespace
}  // namespace vfe::nvme::pi
