#include "vfio/info_caps.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/support/fake_vfio.hpp"

namespace vfe::vfio {
namespace {

using test::CapChain;
using ::testing::HasSubstr;

// A 32-byte fixed struct (like vfio_region_info) followed by `chain` laid out from offset 32.
std::vector<std::uint8_t> info_buffer(const CapChain& chain) {
  std::vector<std::uint8_t> buf(32, 0);
  const auto caps = chain.bytes(32);
  buf.insert(buf.end(), caps.begin(), caps.end());
  return buf;
}

void set_next(std::vector<std::uint8_t>& buf, std::uint32_t cap, std::uint32_t next) {
  std::memcpy(buf.data() + cap + offsetof(vfio_info_cap_header, next), &next, sizeof(next));
}

std::string walk_error(const std::vector<std::uint8_t>& buf, std::uint32_t first) {
  const auto caps = walk_info_caps(buf, first);
  if (caps) {
    ADD_FAILURE() << "walk succeeded with " << caps->size() << " capabilities";
    return {};
  }
  EXPECT_TRUE(caps.error().is(EINVAL)) << caps.error().message();
  return caps.error().detail;
}

TEST(InfoCaps, WalksAChainInOrderWithIdsVersionsAndOffsets) {
  CapChain chain;
  chain.add(VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, std::vector<std::uint8_t>(24, 0))
      .add(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1)
      .add(VFIO_REGION_INFO_CAP_TYPE, 2, std::vector<std::uint8_t>(8, 0));
  const auto buf = info_buffer(chain);
  const auto caps = walk_info_caps(buf, 32);
  ASSERT_TRUE(caps) << caps.error().message();
  ASSERT_EQ(caps->size(), 3U);
  EXPECT_EQ((*caps)[0].id, VFIO_REGION_INFO_CAP_SPARSE_MMAP);
  EXPECT_EQ((*caps)[0].version, 1);
  EXPECT_EQ((*caps)[0].offset, 32U);
  EXPECT_EQ((*caps)[1].id, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE);
  EXPECT_EQ((*caps)[1].offset, 32U + 8 + 24);
  EXPECT_EQ((*caps)[2].id, VFIO_REGION_INFO_CAP_TYPE);
  EXPECT_EQ((*caps)[2].version, 2);
  EXPECT_EQ((*caps)[2].offset, 32U + 8 + 24 + 8);
}

TEST(InfoCaps, OffsetZeroIsAnEmptyChain) {
  const std::vector<std::uint8_t> buf(32, 0xff);
  const auto caps = walk_info_caps(buf, 0);
  ASSERT_TRUE(caps);
  EXPECT_TRUE(caps->empty());
}

TEST(InfoCaps, ACapabilityPointingAtItselfIsACycle) {
  auto buf = info_buffer(CapChain().add(1, 1));
  set_next(buf, 32, 32);
  EXPECT_EQ(walk_error(buf, 32), "capability chain loops back to offset 0x20");
}

TEST(InfoCaps, ALongerCycleIsCaughtToo) {
  auto buf = info_buffer(CapChain().add(1, 1).add(2, 1).add(3, 1));
  set_next(buf, 48, 40);  // the third points back at the second
  EXPECT_EQ(walk_error(buf, 32), "capability chain loops back to offset 0x28");
}

TEST(InfoCaps, MisalignedOffsetsAreRefused) {
  auto buf = info_buffer(CapChain().add(1, 1).add(2, 1));
  EXPECT_THAT(walk_error(buf, 34), HasSubstr("offset 0x22 lies outside the 48-byte buffer or is "
                                             "misaligned"));
  set_next(buf, 32, 41);
  EXPECT_THAT(walk_error(buf, 32), HasSubstr("offset 0x29"));
}

TEST(InfoCaps, OffsetsOutsideTheBufferAreRefused) {
  auto buf = info_buffer(CapChain().add(1, 1));  // 40 bytes
  EXPECT_EQ(walk_error(buf, 4096),
            "capability at offset 0x1000 lies outside the 40-byte buffer or is misaligned");
  // A header that starts inside but runs past the end (4 of its 8 bytes are missing).
  EXPECT_THAT(walk_error(buf, 36), HasSubstr("offset 0x24 lies outside"));
  set_next(buf, 32, 0xfffffff0U);
  EXPECT_THAT(walk_error(buf, 32), HasSubstr("offset 0xfffffff0 lies outside"));
}

TEST(InfoCaps, AChainNeverPointsIntoArgsz) {
  // 0 ends a chain; 1..3 would overlap the argsz field every info struct starts with.
  auto buf = info_buffer(CapChain().add(1, 1));
  EXPECT_THAT(walk_error(buf, 1), HasSubstr("offset 0x1 lies outside"));
  set_next(buf, 32, 2);
  EXPECT_THAT(walk_error(buf, 32), HasSubstr("offset 0x2 lies outside"));
}

TEST(InfoCaps, AnEmptyBufferHasNoRoomForAnyCapability) {
  EXPECT_THAT(walk_error({}, 8), HasSubstr("offset 0x8 lies outside the 0-byte buffer"));
}

}  // namespace
}  // namespace vfe::vfio
