#include "vfio/noiommu_backend.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_vfio.hpp"

namespace vfe::vfio {
namespace {

using vfe::test::error_of;
using test::fail;
using test::kDevice;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr std::uintptr_t kVa = 0x7f1234400000;
const void* const kBuf = reinterpret_cast<const void*>(kVa);  // never touched: mlock is faked
constexpr std::uint64_t kPresent = std::uint64_t{1} << 63;
constexpr std::uint64_t kHugetlb = std::uint64_t{1} << 17;  // KPF_HUGE in /proc/kpageflags

std::vector<std::string>& warnings() {
  static std::vector<std::string> lines;
  return lines;
}

void capture(LogLevel level, std::string_view message) noexcept {
  if (level == LogLevel::warn) {
    warnings().emplace_back(message);
  }
}

class NoIommuTest : public test::VfioFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(VfioFixture::SetUp());
    set_group_name("7", "vfio-noiommu");
    saved_level_ = log_level();
    set_log_level(LogLevel::warn);
    warnings().clear();
    set_log_sink(capture);
    script_kpageflags([](std::uint64_t) { return kHugetlb; });
  }
  void TearDown() override {
    set_log_sink(nullptr);
    set_log_level(saved_level_);
    VfioFixture::TearDown();
  }

  Result<std::shared_ptr<NoIommuBackend>> backend() { return NoIommuBackend::create(sys_); }

  // /proc/self/pagemap holds `entries` for the pages from kVa on (one 64-bit entry per page).
  void script_pagemap(std::vector<std::uint64_t> entries) {
    sys_.on_pread("/proc/self/pagemap",
                  [entries = std::move(entries)](void* buf, std::size_t count, off_t offset) {
                    const auto first = static_cast<off_t>(kVa / 4096 * 8);
                    if (offset != first || count > entries.size() * 8) {
                      return static_cast<ssize_t>(fail(EINVAL));
                    }
                    std::memcpy(buf, entries.data(), count);
                    return static_cast<ssize_t>(count);
                  });
  }

  // /proc/kpageflags holds flags_of(pfn) for each frame; the frames read are kept in `frames_read`.
  void script_kpageflags(std::function<std::uint64_t(std::uint64_t)> flags_of) {
    sys_.on_pread("/proc/kpageflags", [this, flags_of = std::move(flags_of)](void* buf, std::size_t count,
                                                                             off_t offset) {
      auto* out = static_cast<std::uint64_t*>(buf);
      for (std::size_t i = 0; i < count / 8; ++i) {
        const std::uint64_t pfn = static_cast<std::uint64_t>(offset) / 8 + i;
        frames_read.push_back(pfn);
        out[i] = flags_of(pfn);
      }
      return static_cast<ssize_t>(count);
    });
  }

  LogLevel saved_level_ = LogLevel::warn;
  std::vector<std::uint64_t> frames_read;
};

TEST_F(NoIommuTest, CreatingItLogsTheUnsafeWarning) {
  std::vector<unsigned long> asked;
  sys_.on_val(VFIO_CHECK_EXTENSION, [&](int, unsigned long type) {
    asked.push_back(type);
    return 1;
  });
  auto b = make_backend(IommuMode::noiommu, sys_);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ((*b)->mode(), IommuMode::noiommu);
  EXPECT_TRUE((*b)->chooses_iova());
  EXPECT_THAT(asked, ElementsAre(VFIO_NOIOMMU_IOMMU));
  ASSERT_EQ(warnings().size(), 1U);
  EXPECT_THAT(warnings()[0], HasSubstr("no-IOMMU mode: devices opened here are NOT isolated; "
                                       "their DMA reaches all physical memory"));
}

TEST_F(NoIommuTest, KernelWithoutNoIommuModeSaysHowToTurnItOn) {
  sys_.on_val(VFIO_CHECK_EXTENSION, [](int, unsigned long) { return 0; });
  const auto r = NoIommuBackend::create(sys_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail,
            "no-IOMMU mode is off: load vfio with enable_unsafe_noiommu_mode=1 (the kernel needs "
            "CONFIG_VFIO_NOIOMMU)");
  EXPECT_THAT(warnings(), IsEmpty());
}

TEST_F(NoIommuTest, OpensTheNoIommuGroupNode) {
  std::vector<unsigned long> types;
  sys_.on_val(VFIO_SET_IOMMU, [&](int, unsigned long type) {
    types.push_back(type);
    return 0;
  });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto fd = b->open_device(kDevice);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(sys_.open_count("/dev/vfio/noiommu-7"), 1U);
  EXPECT_EQ(sys_.open_count("/dev/vfio/7"), 0U);
  EXPECT_THAT(types, ElementsAre(VFIO_NOIOMMU_IOMMU));
}

TEST_F(NoIommuTest, DeviceBehindAnIommuIsRefused) {
  add_device("0000:00:05.0", "vfio-pci", "8");
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(Bdf{0, 0, 5, 0});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EPERM));
  EXPECT_EQ(r.error().detail,
            "0000:00:05.0 is behind an IOMMU (group 8): use type1 or iommufd mode, not no-IOMMU");
}

// The kernel's EPERM without CAP_SYS_RAWIO comes even to the node's owner: the message says so.
TEST_F(NoIommuTest, GroupRefusedWithoutCapSysRawioSaysOwningTheNodeIsNotEnough) {
  sys_.fail_open("/dev/vfio/noiommu-7", EPERM);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EPERM));
  EXPECT_EQ(r.error().detail,
            "/dev/vfio/noiommu-7: a no-IOMMU group opens only with CAP_SYS_RAWIO (the device can "
            "reach all memory): run as root; owning the node is not enough");
}

TEST_F(NoIommuTest, MapPinsAndReturnsThePhysicalAddress) {
  script_pagemap({kPresent | 0x1234, kPresent | 0x1235});
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto phys = b->map(kBuf, 8192, 0xdead000);  // the IOVA asked for is ignored
  ASSERT_TRUE(phys) << phys.error().message();
  EXPECT_EQ(*phys, 0x1234000U);
  EXPECT_THAT(frames_read, ElementsAre(0x1234U, 0x1235U));  // both frames checked for hugetlb
  EXPECT_THAT(sys_.mlocks(), ElementsAre(std::make_pair(kBuf, std::size_t{8192})));
  EXPECT_THAT(sys_.munlocks(), IsEmpty());

  ASSERT_TRUE(b->unmap(0x1234000, 8192));
  EXPECT_THAT(sys_.munlocks(), ElementsAre(std::make_pair(kBuf, std::size_t{8192})));
  const auto again = b->unmap(0x1234000, 8192);
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().is(ENOENT));
  EXPECT_EQ(again.error().detail, "8192 bytes at 0x1234000 are not mapped (double unmap?)");
  EXPECT_EQ(sys_.munlocks().size(), 1U);
}

TEST_F(NoIommuTest, UnmapOfAnotherSizeChangesNothing) {
  script_pagemap({kPresent | 0x1234});
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  ASSERT_TRUE(b->map(kBuf, 4096, 0));
  EXPECT_TRUE(error_of(b->unmap(0x1234000, 8192)).is(ENOENT));
  EXPECT_THAT(sys_.munlocks(), IsEmpty());
  EXPECT_TRUE(b->unmap(0x1234000, 4096));
}

// mlock does not nest: a mapping that overlaps a live one (here its second half and one page
// more) is refused before anything is locked, so unmapping either later can't unpin the other.
TEST_F(NoIommuTest, OverlappingMappingIsRefusedBeforePinning) {
  script_pagemap({kPresent | 0x1234, kPresent | 0x1235});
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  ASSERT_TRUE(b->map(kBuf, 8192, 0));
  const auto r = b->map(reinterpret_cast<const void*>(kVa + 4096), 8192, 0);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EEXIST));
  EXPECT_EQ(r.error().detail,
            "8192 bytes at 0x7f1234401000 overlap the mapping of 8192 bytes at 0x7f1234400000 "
            "(physical 0x1234000); unmap that one first");
  EXPECT_EQ(sys_.mlocks().size(), 1U);
  EXPECT_THAT(sys_.munlocks(), IsEmpty());
}

TEST_F(NoIommuTest, HiddenFrameNumbersNeedCapSysAdmin) {
  for (const std::uint64_t entry : {kPresent, std::uint64_t{0x1234}}) {  // PFN 0, or not present
    script_pagemap({entry});
    VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
    const auto r = b->map(kBuf, 4096, 0);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is(EPERM));
    EXPECT_EQ(r.error().detail,
              "the kernel hides physical addresses without CAP_SYS_ADMIN; no-IOMMU mode must run "
              "as root");
  }
  EXPECT_EQ(sys_.munlocks().size(), 2U);  // each failed map gave its lock back
}

TEST_F(NoIommuTest, NonContiguousMemoryNamesThePageThatBreaksTheRun) {
  script_pagemap({kPresent | 0x1234, kPresent | 0x1235, kPresent | 0x2000});
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->map(kBuf, 3 * 4096, 0);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().detail,
            "the 12288 bytes at 0x7f1234400000 are not physically contiguous (page 2 breaks the "
            "run); use one hugepage per buffer");
  EXPECT_THAT(sys_.munlocks(), ElementsAre(std::make_pair(kBuf, std::size_t{3 * 4096})));
}

// Base pages can be migrated under the device even while locked: only hugetlb memory is mapped.
TEST_F(NoIommuTest, MemoryOffHugepagesIsRefusedAndUnpinned) {
  script_pagemap({kPresent | 0x1234, kPresent | 0x1235});
  script_kpageflags([](std::uint64_t pfn) { return pfn == 0x1235 ? std::uint64_t{1} << 22 : kHugetlb; });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->map(kBuf, 8192, 0);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().detail,
            "the 8192 bytes at 0x7f1234400000 are not hugepage memory (page 1 is not): without an IOMMU "
            "the kernel may move ordinary pages under the device even while they are locked; allocate "
            "with DmaBuffer or DmaPool, or map memory from hugetlbfs or an MFD_HUGETLB memfd");
  EXPECT_THAT(sys_.munlocks(), ElementsAre(std::make_pair(kBuf, std::size_t{8192})));
  // Nothing was recorded: the same memory, once it is hugetlb, maps.
  script_kpageflags([](std::uint64_t) { return kHugetlb; });
  EXPECT_TRUE(b->map(kBuf, 8192, 0));
}

TEST_F(NoIommuTest, KpageflagsUnreadableIsReportedAndUnpins) {
  script_pagemap({kPresent | 0x1234});
  sys_.fail_open("/proc/kpageflags", EACCES);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  EXPECT_EQ(error_of(b->map(kBuf, 4096, 0)).message(), "open: /proc/kpageflags (Permission denied)");
  EXPECT_EQ(sys_.munlocks().size(), 1U);
}

TEST_F(NoIommuTest, MlockFailureSaysToRaiseTheMemlockLimit) {
  sys_.mlock_errno = ENOMEM;
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->map(kBuf, 4096, 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "mlock: 4096 bytes: raise RLIMIT_MEMLOCK (ulimit -l) to cover all DMA memory (Cannot "
            "allocate memory)");
  EXPECT_EQ(sys_.open_count("/proc/self/pagemap"), 0U);
}

TEST_F(NoIommuTest, UnalignedOrEmptyMappingsAreRefusedBeforePinning) {
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  EXPECT_TRUE(error_of(b->map(kBuf, 100, 0)).is(EINVAL));
  EXPECT_TRUE(error_of(b->map(kBuf, 0, 0)).is(EINVAL));
  const auto r = b->map(reinterpret_cast<const void*>(kVa + 8), 4096, 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail,
            "4096 bytes at 0x7f1234400008: address and size must be non-zero multiples of 4096");
  EXPECT_THAT(sys_.mlocks(), IsEmpty());
}

TEST_F(NoIommuTest, PagemapUnreadableIsReportedAndUnpins) {
  sys_.fail_open("/proc/self/pagemap", EACCES);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  EXPECT_EQ(error_of(b->map(kBuf, 4096, 0)).message(),
            "open: /proc/self/pagemap (Permission denied)");
  sys_.on_pread("/proc/self/pagemap", [](void*, std::size_t, off_t) {
    errno = 0;
    return ssize_t{4};  // a short read without an errno
  });
  sys_.fail_open("/proc/self/pagemap", 0);
  EXPECT_EQ(error_of(b->map(kBuf, 4096, 0)).message(),
            "pread: /proc/self/pagemap: 4 of 8 bytes (Input/output error)");
  EXPECT_EQ(sys_.munlocks().size(), 2U);
}

TEST_F(NoIommuTest, RangesAreThePhysicalAddressSpace) {
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto ranges = b->iova_ranges();
  ASSERT_TRUE(ranges);
  EXPECT_THAT(*ranges, ElementsAre(IovaRange{0, (std::uint64_t{1} << 52) - 1}));
  EXPECT_EQ(b->dma_avail(), std::nullopt);
}

}  // namespace
}  // namespace vfe::vfio
