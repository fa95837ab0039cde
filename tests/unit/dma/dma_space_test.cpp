// DmaSpace over a scripted type1 kernel: IOVAs come from the reported ranges, map and unmap
// reach the kernel in order, failures leave nothing behind, and RLIMIT_MEMLOCK is checked
// before the kernel is asked.
#include "dma/dma_space.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_vfio.hpp"

namespace vfe::dma {
namespace {
using test::error_of;

class DmaSpaceTest : public test::VfioFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(VfioFixture::SetUp());
    // One IOVA range, [0, 1 GiB), as VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE reports it.
    sys_.on_ptr(VFIO_IOMMU_GET_INFO, [](int, void* arg) {
      test::CapChain caps;
      caps.add(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1,
               test::pack(std::uint32_t{1}, std::uint32_t{0}, vfio_iova_range{0, (1ULL << 30) - 1}));
      const auto bytes = caps.bytes(sizeof(vfio_iommu_type1_info));
      return test::reply_info(arg, vfio_iommu_type1_info{}, VFIO_IOMMU_INFO_CAPS, bytes);
    });
    sys_.on_ptr(VFIO_IOMMU_MAP_DMA, [this](int, void* arg) {
      maps_.push_back(*static_cast<vfio_iommu_type1_dma_map*>(arg));
      return map_errno_ == 0 ? 0 : test::fail(map_errno_);
    });
    sys_.on_ptr(VFIO_IOMMU_UNMAP_DMA, [this](int, void* arg) {
      unmaps_.push_back(*static_cast<vfio_iommu_type1_dma_unmap*>(arg));
      return 0;  // size stays as asked: all of it was unmapped
    });
    VFE_ASSERT_OK_AND_ASSIGN(backend_, type1());
    // Attaches the group, as a driver would.
    VFE_ASSERT_OK_AND_ASSIGN(auto dev, vfio::Device::open(test::kDevice, backend_));
    device_.emplace(std::move(dev));
  }

  Result<std::unique_ptr<DmaSpace>> space(unsigned mask_bits = 64) {
    return DmaSpace::create(backend_, mask_bits);
  }

  alignas(4096) static inline std::uint8_t memory_[4 * 4096];
  std::shared_ptr<vfio::IommuBackend> backend_;
  std::optional<vfio::Device> device_;
  std::vector<vfio_iommu_type1_dma_map> maps_;
  std::vector<vfio_iommu_type1_dma_unmap> unmaps_;
  int map_errno_ = 0;
};

TEST_F(DmaSpaceTest, MapsAtAnIovaInsideTheRangesAndTranslates) {
  VFE_ASSERT_OK_AND_ASSIGN(auto s, space());
  const auto iova = s->map(memory_, 2 * 4096);
  ASSERT_TRUE(iova) << iova.error().message();
  ASSERT_EQ(maps_.size(), 1U);
  EXPECT_EQ(maps_[0].iova, to_u64(*iova));
  EXPECT_EQ(maps_[0].vaddr, reinterpret_cast<std::uintptr_t>(memory_));
  EXPECT_EQ(maps_[0].size, 2U * 4096);
  EXPECT_LT(to_u64(*iova) + 2 * 4096, 1ULL << 30);
  EXPECT_EQ(s->translate(memory_ + 4097), *iova + 4097);
  EXPECT_EQ(s->mapping_count(), 1U);
  ASSERT_TRUE(s->unmap(memory_, 2 * 4096));
  ASSERT_EQ(unmaps_.size(), 1U);
  EXPECT_EQ(unmaps_[0].iova, to_u64(*iova));
  EXPECT_EQ(s->translate(memory_), std::nullopt);
  EXPECT_EQ(s->mapping_count(), 0U);
}

// Behind an IOMMU any memory can be mapped: the options asked for stand.
TEST_F(DmaSpaceTest, MemoryOptionsAreThoseAskedFor) {
  VFE_ASSERT_OK_AND_ASSIGN(auto s, space());
  const MemoryOptions o = s->memory_options({.hugepages = false, .numa_node = 0});
  EXPECT_FALSE(o.hugepages);
  EXPECT_FALSE(o.hugepages_only);
  EXPECT_EQ(o.numa_node, 0);
}

// Without an IOMMU, DmaBuffer and DmaPool allocate from hugepages only, whatever was asked.
class DmaSpaceNoIommuTest : public test::VfioFixture {};

TEST_F(DmaSpaceNoIommuTest, MemoryOptionsAskForHugepagesOnly) {
  set_group_name("7", "vfio-noiommu");
  VFE_ASSERT_OK_AND_ASSIGN(auto backend, vfio::make_backend(vfio::IommuMode::noiommu, sys_));
  VFE_ASSERT_OK_AND_ASSIGN(auto s, DmaSpace::create(backend));
  const MemoryOptions o = s->memory_options({.hugepages = false, .numa_node = 1});
  EXPECT_TRUE(o.hugepages);
  EXPECT_TRUE(o.hugepages_only);
  EXPECT_EQ(o.numa_node, 1);
}

TEST_F(DmaSpaceTest, AFailedKernelMapLeavesNoIovaTaken) {
  VFE_ASSERT_OK_AND_ASSIGN(auto s, space());
  const auto before = s->free_iova_bytes();
  map_errno_ = ENOSPC;
  const auto e = error_of(s->map(memory_, 4096));
  EXPECT_TRUE(e.is(ENOSPC));
  EXPECT_THAT(e.message(), ::testing::HasSubstr("dma_entry_limit"));
  EXPECT_EQ(s->free_iova_bytes(), before);
  EXPECT_EQ(s->translate(memory_), std::nullopt);
}

TEST_F(DmaSpaceTest, DoubleUnmapAndBadArgumentsChangeNothing) {
  VFE_ASSERT_OK_AND_ASSIGN(auto s, space());
  ASSERT_TRUE(s->map(memory_, 4096));
  ASSERT_TRUE(s->unmap(memory_, 4096));
  EXPECT_TRUE(error_of(s->unmap(memory_, 4096)).is(ENOENT));
  EXPECT_EQ(unmaps_.size(), 1U) << "a double unmap must not reach the kernel";
  EXPECT_TRUE(error_of(s->map(memory_ + 1, 4096)).is(EINVAL));
  EXPECT_TRUE(error_of(s->map(memory_, 0)).is(EINVAL));
  EXPECT_TRUE(error_of(s->map(memory_, 100)).is(EINVAL));
  EXPECT_TRUE(maps_.size() == 1U);
  EXPECT_FALSE(DmaSpace::create(backend_, 8));
  EXPECT_FALSE(DmaSpace::create(nullptr));
}

// Memory mapped already (wholly or in part) is refused before the kernel pins it again, and
// before the memlock check, which would otherwise blame the limit.
TEST_F(DmaSpaceTest, OverlappingMapIsRefusedBeforeTheKernelIsAsked) {
  sys_.rlimit_value = {8192, 8192};
  sys_.cap_ipc_lock = false;
  VFE_ASSERT_OK_AND_ASSIGN(auto s, space());
  const auto iova = s->map(memory_, 2 * 4096);
  ASSERT_TRUE(iova);
  const auto free_before = s->free_iova_bytes();
  for (std::uint8_t* at : {memory_, memory_ + 4096}) {
    const auto e = error_of(s->map(at, 2 * 4096));
    EXPECT_TRUE(e.is(EEXIST)) << e.message();
    EXPECT_THAT(e.message(), ::testing::HasSubstr("overlaps the registration"));
  }
  EXPECT_EQ(maps_.size(), 1U);
  EXPECT_EQ(s->free_iova_bytes(), free_before);
  EXPECT_EQ(s->translate(memory_ + 4096), *iova + 4096);
}

TEST_F(DmaSpaceTest, MemlockLimitIsCheckedBeforeTheKernelIsAsked) {
  sys_.rlimit_value = {8192, 8192};  // 8 KiB
  sys_.cap_ipc_lock = false;
  VFE_ASSERT_OK_AND_ASSIGN(auto s, space());
  ASSERT_TRUE(s->map(memory_, 8192));
  const auto e = error_of(s->map(memory_ + 8192, 4096));
  EXPECT_TRUE(e.is(ENOMEM));
  EXPECT_EQ(e.message(),
            "map DMA: RLIMIT_MEMLOCK is 8 KiB, and DMA mappings pin their memory: 12 KiB are needed "
            "with this one. Raise the limit (ulimit -l 12, or memlock in /etc/security/limits.conf) "
            "or give the process CAP_IPC_LOCK (Cannot allocate memory)");
  EXPECT_EQ(maps_.size(), 1U);
  // Unmapping gives the budget back; CAP_IPC_LOCK lifts the limit.
  ASSERT_TRUE(s->unmap(memory_, 8192));
  EXPECT_TRUE(s->map(memory_ + 8192, 4096));
  sys_.cap_ipc_lock = true;
  EXPECT_TRUE(s->map(memory_, 8192));
}

TEST_F(DmaSpaceTest, NarrowDmaMaskKeepsIovasLow) {
  VFE_ASSERT_OK_AND_ASSIGN(auto s, space(20));  // 1 MiB of device address space
  const auto iova = s->map(memory_, 4096);
  ASSERT_TRUE(iova);
  EXPECT_LT(to_u64(*iova), 1ULL << 20);
}

}  // namespace
}  // namespace vfe::dma
