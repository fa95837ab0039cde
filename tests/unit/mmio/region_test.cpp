#include "mmio/region.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_vfio.hpp"

namespace vfe::mmio {
namespace {

using vfe::test::CapChain;
using vfe::test::pack;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// BAR 2 of a device, where vfio-pci puts it in the device fd (index 2 << 40): 16 KiB whose middle
// pages (the MSI-X table, say) may not be mmap'd.
constexpr std::uint32_t kBar = VFIO_PCI_BAR2_REGION_INDEX;
constexpr off_t kBarOffset = off_t{kBar} << 40;
constexpr std::uint64_t kBarSize = 0x4000;
constexpr std::uint32_t kRw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
constexpr std::uint32_t kRwMmap = kRw | VFIO_REGION_INFO_FLAG_MMAP;

CapChain sparse(vfio_region_sparse_mmap_area a, vfio_region_sparse_mmap_area b) {
  return CapChain().add(VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1,
                        pack(std::uint32_t{2}, std::uint32_t{0}, a, b));
}

std::vector<std::string>& logged() {
  static std::vector<std::string> lines;
  return lines;
}
void capture(LogLevel level, std::string_view message) noexcept {
  if (level == LogLevel::error) {
    logged().emplace_back(message);
  }
}

class RegionTest : public vfe::test::VfioFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(VfioFixture::SetUp());
    bar_ = &sys_.back(device_path(vfe::test::kDeviceName), kBarOffset, kBarSize);
    logged().clear();
    set_log_sink(capture);
  }
  void TearDown() override {
    set_log_sink(nullptr);
    dev_.reset();
    VfioFixture::TearDown();
  }

  // Opens the device (with BAR 2 as added before) and the region.
  Result<Region> open_bar() {
    auto dev = open_device();
    if (!dev) {
      return std::move(dev).error();
    }
    dev_.emplace(std::move(*dev));
    return Region::open(*dev_, kBar);
  }
  // The fake's memory behind the mapping of the area at region offset `area`.
  Result<std::uint8_t*> mapped(std::uint64_t area) {
    for (const auto& m : sys_.mappings()) {
      if (m.offset == kBarOffset + static_cast<off_t>(area)) {
        return static_cast<std::uint8_t*>(m.addr);
      }
    }
    return Error::from_errno(ENOENT, "mapped", "no mapping at region offset " + std::to_string(area));
  }

  std::optional<vfio::Device> dev_;
  std::vector<std::uint8_t>* bar_ = nullptr;  // the device fd's bytes behind BAR 2
};

TEST_F(RegionTest, MapsEachSparseArea) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset, sparse({0, 0x1000}, {0x3000, 0x1000}));
  const auto r = open_bar();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->index(), kBar);
  EXPECT_EQ(r->size(), kBarSize);
  ASSERT_EQ(sys_.mappings().size(), 2U);
  for (const auto& m : sys_.mappings()) {
    EXPECT_EQ(m.length, 0x1000U);
    EXPECT_EQ(m.prot, PROT_READ | PROT_WRITE);
    EXPECT_EQ(m.fd, dev_->fd());
  }
  EXPECT_EQ(sys_.mappings()[0].offset, kBarOffset);
  EXPECT_EQ(sys_.mappings()[1].offset, kBarOffset + 0x3000);
  EXPECT_TRUE(r->is_mapped(0, 4));
  EXPECT_TRUE(r->is_mapped(0xffc, 4));
  EXPECT_FALSE(r->is_mapped(0xffe, 4));  // straddles the end of the first area
  EXPECT_FALSE(r->is_mapped(0x1000, 4));
  EXPECT_FALSE(r->is_mapped(0x2ffc, 8));
  EXPECT_TRUE(r->is_mapped(0x3ff8, 8));
  EXPECT_FALSE(r->is_mapped(0x3ffc, 8));
  VFE_ASSERT_OK_AND_ASSIGN(const std::uint8_t* second, mapped(0x3000));
  EXPECT_EQ(r->address(0x3010, 4), second + 0x10);
  EXPECT_EQ(r->address(0x2000, 4), nullptr);
}

TEST_F(RegionTest, MappedAccessesAreLoadsAndStoresWithoutSystemCalls) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset, sparse({0, 0x1000}, {0x3000, 0x1000}));
  auto r = open_bar();
  ASSERT_TRUE(r);
  const auto calls = sys_.accesses().size();
  r->write32(0x10, 0xdeadbeef);
  r->write64_db(0x3008, 0x0123456789abcdefULL);
  r->write8(0x3001, 0x5a);
  VFE_ASSERT_OK_AND_ASSIGN(const std::uint8_t* first, mapped(0));
  VFE_ASSERT_OK_AND_ASSIGN(const std::uint8_t* second, mapped(0x3000));
  std::uint32_t v32 = 0;
  std::memcpy(&v32, first + 0x10, 4);
  EXPECT_EQ(v32, 0xdeadbeefU);
  EXPECT_EQ(second[1], 0x5a);
  EXPECT_EQ(r->read64(0x3008), 0x0123456789abcdefULL);
  EXPECT_EQ(r->read16(0x12), 0xdeadU);
  EXPECT_EQ(sys_.accesses().size(), calls);
}

TEST_F(RegionTest, AccessesOutsideTheAreasGoThroughTheDeviceFd) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset, sparse({0, 0x1000}, {0x3000, 0x1000}));
  auto r = open_bar();
  ASSERT_TRUE(r);
  r->write32(0x2004, 0xcafef00d);
  ASSERT_FALSE(sys_.accesses().empty());
  const auto w = sys_.accesses().back();
  EXPECT_TRUE(w.write);
  EXPECT_EQ(w.offset, kBarOffset + 0x2004);
  EXPECT_EQ(w.count, 4U);
  EXPECT_EQ((*bar_)[0x2004], 0x0d);
  EXPECT_EQ(r->read32(0x2004), 0xcafef00dU);
  EXPECT_FALSE(sys_.accesses().back().write);
  (*bar_)[0x1000] = 0x77;
  EXPECT_EQ(r->read8(0x1000), 0x77);
  EXPECT_EQ(r->read64(0x1000), 0x77U);
  // Across the end of an area: not a mapped access, so it takes the slow path as a whole.
  EXPECT_EQ(r->read32(0xffe), 0x00770000U);
}

TEST_F(RegionTest, OutOfRangeReadsReturnAllOnesAndWritesAreDropped) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset, sparse({0, 0x1000}, {0x3000, 0x1000}));
  auto r = open_bar();
  ASSERT_TRUE(r);
  const auto calls = sys_.accesses().size();
  EXPECT_EQ(r->read32(kBarSize), 0xffffffffU);
  EXPECT_EQ(r->read64(kBarSize - 4), ~std::uint64_t{0});
  EXPECT_EQ(r->read8(0xffffffffffffffffULL), 0xff);
  EXPECT_EQ(r->read16(0x10000), 0xffff);
  r->write32(kBarSize, 1);
  r->write64(kBarSize - 4, 1);
  EXPECT_EQ(sys_.accesses().size(), calls);  // nothing reached the kernel
  // Only the first bad access is logged: these accessors run on the data path.
  EXPECT_THAT(logged(), ElementsAre("read of 4 bytes at 0x4000 outside readable region 2"));
}

TEST_F(RegionTest, AFailedReadReturnsAllOnes) {
  add_region(kBar, kRw, kBarSize, kBarOffset);
  auto r = open_bar();
  ASSERT_TRUE(r);
  sys_.on_pread(device_path(vfe::test::kDeviceName),
                [](void*, std::size_t, off_t) { return ssize_t{vfe::test::fail(EIO)}; });
  EXPECT_EQ(r->read32(0), 0xffffffffU);
  EXPECT_EQ(sys_.accesses().size(), 1U);
  EXPECT_THAT(logged(), ElementsAre("pread of region 2 at 0x0 failed: errno 5"));
}

TEST_F(RegionTest, WithoutMmapEverythingIsPreadAndPwrite) {
  add_region(kBar, kRw, kBarSize, kBarOffset);
  auto r = open_bar();
  ASSERT_TRUE(r);
  EXPECT_THAT(sys_.mappings(), IsEmpty());
  EXPECT_FALSE(r->is_mapped(0, 4));
  r->write16(0x3ffe, 0x1234);
  EXPECT_EQ(r->read16(0x3ffe), 0x1234);
  EXPECT_EQ(sys_.accesses().size(), 2U);
}

TEST_F(RegionTest, AReadOnlyRegionDropsWrites) {
  add_region(kBar, VFIO_REGION_INFO_FLAG_READ, kBarSize, kBarOffset);
  auto r = open_bar();
  ASSERT_TRUE(r);
  r->write32(0, 0x11111111);
  EXPECT_THAT(sys_.accesses(), IsEmpty());
  EXPECT_THAT(logged(), ElementsAre("write of 4 bytes at 0x0 outside writable region 2"));
  EXPECT_EQ(r->read32(0), 0U);
}

TEST_F(RegionTest, AWriteOnlyRegionReadsAllOnes) {
  add_region(kBar, VFIO_REGION_INFO_FLAG_WRITE, kBarSize, kBarOffset);
  auto r = open_bar();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->read32(0), 0xffffffffU);
  EXPECT_THAT(sys_.accesses(), IsEmpty());
  r->write32(0, 0x11111111);
  EXPECT_EQ(sys_.accesses().size(), 1U);
  EXPECT_THAT(logged(), ElementsAre("read of 4 bytes at 0x0 outside readable region 2"));
}

TEST_F(RegionTest, MmapWithoutCapabilitiesMapsTheWholeRegion) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset);
  auto r = open_bar();
  ASSERT_TRUE(r);
  ASSERT_EQ(sys_.mappings().size(), 1U);
  EXPECT_EQ(sys_.mappings()[0].length, kBarSize);
  EXPECT_TRUE(r->is_mapped(0, kBarSize));
  EXPECT_FALSE(r->is_mapped(1, kBarSize));
}

TEST_F(RegionTest, DestructionUnmapsEachAreaOnceEvenAfterAMove) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset, sparse({0, 0x1000}, {0x3000, 0x1000}));
  {
    auto r = open_bar();
    ASSERT_TRUE(r);
    const Region moved(std::move(*r));
    EXPECT_TRUE(moved.is_mapped(0x3000, 4));
  }
  EXPECT_THAT(sys_.mappings(), IsEmpty());
  EXPECT_EQ(sys_.munmaps().size(), 2U);
}

TEST_F(RegionTest, DetachKeepsTheAddressesButLetsGoOfTheDeviceMemory) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset, sparse({0, 0x1000}, {0x3000, 0x1000}));
  {
    auto r = open_bar();
    ASSERT_TRUE(r);
    r->write32(0x10, 0x12345678);
    volatile void* const before = r->address(0x3010, 4);
    ASSERT_TRUE(r->detach());
    EXPECT_EQ(r->address(0x3010, 4), before) << "a racing access must still find memory there";
    ASSERT_EQ(sys_.mappings().size(), 2U);
    for (const auto& m : sys_.mappings()) {
      EXPECT_NE(m.fd, dev_->fd()) << "no mapping refers to the device fd any more";
    }
    EXPECT_EQ(r->read32(0x10), 0xffffffffU) << "reads look like a vanished device";
    EXPECT_EQ(r->read64(0x3008), ~0ULL);
    r->write32_db(0x3008, 1);  // no fault: it lands in the replacement memory
    EXPECT_EQ(r->read32(0x300c), 0xffffffffU);
    // A part that was never mapped still goes to the device fd.
    (*bar_)[0x2000] = 0x42;
    EXPECT_EQ(r->read8(0x2000), 0x42);
    EXPECT_TRUE(r->detach()) << "again: idempotent";
  }
  EXPECT_THAT(sys_.mappings(), IsEmpty()) << "the replacement memory is unmapped with the region";
}

TEST_F(RegionTest, AFailedMmapUnmapsTheAreasAlreadyMapped) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset, sparse({0, 0x1000}, {0x3000, 0x1000}));
  sys_.mmap_errno = ENOMEM;
  sys_.mmap_ok = 1;
  const auto r = open_bar();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "mmap: 0000:00:04.0 region 2 at 0x3000+0x1000 (Cannot allocate memory)");
  EXPECT_THAT(sys_.mappings(), IsEmpty());
  EXPECT_EQ(sys_.munmaps().size(), 1U);
}

TEST_F(RegionTest, ASparseAreaOutsideTheRegionIsRefused) {
  add_region(kBar, kRwMmap, kBarSize, kBarOffset, sparse({0, 0x1000}, {0x3000, 0x2000}));
  const auto r = open_bar();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().detail, "sparse area 0x3000+0x2000 lies outside the 0x4000-byte region 2");
  EXPECT_THAT(sys_.mappings(), IsEmpty());
}

TEST_F(RegionTest, AnUnimplementedBarIsAnError) {
  add_region(kBar, kRwMmap, 0, kBarOffset);
  const auto r = open_bar();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "0000:00:04.0 has no region 2 (the BAR is not implemented)");
  EXPECT_EQ(sys_.munmaps().size() + sys_.mappings().size(), 0U);
}

}  // namespace
}  // namespace vfe::mmio
