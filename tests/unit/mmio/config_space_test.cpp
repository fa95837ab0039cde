#include "mmio/config_space.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "tests/unit/mmio/config_image.hpp"
#include "tests/unit/support/fake_vfio.hpp"

namespace vfe::mmio {
namespace {

using vfe::test::error_of;
using test::ConfigImage;
using ::testing::HasSubstr;
using namespace pci;  // NOLINT: register names read best unqualified

// Where vfio-pci puts the config region in the device fd (index 7 << 40).
constexpr off_t kConfigOffset = off_t{VFIO_PCI_CONFIG_REGION_INDEX} << 40;
constexpr std::uint32_t kRw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

class ConfigSpaceTest : public vfe::test::VfioFixture {
 protected:
  // A device whose config region is `size` bytes, backed by `image`.
  void open_with(const ConfigImage& image, std::uint64_t size = kExtConfigSize) {
    add_region(VFIO_PCI_CONFIG_REGION_INDEX, kRw, size, kConfigOffset);
    auto& bytes =
        sys_.back(device_path(vfe::test::kDeviceName), kConfigOffset, image.bytes().size());
    std::copy(image.bytes().begin(), image.bytes().end(), bytes.begin());
    config_ = &bytes;
    auto dev = open_device();
    ASSERT_TRUE(dev) << dev.error().message();
    dev_.emplace(std::move(*dev));
    auto cs = ConfigSpace::open(*dev_);
    ASSERT_TRUE(cs) << cs.error().message();
    cs_.emplace(*cs);
  }
  void TearDown() override {
    cs_.reset();
    dev_.reset();
    VfioFixture::TearDown();
  }

  [[nodiscard]] std::uint16_t command() const {
    std::uint16_t v = 0;
    std::memcpy(&v, config_->data() + kCommand, sizeof(v));
    return v;
  }
  [[nodiscard]] std::size_t writes() const {
    return static_cast<std::size_t>(std::count_if(sys_.accesses().begin(), sys_.accesses().end(),
                                                  [](const auto& a) { return a.write; }));
  }

  std::optional<vfio::Device> dev_;
  std::optional<ConfigSpace> cs_;
  std::vector<std::uint8_t>* config_ = nullptr;
};

TEST_F(ConfigSpaceTest, SizeFollowsTheRegion) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage(kConfigSize), kConfigSize));
  EXPECT_EQ(cs_->size(), 256U);
  add_region(VFIO_PCI_CONFIG_REGION_INDEX, kRw, 1024, kConfigOffset);
  EXPECT_EQ(ConfigSpace::open(*dev_)->size(), 256U);  // neither PCI nor PCIe: the PCI part
  add_region(VFIO_PCI_CONFIG_REGION_INDEX, kRw, 8192, kConfigOffset);
  EXPECT_EQ(ConfigSpace::open(*dev_)->size(), 4096U);
}

TEST_F(ConfigSpaceTest, ATinyConfigRegionIsNotSupported) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage()));
  add_region(VFIO_PCI_CONFIG_REGION_INDEX, kRw, 64, kConfigOffset);
  const auto r = ConfigSpace::open(*dev_);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOTSUP));
  EXPECT_EQ(r.error().detail, "0000:00:04.0: config region is only 64 bytes");
}

TEST_F(ConfigSpaceTest, ReadsAndWritesGoToTheConfigRegionOfTheDeviceFd) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage()));
  EXPECT_EQ(cs_->read16(kVendorId).value(), 0x1b36);
  EXPECT_EQ(cs_->read8(kDeviceId).value(), 0x10);
  EXPECT_EQ(cs_->read32(0).value(), 0x00101b36U);
  ASSERT_TRUE(cs_->write32(0x10, 0xfebf0000));
  ASSERT_TRUE(cs_->write16(0xffe, 0xabcd));
  EXPECT_EQ(cs_->read32(0x10).value(), 0xfebf0000U);
  EXPECT_EQ((*config_)[0x10 + 2], 0xbf);
  EXPECT_EQ((*config_)[0xfff], 0xab);
  const auto& last = sys_.accesses().back();
  EXPECT_FALSE(last.write);
  EXPECT_EQ(last.path, device_path(vfe::test::kDeviceName));
  EXPECT_EQ(last.offset, kConfigOffset + 0x10);
  EXPECT_EQ(last.count, 4U);
}

TEST_F(ConfigSpaceTest, OutOfBoundsAndUnalignedAccessesAreRefusedUnasked) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage()));
  const auto before = sys_.accesses().size();
  const auto r = cs_->read32(0x1000);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().message(), "read config space: 4 bytes at 0x1000: outside the 4096-byte "
                                 "space or unaligned (Invalid argument)");
  EXPECT_EQ(error_of(cs_->write16(0x1001, 0)).message(),
            "write config space: 2 bytes at 0x1001: outside the 4096-byte space or unaligned "
            "(Invalid argument)");
  std::vector<bool> refused{!cs_->read8(0x1000),         !cs_->read16(0xfff),
                            !cs_->read16(0x1000),        !cs_->read32(0xffe),
                            !cs_->read32(0xffffffffU),   !cs_->read32(2),
                            !cs_->write16(0x7, 1),       !cs_->write32(0x1000, 1),
                            !cs_->write32(0xffc + 2, 1), !cs_->write32(0xfffffffcU, 1)};
  EXPECT_THAT(refused, ::testing::Each(true));
  EXPECT_EQ(sys_.accesses().size(), before);
}

TEST_F(ConfigSpaceTest, APciSpaceEndsAt256) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage(kConfigSize), kConfigSize));
  EXPECT_TRUE(cs_->read32(0xfc));
  EXPECT_TRUE(error_of(cs_->read32(0x100)).is(EINVAL));
}

TEST_F(ConfigSpaceTest, KernelFailuresNameTheDeviceAndOffset) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage()));
  const std::string dev = device_path(vfe::test::kDeviceName);
  sys_.on_pread(dev, [](void*, std::size_t, off_t) { return ssize_t{vfe::test::fail(EIO)}; });
  EXPECT_EQ(error_of(cs_->read16(kCommand)).message(),
            "pread: 0000:00:04.0 config space at 0x4 (Input/output error)");
  sys_.on_pread(dev, [](void*, std::size_t, off_t) { return ssize_t{1}; });  // short
  EXPECT_TRUE(error_of(cs_->read32(0)).is(EIO));
  EXPECT_TRUE(error_of(cs_->capabilities()).is(EIO));
}

TEST_F(ConfigSpaceTest, BusMasterIsSetWithOneWrite) {
  ConfigImage image;
  image.put16(kCommand, kCommandMemorySpace | kCommandIntxDisable);
  ASSERT_NO_FATAL_FAILURE(open_with(image));
  ASSERT_TRUE(cs_->enable_bus_master());
  EXPECT_EQ(command(), kCommandMemorySpace | kCommandBusMaster | kCommandIntxDisable);
  ASSERT_EQ(writes(), 1U);
  const auto& w = sys_.accesses().back();
  EXPECT_TRUE(w.write);
  EXPECT_EQ(w.offset, kConfigOffset + kCommand);
  EXPECT_EQ(w.count, 2U);
}

TEST_F(ConfigSpaceTest, BusMasterSetsMemorySpaceTooAndWritesNothingWhenBothAreSet) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage()));
  ASSERT_TRUE(cs_->enable_bus_master());
  EXPECT_EQ(command(), kCommandMemorySpace | kCommandBusMaster);
  EXPECT_EQ(writes(), 1U);
  ASSERT_TRUE(cs_->enable_bus_master());
  EXPECT_EQ(writes(), 1U);
}

TEST_F(ConfigSpaceTest, BusMasterIsClearedAndReadBack) {
  ConfigImage image;
  image.put16(kCommand, kCommandMemorySpace | kCommandBusMaster | kCommandIntxDisable);
  ASSERT_NO_FATAL_FAILURE(open_with(image));
  ASSERT_TRUE(cs_->disable_bus_master());
  EXPECT_EQ(command(), kCommandMemorySpace | kCommandIntxDisable);
  EXPECT_EQ(writes(), 1U);
  EXPECT_FALSE(sys_.accesses().back().write) << "the command register is read back last";
}

TEST_F(ConfigSpaceTest, BusMasterThatStaysOnIsAnError) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage()));
  // A function that ignores the write: every read says bus mastering is on.
  sys_.on_pread(device_path(vfe::test::kDeviceName), [](void* buf, std::size_t n, off_t) {
    std::memset(buf, 0, n);
    const auto on = static_cast<std::uint16_t>(kCommandMemorySpace | kCommandBusMaster);
    std::memcpy(buf, &on, std::min<std::size_t>(n, sizeof(on)));
    return static_cast<ssize_t>(n);
  });
  const auto r = cs_->disable_bus_master();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EIO));
  EXPECT_NE(r.error().message().find("reads back 0x0006"), std::string::npos) << r.error().message();
}

TEST_F(ConfigSpaceTest, FindsMsiAndMsix) {
  ConfigImage image;
  image.first_cap(0x50).cap(0x50, kCapMsi, 0x70).cap(0x70, kCapMsix, 0);
  // MSI: 64-bit, per-vector masking, 4 vectors capable (log2 2 in bits 3:1), 1 enabled.
  image.put16(0x50 + kMsiControl, 0x0100 | 0x0080 | 2 << 1);
  // MSI-X: 16 entries, table at BAR 0 + 0x2000, PBA at BAR 4 + 0x100.
  image.put16(0x70 + kMsixControl, 15);
  image.put32(0x70 + kMsixTable, 0x2000).put32(0x70 + kMsixPba, 0x104);
  ASSERT_NO_FATAL_FAILURE(open_with(image));
  const auto msi = cs_->msi();
  ASSERT_TRUE(msi) << msi.error().message();
  ASSERT_TRUE(msi->has_value());
  EXPECT_EQ((*msi)->offset, 0x50);
  EXPECT_TRUE((*msi)->is_64bit);
  EXPECT_TRUE((*msi)->per_vector_mask);
  EXPECT_EQ((*msi)->multiple_message_capable, 4U);
  EXPECT_FALSE((*msi)->enabled);
  const auto msix = cs_->msix();
  ASSERT_TRUE(msix) << msix.error().message();
  ASSERT_TRUE(msix->has_value());
  EXPECT_EQ((*msix)->offset, 0x70);
  EXPECT_EQ((*msix)->table_size, 16U);
  EXPECT_EQ((*msix)->table_bar, 0U);
  EXPECT_EQ((*msix)->table_offset, 0x2000U);
  EXPECT_EQ((*msix)->pba_bar, 4U);
  EXPECT_EQ((*msix)->pba_offset, 0x100U);
  EXPECT_EQ(writes(), 0U);
}

TEST_F(ConfigSpaceTest, NoCapabilitiesMeansNoMsiAndNoMsix) {
  ASSERT_NO_FATAL_FAILURE(open_with(ConfigImage()));
  EXPECT_EQ(cs_->msi().value(), std::nullopt);
  EXPECT_EQ(cs_->msix().value(), std::nullopt);
}

TEST_F(ConfigSpaceTest, TheSnapshotIsReadInDwordsAndAMalformedChainIsAnError) {
  ConfigImage image;
  image.first_cap(0x50).cap(0x50, kCapMsi, 0x50);  // points at itself
  ASSERT_NO_FATAL_FAILURE(open_with(image));
  const auto before = sys_.accesses().size();
  const auto caps = cs_->capabilities();
  ASSERT_FALSE(caps);
  EXPECT_TRUE(caps.error().is(EINVAL));
  EXPECT_THAT(caps.error().detail, HasSubstr("0x50"));
  ASSERT_EQ(sys_.accesses().size() - before, 4096U / 4);
  EXPECT_EQ(sys_.accesses().back().offset, kConfigOffset + 0xffc);
  EXPECT_TRUE(std::all_of(sys_.accesses().begin() + static_cast<std::ptrdiff_t>(before),
                          sys_.accesses().end(),
                          [](const auto& a) { return !a.write && a.count == 4; }));
  EXPECT_FALSE(cs_->msi());
}

}  // namespace
}  // namespace vfe::mmio
