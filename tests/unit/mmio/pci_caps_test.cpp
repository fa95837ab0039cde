#include "mmio/pci_caps.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <ostream>
#include <string>
#include <vector>

#include "tests/unit/mmio/config_image.hpp"

namespace vfe::mmio {

// Readable failure output for EXPECT_EQ on capabilities (found by argument-dependent lookup).
void PrintTo(const Capability& cap, std::ostream* os) {
  *os << describe(cap) << " at 0x" << std::hex << cap.offset << " v" << std::dec
      << unsigned{cap.version};
}

namespace {

using test::ConfigImage;
using ::testing::HasSubstr;
using namespace pci;  // NOLINT: the register names read best unqualified here

// The detail of the EINVAL error that walking `config` must produce ("" if it succeeds).
std::string walk_error(std::span<const std::uint8_t> config) {
  const auto caps = walk_capabilities(config);
  if (caps) {
    ADD_FAILURE() << "walk succeeded with " << caps->size() << " capabilities";
    return {};
  }
  EXPECT_TRUE(caps.error().is(EINVAL)) << caps.error().message();
  return caps.error().detail;
}

// Modelled on QEMU's NVMe controller: MSI-X (65 vectors, table and PBA in BAR 0), PCI Express and
// PM, chained out of address order; then AER v2 and SR-IOV v1 in extended space.
ConfigImage nvme_like() {
  ConfigImage image;
  image.first_cap(0x40).cap(0x40, kCapMsix, 0x80).cap(0x80, kCapPcie, 0x60).cap(0x60, kCapPm, 0);
  image.put16(0x42, 64).put32(0x44, 0x2000).put32(0x48, 0x3000);
  image.ext_cap(0x100, kExtCapAer, 2, 0x148).ext_cap(0x148, kExtCapSriov, 1, 0);
  return image;
}

const std::vector<Capability> kNvmeStandard{
    {kCapMsix, 0x40, false, 0}, {kCapPcie, 0x80, false, 0}, {kCapPm, 0x60, false, 0}};

TEST(PciCaps, WalksBothChainsInChainOrder) {
  const auto image = nvme_like();
  const auto caps = walk_capabilities(image.bytes());
  ASSERT_TRUE(caps) << caps.error().message();
  std::vector<Capability> expected = kNvmeStandard;
  expected.push_back({kExtCapAer, 0x100, true, 2});
  expected.push_back({kExtCapSriov, 0x148, true, 1});
  EXPECT_EQ(*caps, expected);
}

TEST(PciCaps, NoCapabilityListMeansNoCapabilities) {
  auto image = nvme_like();
  image.put16(kStatus, 0).put32(0x100, 0);  // the pointer at 0x34 is left behind and ignored
  const auto caps = walk_capabilities(image.bytes());
  ASSERT_TRUE(caps) << caps.error().message();
  EXPECT_TRUE(caps->empty());
}

TEST(PciCaps, ConventionalSnapshotSkipsTheExtendedChain) {
  const auto image = nvme_like();
  const auto caps = walk_capabilities(image.bytes().first(kConfigSize));
  ASSERT_TRUE(caps) << caps.error().message();
  EXPECT_EQ(*caps, kNvmeStandard);
}

TEST(PciCaps, ZeroOrAllOnesAt0x100MeansNoExtendedCapabilities) {
  for (const std::uint32_t header : {0x00000000U, 0xffffffffU}) {
    auto image = nvme_like();
    image.put32(0x100, header);
    const auto caps = walk_capabilities(image.bytes());
    ASSERT_TRUE(caps) << caps.error().message();
    EXPECT_EQ(*caps, kNvmeStandard) << std::hex << header;
  }
}

TEST(PciCaps, MasksTheReservedPointerBits) {
  ConfigImage image;
  image.first_cap(0x43).cap(0x40, kCapMsi, 0x53).cap(0x50, kCapPm, 0x02);  // 0x02 -> 0: the end
  image.ext_cap(0x100, kExtCapAer, 1, 0x143).ext_cap(0x140, kExtCapDsn, 1, 0);
  const auto caps = walk_capabilities(image.bytes());
  ASSERT_TRUE(caps) << caps.error().message();
  const std::vector<Capability> expected{{kCapMsi, 0x40, false, 0},
                                         {kCapPm, 0x50, false, 0},
                                         {kExtCapAer, 0x100, true, 1},
                                         {kExtCapDsn, 0x140, true, 1}};
  EXPECT_EQ(*caps, expected);
}

TEST(PciCaps, AcceptsTheLongestPossibleChains) {
  ConfigImage image;
  image.first_cap(0x40);
  for (unsigned off = 0x40; off < kConfigSize; off += 4) {
    image.cap(off, kCapVendor, static_cast<std::uint8_t>(off + 4 < kConfigSize ? off + 4 : 0));
  }
  for (unsigned off = kConfigSize; off < kExtConfigSize; off += 4) {
    image.ext_cap(off, kExtCapVendor, 1, static_cast<std::uint16_t>(off + 4) & 0xfff);
  }
  const auto caps = walk_capabilities(image.bytes());
  ASSERT_TRUE(caps) << caps.error().message();
  EXPECT_EQ(caps->size(), 48U + 960U);
}

TEST(PciCaps, RejectsAStandardChainThatLoops) {
  ConfigImage image;
  image.first_cap(0x40).cap(0x40, kCapMsi, 0x50).cap(0x50, kCapPm, 0x40);
  const auto detail = walk_error(image.bytes());
  EXPECT_THAT(detail, HasSubstr("loops back to 0x40 (already visited)"));
  EXPECT_THAT(detail, HasSubstr("capability at 0x50"));
}

TEST(PciCaps, RejectsACapabilityPointingAtItself) {
  ConfigImage image;
  image.first_cap(0x40).cap(0x40, kCapPm, 0x60).cap(0x60, kCapMsi, 0x63);  // 0x63 is 0x60
  EXPECT_THAT(walk_error(image.bytes()), HasSubstr("loops back to 0x60"));
}

TEST(PciCaps, RejectsAnExtendedChainThatLoops) {
  ConfigImage image;
  image.ext_cap(0x100, kExtCapAer, 2, 0x140).ext_cap(0x140, kExtCapAcs, 1, 0x100);
  const auto detail = walk_error(image.bytes());
  EXPECT_THAT(detail, HasSubstr("loops back to 0x100 (already visited)"));
  EXPECT_THAT(detail, HasSubstr("capability at 0x140"));
}

TEST(PciCaps, RejectsAPointerIntoTheHeader) {
  ConfigImage first;
  first.first_cap(0x20);
  EXPECT_THAT(walk_error(first.bytes()),
              HasSubstr("capabilities pointer at 0x34 points to 0x20, inside the 64-byte header"));
  ConfigImage next;
  next.first_cap(0x40).cap(0x40, kCapPm, 0x3c);
  EXPECT_THAT(walk_error(next.bytes()), HasSubstr("capability at 0x40 points to 0x3c"));
}

TEST(PciCaps, RejectsACapabilityThatRunsPastTheSnapshot) {
  ConfigImage image(0x41);  // a partial read: the header at 0x40 needs 0x42 bytes
  image.first_cap(0x40).cap(0x40, kCapPm, 0);
  EXPECT_THAT(walk_error(image.bytes()), HasSubstr("capability at 0x40 (2 bytes) runs past 0x41"));
  ConfigImage ext(0x200);
  ext.ext_cap(0x100, kExtCapAer, 2, 0x200);
  EXPECT_THAT(walk_error(ext.bytes()), HasSubstr("at 0x200 (4 bytes) runs past 0x200"));
}

TEST(PciCaps, RejectsAnExtendedPointerBelow0x100) {
  ConfigImage image;
  image.ext_cap(0x100, kExtCapAer, 2, 0x0fc);
  EXPECT_THAT(walk_error(image.bytes()),
              HasSubstr("extended capability at 0x100 points to 0xfc, below"));
}

TEST(PciCaps, RejectsAFunctionThatDidNotAnswer) {
  ConfigImage image;
  image.put32(kVendorId, 0xffffffff).first_cap(0x40).cap(0x40, kCapPm, 0);
  EXPECT_THAT(walk_error(image.bytes()), HasSubstr("vendor ID at 0x0 reads 0xffff"));
}

TEST(PciCaps, RejectsSnapshotsOfImpossibleSizes) {
  EXPECT_THAT(walk_error(ConfigImage(0x3f).bytes()), HasSubstr("63 bytes"));
  EXPECT_THAT(walk_error(ConfigImage(0x1001).bytes()), HasSubstr("4097 bytes"));
}

TEST(PciCaps, OnlyHeaderTypes0And1AreWalked) {
  auto image = nvme_like();
  image.put8(kHeaderType, 0x81);  // a multi-function bridge: same pointer at 0x34
  EXPECT_TRUE(walk_capabilities(image.bytes()));
  image.put8(kHeaderType, 0x02);  // CardBus
  const auto caps = walk_capabilities(image.bytes());
  ASSERT_FALSE(caps);
  EXPECT_TRUE(caps.error().is(ENOTSUP));
  EXPECT_THAT(caps.error().detail, HasSubstr("header type 0x2 at 0xe"));
}

TEST(PciCaps, FindsStandardAndExtendedIdsSeparately) {
  const auto image = nvme_like();
  const auto caps = *walk_capabilities(image.bytes());
  static_assert(kCapPcie == kExtCapSriov);  // the reason for the `extended` flag
  EXPECT_EQ(find_capability(caps, kCapPcie, false)->offset, 0x80);
  EXPECT_EQ(find_capability(caps, kExtCapSriov, true)->offset, 0x148);
  EXPECT_FALSE(find_capability(caps, kCapMsi, false));
  EXPECT_FALSE(find_capability(caps, kCapMsix, true));
}

TEST(PciCaps, DescribesCapabilitiesForLogs) {
  EXPECT_EQ(describe({kCapMsix, 0x40, false, 0}), "MSI-X");
  EXPECT_EQ(describe({kCapPcie, 0x80, false, 0}), "PCI Express");
  EXPECT_EQ(describe({kExtCapAer, 0x100, true, 2}), "AER (ext)");
  EXPECT_EQ(describe({0x42, 0x50, false, 0}), "cap 0x42");
  EXPECT_EQ(describe({0x2a, 0x200, true, 1}), "cap 0x002a (ext)");
}

// MSI: one image per layout; the capability at 0x40 ends exactly where the snapshot does.
struct MsiLayout {
  bool is_64bit;
  bool per_vector_mask;
  std::size_t length;
};

class MsiLayouts : public ::testing::TestWithParam<MsiLayout> {};

TEST_P(MsiLayouts, DecodesAndNeedsTheWholeStructure) {
  const auto [is_64bit, per_vector_mask, length] = GetParam();
  ConfigImage image(0x40 + length);
  image.first_cap(0x40).cap(0x40, kCapMsi, 0);
  image.put16(0x42, static_cast<std::uint16_t>((per_vector_mask ? 1U << 8 : 0) |
                                               (is_64bit ? 1U << 7 : 0) | 1U << 4 | 2U << 1));
  const auto caps = walk_capabilities(image.bytes());
  ASSERT_TRUE(caps) << caps.error().message();
  const auto msi = parse_msi(image.bytes(), caps->at(0));
  ASSERT_TRUE(msi) << msi.error().message();
  EXPECT_EQ(msi->offset, 0x40);
  EXPECT_EQ(msi->is_64bit, is_64bit);
  EXPECT_EQ(msi->per_vector_mask, per_vector_mask);
  EXPECT_EQ(msi->multiple_message_capable, 4U);
  EXPECT_EQ(msi->multiple_message_enabled, 2U);
  EXPECT_FALSE(msi->enabled);

  const auto cut = parse_msi(image.bytes().first(0x40 + length - 1), caps->at(0));
  ASSERT_FALSE(cut);
  EXPECT_THAT(cut.error().detail, HasSubstr("MSI at 0x40 (" + std::to_string(length) + " bytes)"));
}

INSTANTIATE_TEST_SUITE_P(PciCaps, MsiLayouts,
                         ::testing::Values(MsiLayout{false, false, 10}, MsiLayout{true, false, 14},
                                           MsiLayout{false, true, 20}, MsiLayout{true, true, 24}));

// An MSI capability at 0x40 with this Message Control.
ConfigImage msi_image(std::uint16_t control) {
  ConfigImage image;
  image.first_cap(0x40).cap(0x40, kCapMsi, 0).put16(0x42, control);
  return image;
}

const Capability kMsiAt0x40{kCapMsi, 0x40, false, 0};

TEST(PciCaps, MsiCountsVectors) {
  const auto image = msi_image(3U << 4 | 5U << 1 | 1U);
  const auto msi = parse_msi(image.bytes(), kMsiAt0x40);
  ASSERT_TRUE(msi) << msi.error().message();
  EXPECT_EQ(msi->multiple_message_capable, 32U);
  EXPECT_EQ(msi->multiple_message_enabled, 8U);
  EXPECT_TRUE(msi->enabled);
}

TEST(PciCaps, MsiRejectsReservedVectorCounts) {
  for (const unsigned mmc : {6U, 7U}) {
    const auto image = msi_image(static_cast<std::uint16_t>(mmc << 1));
    const auto msi = parse_msi(image.bytes(), kMsiAt0x40);
    ASSERT_FALSE(msi);
    EXPECT_THAT(msi.error().detail,
                HasSubstr("at 0x40 has Multiple Message Capable = " + std::to_string(mmc)));
  }
  const auto image = msi_image(7U << 4);
  const auto msi = parse_msi(image.bytes(), kMsiAt0x40);
  ASSERT_FALSE(msi);
  EXPECT_THAT(msi.error().detail, HasSubstr("at 0x40 has Multiple Message Enable = 7"));
}

TEST(PciCaps, MsiRejectsAnotherCapability) {
  const auto image = msi_image(0);
  const auto pm = parse_msi(image.bytes(), {kCapPm, 0x40, false, 0});
  ASSERT_FALSE(pm);
  EXPECT_THAT(pm.error().detail, HasSubstr("capability at 0x40 is PM, not MSI"));
  const auto stale = parse_msi(image.bytes(), {kCapMsi, 0x60, false, 0});
  ASSERT_FALSE(stale);
  EXPECT_THAT(stale.error().detail, HasSubstr("capability 0x0 at 0x60, not MSI"));
}

// An MSI-X capability at `offset` with this Message Control, Table and PBA dwords.
ConfigImage msix_image(std::uint16_t control, std::uint32_t table, std::uint32_t pba,
                       std::uint16_t offset = 0x40) {
  ConfigImage image;
  image.first_cap(static_cast<std::uint8_t>(offset)).cap(offset, kCapMsix, 0);
  image.put16(offset + 2U, control).put32(offset + 4U, table).put32(offset + 8U, pba);
  return image;
}

const Capability kMsixAt0x40{kCapMsix, 0x40, false, 0};

TEST(PciCaps, MsixTableSizeIsNPlusOne) {
  const auto one = parse_msix(msix_image(0, 0, 0).bytes(), kMsixAt0x40);
  ASSERT_TRUE(one) << one.error().message();
  EXPECT_EQ(one->table_size, 1U);
  EXPECT_FALSE(one->enabled);
  EXPECT_FALSE(one->function_mask);
  const auto most = parse_msix(msix_image(0xc7ff, 0, 0).bytes(), kMsixAt0x40);
  ASSERT_TRUE(most) << most.error().message();
  EXPECT_EQ(most->table_size, 2048U);
  EXPECT_TRUE(most->enabled);
  EXPECT_TRUE(most->function_mask);
}

TEST(PciCaps, MsixSplitsBirAndOffset) {
  const auto image = nvme_like();
  const auto nvme = parse_msix(image.bytes(), kMsixAt0x40);
  ASSERT_TRUE(nvme) << nvme.error().message();
  EXPECT_EQ(nvme->table_size, 65U);
  EXPECT_EQ(nvme->table_bar, 0U);
  EXPECT_EQ(nvme->table_offset, 0x2000U);
  EXPECT_EQ(nvme->pba_bar, 0U);
  EXPECT_EQ(nvme->pba_offset, 0x3000U);
  const auto high = parse_msix(msix_image(0, 0x00012004, 0xfffffffd).bytes(), kMsixAt0x40);
  ASSERT_TRUE(high) << high.error().message();
  EXPECT_EQ(high->table_bar, 4U);
  EXPECT_EQ(high->table_offset, 0x00012000U);
  EXPECT_EQ(high->pba_bar, 5U);
  EXPECT_EQ(high->pba_offset, 0xfffffff8U);
}

TEST(PciCaps, MsixRejectsReservedBirs) {
  const auto table = parse_msix(msix_image(0, 0x2006, 0x3000).bytes(), kMsixAt0x40);
  ASSERT_FALSE(table);
  EXPECT_THAT(table.error().detail, HasSubstr("at 0x40 puts its table in BAR 6"));
  const auto pba = parse_msix(msix_image(0, 0x2000, 0x3007).bytes(), kMsixAt0x40);
  ASSERT_FALSE(pba);
  EXPECT_THAT(pba.error().detail, HasSubstr("at 0x40 puts its PBA in BAR 7"));
}

TEST(PciCaps, MsixRejectsATruncatedCapability) {
  const auto image = msix_image(0, 0, 0);
  const auto cut = parse_msix(image.bytes().first(0x4b), kMsixAt0x40);
  ASSERT_FALSE(cut);
  EXPECT_THAT(cut.error().detail, HasSubstr("MSI-X at 0x40 (12 bytes) runs past 0x4b"));
  // A standard capability may not spill into extended space, even in a 4096-byte snapshot.
  const auto spill = parse_msix(msix_image(0, 0, 0, 0xf8).bytes(), {kCapMsix, 0xf8, false, 0});
  ASSERT_FALSE(spill);
  EXPECT_THAT(spill.error().detail, HasSubstr("MSI-X at 0xf8 (12 bytes) runs past 0x100"));
}

}  // namespace
}  // namespace vfe::mmio
