// The bad-input matrix, part 2: DMA mappings. Each case opens the first NVMe with a DmaSpace
// holding one live 2 MiB mapping, makes one bad call, and checks the errno and message, that the
// space is as it was (the live mapping still translates, the counts, free IOVA space, the
// kernel's DMA budget and IOVA ranges unchanged, the device still answers), and that nothing
// leaked (NoLeaks). See bad_input_device_test.cpp for part 1.
#include <gtest/gtest.h>
#include <linux/vfio.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dma/dma_buffer.hpp"
#include "dma/dma_space.hpp"
#include "dma/host_memory.hpp"
#include "mmio/region.hpp"
#include "tests/unit/support/assert_ok.hpp"
#include "tests/vm/bad_input_support.hpp"
#include "tests/vm/vm_env.hpp"
#include "tests/vm/vm_support.hpp"
#include "vfio/device.hpp"

namespace vfe::vmtest {
namespace {

using dma::HostMemory;
using vfio::IommuMode;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kFreeIova = 0x40000000;  // inside type1's and iommufd's ranges, unused here

// What a bad call must leave as it was.
struct DmaState {
  std::size_t mappings = 0;
  std::uint64_t free_iova = 0;
  std::optional<std::uint32_t> avail;
  std::vector<vfio::IovaRange> ranges;
  std::optional<dma::Iova> translated;  // of the live mapping's last page
};

// Member order is teardown order, reversed: the live buffer is unmapped, then the space goes,
// then the BAR, then the device.
struct DmaCase {
  vfio::Device dev;
  mmio::Bar bar;
  std::unique_ptr<dma::DmaSpace> space;
  std::optional<dma::DmaBuffer> live;

  vfio::IommuBackend& backend() const { return space->backend(); }
  const void* live_end_page() const { return live->as<std::uint8_t>() + live->size() - 4096; }

  DmaState state() const {
    auto ranges = backend().iova_ranges();
    EXPECT_TRUE(ranges) << ranges.error().message();
    return {space->mapping_count(), space->free_iova_bytes(), backend().dma_avail(),
            ranges ? *ranges : std::vector<vfio::IovaRange>{}, space->translate(live_end_page())};
  }

  void expect_unchanged(const DmaState& before) const {
    const DmaState now = state();
    EXPECT_EQ(now.mappings, before.mappings);
    EXPECT_EQ(now.free_iova, before.free_iova);
    EXPECT_EQ(now.avail, before.avail);
    EXPECT_EQ(now.ranges, before.ranges);
    EXPECT_EQ(now.translated, before.translated);
    EXPECT_EQ(now.translated, live->iova_at(live->size() - 4096)) << "the live mapping moved";
    EXPECT_EQ(bar.read32(0x08) >> 16, 1U) << "the NVMe stopped answering";
  }
};

// The first NVMe with its BAR 0, a DmaSpace and the live mapping, for VFE_ASSERT_OK_AND_ASSIGN.
Result<std::unique_ptr<DmaCase>> open_case() {
  VFE_TRY_ASSIGN(auto dev, open_device("nvme"));
  VFE_TRY_ASSIGN(auto bar, mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX));
  VFE_TRY_ASSIGN(auto space, dma::DmaSpace::create(dev.shared_backend()));
  auto c = std::unique_ptr<DmaCase>(new DmaCase{std::move(dev), std::move(bar), std::move(space), std::nullopt});
  // A hugepage, also without an IOMMU.
  VFE_TRY_ASSIGN(auto live, dma::DmaBuffer::allocate(*c->space, 2 * kMiB));
  c->live.emplace(std::move(live));
  return c;
}

// Memory of our own, not mapped, whose first 4 KiB page every mode can map (without an IOMMU only
// hugepage memory maps), for VFE_ASSERT_OK_AND_ASSIGN.
Result<HostMemory> page() {
  const bool huge = mode() == IommuMode::noiommu;
  return HostMemory::allocate(4096, {.hugepages = huge, .numa_node = -1, .hugepages_only = huge});
}

#define OPEN_CASE(c)                             \
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_case()); \
  const DmaState before = c->state()

TEST(BadInput, MapZeroBytes) {
  const NoLeaks guard;
  OPEN_CASE(c);
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
  EXPECT_FAILS_WITH(c->space->map(p.data(), 0), EINVAL, {"0 bytes", "non-zero multiples of 4096"});
  c->expect_unchanged(before);
}

TEST(BadInput, MapUnalignedSize) {
  const NoLeaks guard;
  OPEN_CASE(c);
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
  EXPECT_FAILS_WITH(c->space->map(p.data(), 3000), EINVAL, {"3000 bytes", "non-zero multiples of 4096"});
  c->expect_unchanged(before);
}

TEST(BadInput, MapUnalignedAddress) {
  const NoLeaks guard;
  OPEN_CASE(c);
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
  EXPECT_FAILS_WITH(c->space->map(static_cast<char*>(p.data()) + 512, 4096), EINVAL,
                    {"4096 bytes at 0x", "multiples of 4096"});
  c->expect_unchanged(before);
}

TEST(BadInput, MapTheSameMemoryTwice) {
  const NoLeaks guard;
  OPEN_CASE(c);
  EXPECT_FAILS_WITH(c->space->map(c->live->data(), c->live->size(), 2 * kMiB), EEXIST, {"overlap"});
  c->expect_unchanged(before);
}

TEST(BadInput, MapPartOfAMappedRange) {
  const NoLeaks guard;
  OPEN_CASE(c);
  EXPECT_FAILS_WITH(c->space->map(c->live->as<std::uint8_t>() + 64 * 1024, 8192), EEXIST, {"overlap"});
  c->expect_unchanged(before);
}

TEST(BadInput, MapAtAnIovaAlreadyInUse) {
  if (mode() == IommuMode::noiommu) {
    GTEST_SKIP() << "without an IOMMU the IOVA is the physical address: nobody can choose one";
  }
  const NoLeaks guard;
  OPEN_CASE(c);
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
  const std::uint64_t taken = dma::to_u64(c->live->iova());
  EXPECT_FAILS_WITH(c->backend().map(p.data(), 4096, taken), EEXIST, {"overlaps an existing mapping"});
  c->expect_unchanged(before);
}

TEST(BadInput, MapInTheMsiWindowOutsideTheIovaRanges) {
  if (mode() == IommuMode::noiommu) {
    GTEST_SKIP() << "without an IOMMU there are no IOVA ranges to be outside of";
  }
  const NoLeaks guard;
  OPEN_CASE(c);
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
  EXPECT_FAILS_WITH(c->backend().map(p.data(), 4096, 0xfee00000), EINVAL,
                    {"IOVA 0xfee00000", "outside the IOVA ranges the IOMMU allows", "0xfedfffff]"});
  c->expect_unchanged(before);
}

TEST(BadInput, MapBeyondTheIommuAperture) {
  if (mode() == IommuMode::noiommu) {
    GTEST_SKIP() << "without an IOMMU there are no IOVA ranges to be outside of";
  }
  const NoLeaks guard;
  OPEN_CASE(c);
  ASSERT_FALSE(before.ranges.empty());
  const std::uint64_t beyond = before.ranges.back().last + 1;
  ASSERT_NE(beyond, 0U) << "the ranges cover all 64 bits";
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
  EXPECT_FAILS_WITH(c->backend().map(p.data(), 4096, beyond), EINVAL, {"outside the IOVA ranges"});
  c->expect_unchanged(before);
}

// A device that drives 20 address bits reaches 1 MiB: nothing larger fits (IOMMU), and no page
// of ordinary memory lies that low (no-IOMMU, where the IOVA is the physical address).
TEST(BadInput, MapBeyondTheDeviceDmaMask) {
  const NoLeaks guard;
  OPEN_CASE(c);
  auto narrow = dma::DmaSpace::create(c->dev.shared_backend(), 20);
  ASSERT_TRUE(narrow) << narrow.error().message();
  if (mode() == IommuMode::noiommu) {
    VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
    EXPECT_FAILS_WITH((*narrow)->map(p.data(), 4096), ERANGE, {"beyond the device's 20-bit DMA mask"});
  } else {
    auto big = HostMemory::allocate(2 * kMiB, {.hugepages = false, .numa_node = -1});
    ASSERT_TRUE(big) << big.error().message();
    EXPECT_FAILS_WITH((*narrow)->map(big->data(), big->size()), ENOSPC,
                      {"no free IOVA run of 2097152 bytes", "largest free run"});
  }
  EXPECT_EQ((*narrow)->mapping_count(), 0U);
  c->expect_unchanged(before);
}

// Without an IOMMU the device uses physical addresses, and the kernel may migrate a base page
// even while it is locked: only hugepage memory maps. (Behind an IOMMU, mapping pins the pages
// and the kernel does not move pinned pages.)
TEST(BadInput, NoIommuRefusesMemoryOffHugepages) {
  if (mode() != IommuMode::noiommu) {
    GTEST_SKIP() << "behind an IOMMU any memory maps: the mapping pins it";
  }
  const NoLeaks guard;
  OPEN_CASE(c);
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory base, HostMemory::allocate(4096, {.hugepages = false, .numa_node = -1}));
  ASSERT_EQ(base.page_size(), 4096U);
  EXPECT_FAILS_WITH(c->space->map(base.data(), 4096), EINVAL, {"are not hugepage memory", "MFD_HUGETLB memfd"});
  c->expect_unchanged(before);
  // DmaBuffer takes hugepages in this mode whatever it is told: the same request maps.
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf,
                           dma::DmaBuffer::allocate(*c->space, 4096, {.hugepages = false, .numa_node = -1}));
  EXPECT_EQ(buf.size(), 2 * kMiB);
}

TEST(BadInput, DmaMaskOfMoreThan64Bits) {
  const NoLeaks guard;
  OPEN_CASE(c);
  EXPECT_FAILS_WITH(dma::DmaSpace::create(c->dev.shared_backend(), 65), EINVAL, {"65 bits", "use 12 to 64"});
  c->expect_unchanged(before);
}

TEST(BadInput, DmaMaskThatLeavesNoUsablePage) {
  if (mode() == IommuMode::noiommu) {
    GTEST_SKIP() << "without an IOMMU the mask is checked per mapping, not when the space is made";
  }
  const NoLeaks guard;
  OPEN_CASE(c);
  EXPECT_FAILS_WITH(dma::DmaSpace::create(c->dev.shared_backend(), 12), EINVAL,
                    {"no whole 4096-byte page is usable", "12-bit DMA mask"});
  c->expect_unchanged(before);
}

TEST(BadInput, UnmapTwice) {
  const NoLeaks guard;
  OPEN_CASE(c);
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
  ASSERT_TRUE(c->space->map(p.data(), 4096));
  ASSERT_TRUE(c->space->unmap(p.data(), 4096));
  EXPECT_FAILS_WITH(c->space->unmap(p.data(), 4096), ENOENT, {"4096 bytes at", "not mapped (double unmap?)"});
  c->expect_unchanged(before);
}

TEST(BadInput, UnmapMemoryNeverMapped) {
  const NoLeaks guard;
  OPEN_CASE(c);
  VFE_ASSERT_OK_AND_ASSIGN(const HostMemory p, page());
  EXPECT_FAILS_WITH(c->space->unmap(p.data(), 4096), ENOENT, {"not mapped"});
  c->expect_unchanged(before);
}

TEST(BadInput, UnmapPartOfAMapping) {
  const NoLeaks guard;
  OPEN_CASE(c);
  EXPECT_FAILS_WITH(c->space->unmap(c->live->data(), 4096), EINVAL, {"partial remove?", "remove whole"});
  c->expect_unchanged(before);
}

TEST(BadInput, UnmapAnIovaWithNothingMapped) {
  const NoLeaks guard;
  OPEN_CASE(c);
  EXPECT_FAILS_WITH(c->backend().unmap(kFreeIova, 4096), ENOENT, {"4096 bytes at", "0x40000000"});
  c->expect_unchanged(before);
}

TEST(BadInput, DmaBufferOfZeroBytes) {
  const NoLeaks guard;
  OPEN_CASE(c);
  EXPECT_FAILS_WITH(dma::DmaBuffer::allocate(*c->space, 0), EINVAL, {"0 bytes is not a usable size"});
  c->expect_unchanged(before);
}

TEST(BadInput, DmaBufferOnANumaNodeThatDoesNotExist) {
  // hwloc's topology is loaded on first use and kept: load it before the first snapshot.
  const NoLeaks guard("hwloc", [] { static_cast<void>(HostMemory::allocate(4096, {.hugepages = false, .numa_node = 0})); });
  OPEN_CASE(c);
  EXPECT_FAILS_WITH(dma::DmaBuffer::allocate(*c->space, 4096, {.hugepages = false, .numa_node = 7}), EINVAL,
                    {"there is no NUMA node 7"});
  c->expect_unchanged(before);
}

// The library's own check: more than RLIMIT_MEMLOCK in all is refused before the kernel is
// asked, with the amount needed (the live 2 MiB plus this 1 MiB).
TEST(BadInput, MemlockLimitTooLowForTheLibrary) {
  const NoLeaks guard;
  OPEN_CASE(c);
  auto m = HostMemory::allocate(kMiB, {.hugepages = false, .numa_node = -1});
  ASSERT_TRUE(m);
  const LowMemlock low(64 * 1024);
  ASSERT_TRUE(low.ok()) << std::strerror(errno);
  EXPECT_FAILS_WITH(c->space->map(m->data(), m->size()), ENOMEM,
                    {"RLIMIT_MEMLOCK is 64 KiB", "3072 KiB are needed", "ulimit -l 3072"});
  c->expect_unchanged(before);
}

// The kernel's check, reached by going around DmaSpace: the pinning fails part way and is undone.
TEST(BadInput, MemlockLimitTooLowForTheKernel) {
  const NoLeaks guard;
  OPEN_CASE(c);
  auto m = HostMemory::allocate(kMiB, {.hugepages = false, .numa_node = -1});
  ASSERT_TRUE(m);
  const LowMemlock low(64 * 1024);
  ASSERT_TRUE(low.ok()) << std::strerror(errno);
  EXPECT_FAILS_WITH(c->backend().map(m->data(), m->size(), kFreeIova), ENOMEM,
                    {"1048576 bytes", "RLIMIT_MEMLOCK"});
  c->expect_unchanged(before);
}

}  // namespace
}  // namespace vfe::vmtest
