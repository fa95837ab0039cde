#include "vfio/type1_backend.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_vfio.hpp"
#include "vfio/device.hpp"

namespace vfe::vfio {
namespace {

using vfe::test::error_of;
using test::CapChain;
using test::fail;
using test::kDevice;
using test::pack;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class Type1Test : public test::VfioFixture {
 protected:
  Result<std::shared_ptr<Type1Backend>> backend() { return Type1Backend::create(sys_); }

  // Answers VFIO_IOMMU_GET_INFO with `caps` (laid out from offset 24) and records each argsz.
  void script_info(std::vector<std::uint8_t> caps) {
    sys_.on_ptr(VFIO_IOMMU_GET_INFO, [this, caps = std::move(caps)](int, void* arg) {
      info_argsz_.push_back(static_cast<vfio_iommu_type1_info*>(arg)->argsz);
      vfio_iommu_type1_info info{};
      info.flags = VFIO_IOMMU_INFO_PGSIZES;
      info.iova_pgsizes = 0x40201000;
      return test::reply_info(arg, info, VFIO_IOMMU_INFO_CAPS, caps);
    });
  }

  std::vector<std::uint32_t> info_argsz_;
};

constexpr std::uint32_t kInfoSize = sizeof(vfio_iommu_type1_info);

// IOVA ranges reported out of order, as a kernel may, then the DMA mapping budget.
CapChain qemu_caps(std::uint32_t nr_iovas = 2) {
  return CapChain()
      .add(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1,
           pack(nr_iovas, std::uint32_t{0}, vfio_iova_range{0xfef00000, 0x7fffffffff},
                vfio_iova_range{0, 0xfedfffff}))
      .add(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, pack(std::uint32_t{65535}));
}

TEST_F(Type1Test, MissingContainerNodeSaysToLoadVfioPci) {
  sys_.fail_open("/dev/vfio/vfio", ENOENT);
  const auto r = Type1Backend::create(sys_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "open: /dev/vfio/vfio: load vfio-pci (modprobe vfio-pci) and run as root or as the "
            "owner of the node (No such file or directory)");
  EXPECT_TRUE(sys_.ioctls().empty());
}

TEST_F(Type1Test, ApiVersionMismatchIsNotSupported) {
  sys_.on_val(VFIO_GET_API_VERSION, [](int, unsigned long) { return 1; });
  const auto r = Type1Backend::create(sys_);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOTSUP));
  EXPECT_EQ(r.error().detail, "the kernel speaks VFIO API 1, vfio-engine 0");
  EXPECT_EQ(sys_.count(VFIO_CHECK_EXTENSION), 0U);
}

TEST_F(Type1Test, MissingType1v2SaysToLoadTheModule) {
  std::vector<unsigned long> asked;
  sys_.on_val(VFIO_CHECK_EXTENSION, [&](int, unsigned long type) {
    asked.push_back(type);
    return 0;
  });
  const auto r = Type1Backend::create(sys_);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOTSUP));
  EXPECT_EQ(r.error().detail,
            "the kernel has no VFIO_TYPE1v2_IOMMU: load vfio_iommu_type1, or use iommufd");
  EXPECT_THAT(asked, ElementsAre(VFIO_TYPE1v2_IOMMU));
}

TEST_F(Type1Test, DeviceNotBoundToVfioPciIsRefusedBeforeAnyKernelCall) {
  add_device("0000:00:05.0", "nvme", "8");
  const auto r = Device::open("0000:00:05.0", {IommuMode::type1, &sys_});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENODEV));
  EXPECT_EQ(r.error().detail,
            "0000:00:05.0 is bound to nvme, not vfio-pci; bind it with "
            "`scripts/devbind.sh bind 0000:00:05.0`");
  EXPECT_TRUE(sys_.untouched());

  // Through a backend that exists already: still no group opened, no ioctl beyond create's.
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto ioctls = sys_.ioctls().size();
  const auto dev = b->open_device(Bdf{0, 0, 5, 0});
  ASSERT_FALSE(dev);
  EXPECT_THAT(sys_.opened(), ElementsAre("/dev/vfio/vfio"));
  EXPECT_EQ(sys_.ioctls().size(), ioctls);
}

TEST_F(Type1Test, GroupNotViableNamesTheMemberBoundElsewhere) {
  add_device("0000:00:04.1", "ixgbe", "7");
  add_device("0000:00:04.2", "pcieport", "7");  // bridges don't spoil a group
  sys_.on_ptr(VFIO_GROUP_GET_STATUS, [](int, void* arg) {
    static_cast<vfio_group_status*>(arg)->flags = 0;  // not VFIO_GROUP_FLAGS_VIABLE
    return 0;
  });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EBUSY));
  EXPECT_EQ(r.error().detail,
            "IOMMU group 7 is not viable: 0000:00:04.1 is bound to ixgbe; bind every function of "
            "the group to vfio-pci or unbind it");
  EXPECT_EQ(sys_.count(VFIO_GROUP_SET_CONTAINER), 0U);
  EXPECT_EQ(sys_.count(VFIO_GROUP_GET_DEVICE_FD), 0U);
}

TEST_F(Type1Test, BusyGroupSaysAnotherProcessHasIt) {
  sys_.fail_open("/dev/vfio/7", EBUSY);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EBUSY));
  EXPECT_EQ(r.error().detail,
            "/dev/vfio/7: the group is already open in another process (`fuser /dev/vfio/7` "
            "shows which)");
}

TEST_F(Type1Test, BusyGroupNamesTheProcessHoldingIt) {
  add_holder(1234, "qemu-system-x86", 21, "/dev/vfio/7");
  add_holder(1300, "bash", 0, "/dev/pts/0");
  sys_.fail_open("/dev/vfio/7", EBUSY);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EBUSY));
  EXPECT_EQ(r.error().detail,
            "/dev/vfio/7 is held by process 1234 (qemu-system-x86): a VFIO group is open in one "
            "place at a time; close it there (in this process: open the device through the "
            "backend that has it)");
}

// Linux 6.6+: a device open through its cdev makes its group node busy (vfio group.c); the
// holder of the cdev is named.
TEST_F(Type1Test, BusyGroupNamesTheHolderOfTheDevicesCdev) {
  add_cdev(test::kDeviceName, "vfio3");
  add_holder(77, "spdk_tgt", 9, "/dev/vfio/devices/vfio3");
  sys_.fail_open("/dev/vfio/7", EBUSY);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EBUSY));
  EXPECT_EQ(r.error().detail,
            "/dev/vfio/7: 0000:00:04.0 is open through its cdev: /dev/vfio/devices/vfio3 is held by "
            "process 77 (spdk_tgt)");
}

TEST_F(Type1Test, MapOutsideTheIovaRangesListsThem) {
  script_info(qemu_caps().bytes(kInfoSize));
  sys_.on_ptr(VFIO_IOMMU_MAP_DMA, [](int, void*) { return fail(EINVAL); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto* page = reinterpret_cast<const void*>(0x7f0000000000);
  auto r = b->map(page, 8192, 0xfedff000);  // runs into the MSI window
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().detail,
            "8192 bytes at IOVA 0xfedff000: it is outside the IOVA ranges the IOMMU allows "
            "([0x0, 0xfedfffff], [0xfef00000, 0x7fffffffff]); map inside them, e.g. through a "
            "DmaSpace, which chooses the IOVA");
  r = b->map(page, 4096, 0x1000);  // inside: EINVAL for some other reason, nothing claimed
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "4096 bytes at IOVA 0x1000");
}

TEST_F(Type1Test, NoIommuGroupIsRefusedWithTheUnsafeExplanation) {
  set_group_name("7", "vfio-noiommu");
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EPERM));
  EXPECT_EQ(r.error().detail,
            "0000:00:04.0 has only a no-IOMMU group (7): without an IOMMU the device can DMA to "
            "any memory in the machine. To accept that, choose noiommu mode explicitly "
            "(VFE_IOMMU_MODE=noiommu or DeviceOptions::mode); better, turn the IOMMU on");
  EXPECT_EQ(sys_.open_count("/dev/vfio/noiommu-7") + sys_.open_count("/dev/vfio/7"), 0U);
}

TEST_F(Type1Test, DeviceWithoutGroupSaysToTurnTheIommuOn) {
  add_device("0000:00:06.0", "vfio-pci", nullptr);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(Bdf{0, 0, 6, 0});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENODEV));
  EXPECT_THAT(r.error().detail, HasSubstr("0000:00:06.0 has no IOMMU group: boot with the IOMMU "
                                          "on (intel_iommu=on or amd_iommu=on)"));
}

TEST_F(Type1Test, DevicesInTwoGroupsShareOneContainer) {
  add_device("0000:00:04.1", "vfio-pci", "7");
  add_device("0000:00:05.0", "vfio-pci", "8");
  std::vector<std::string> attached_to;
  sys_.on_ptr(VFIO_GROUP_SET_CONTAINER, [&](int, void* arg) {
    attached_to.push_back(sys_.path_of(*static_cast<int*>(arg)));
    return 0;
  });
  std::vector<unsigned long> iommu_types;
  sys_.on_val(VFIO_SET_IOMMU, [&](int, unsigned long type) {
    iommu_types.push_back(type);
    return 0;
  });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  for (const Bdf& bdf : {kDevice, Bdf{0, 0, 4, 1}, Bdf{0, 0, 5, 0}}) {
    const auto fd = b->open_device(bdf);
    ASSERT_TRUE(fd) << fd.error().message();
    EXPECT_EQ(sys_.path_of(fd->get()), device_path(bdf.to_string()));
  }
  EXPECT_EQ(sys_.open_count("/dev/vfio/vfio"), 1U);
  EXPECT_EQ(sys_.open_count("/dev/vfio/7"), 1U);
  EXPECT_EQ(sys_.open_count("/dev/vfio/8"), 1U);
  EXPECT_THAT(attached_to, ElementsAre("/dev/vfio/vfio", "/dev/vfio/vfio"));
  EXPECT_THAT(iommu_types, ElementsAre(VFIO_TYPE1v2_IOMMU));
  EXPECT_THAT(device_fd_names_, ElementsAre("0000:00:04.0", "0000:00:04.1", "0000:00:05.0"));
}

TEST_F(Type1Test, AFailedSetIommuLeavesNoHalfAttachedGroup) {
  sys_.on_val(VFIO_SET_IOMMU, [](int, unsigned long) { return fail(EINVAL); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "VFIO_SET_IOMMU: type1v2 (Invalid argument)");
  // The group was closed, so the next attempt starts over and sets the IOMMU then.
  sys_.on_val(VFIO_SET_IOMMU, [](int, unsigned long) { return 0; });
  ASSERT_TRUE(b->open_device(kDevice));
  EXPECT_EQ(sys_.open_count("/dev/vfio/7"), 2U);
  EXPECT_EQ(sys_.count(VFIO_SET_IOMMU), 2U);
}

TEST_F(Type1Test, DeviceFdBusyIsReported) {
  sys_.on_ptr(VFIO_GROUP_GET_DEVICE_FD, [](int, void*) { return fail(EBUSY); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "0000:00:04.0 is already open (in this process or another)");
}

TEST_F(Type1Test, MapSendsTheRequestAndReturnsTheIova) {
  vfio_iommu_type1_dma_map seen{};
  sys_.on_ptr(VFIO_IOMMU_MAP_DMA, [&](int, void* arg) {
    std::memcpy(&seen, arg, sizeof(seen));
    return 0;
  });
  alignas(4096) static std::uint8_t page[4096];
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto iova = b->map(page, sizeof(page), 0x100000);
  ASSERT_TRUE(iova) << iova.error().message();
  EXPECT_EQ(*iova, 0x100000U);
  EXPECT_EQ(seen.argsz, sizeof(seen));
  EXPECT_EQ(seen.flags, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
  EXPECT_EQ(seen.vaddr, reinterpret_cast<std::uintptr_t>(page));
  EXPECT_EQ(seen.iova, 0x100000U);
  EXPECT_EQ(seen.size, 4096U);
}

TEST_F(Type1Test, MapErrorsSayWhatToDo) {
  const struct {
    int err;
    const char* remedy;
  } cases[] = {
      {ENOSPC, "4096 bytes at IOVA 0x2000: the kernel's limit on type1 mappings is reached "
               "(vfio_iommu_type1 dma_entry_limit); map fewer, larger buffers or raise the module "
               "parameter"},
      {ENOMEM, "4096 bytes at IOVA 0x2000: pinning it exceeds RLIMIT_MEMLOCK (or memory is "
               "short); raise the memlock limit to cover all DMA memory"},
      {EEXIST, "4096 bytes at IOVA 0x2000: overlaps an existing mapping"},
      {EFAULT, "4096 bytes at IOVA 0x2000"},
  };
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  for (const auto& c : cases) {
    sys_.on_ptr(VFIO_IOMMU_MAP_DMA, [err = c.err](int, void*) { return fail(err); });
    const auto r = b->map(reinterpret_cast<const void*>(0x7f0000000000), 4096, 0x2000);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is(c.err)) << r.error().message();
    EXPECT_STREQ(r.error().op, "VFIO_IOMMU_MAP_DMA");
    EXPECT_EQ(r.error().detail, c.remedy);
  }
}

TEST_F(Type1Test, UnmapOfLessThanAskedIsADoubleUnmap) {
  std::uint64_t unmapped = 0;
  sys_.on_ptr(VFIO_IOMMU_UNMAP_DMA, [&](int, void* arg) {
    static_cast<vfio_iommu_type1_dma_unmap*>(arg)->size = unmapped;
    return 0;
  });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->unmap(0x2000, 0x2000);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOENT));
  EXPECT_EQ(r.error().detail,
            "8192 bytes at IOVA 0x2000: 0 bytes were mapped there (double unmap, or not the range "
            "that was mapped?)");
  unmapped = 0x1000;
  EXPECT_THAT(error_of(b->unmap(0x2000, 0x2000)).detail, HasSubstr(": 4096 bytes were mapped"));
  unmapped = 0x2000;
  EXPECT_TRUE(b->unmap(0x2000, 0x2000));
  sys_.on_ptr(VFIO_IOMMU_UNMAP_DMA, [](int, void*) { return fail(EINVAL); });
  EXPECT_EQ(error_of(b->unmap(0x2000, 0x2000)).message(),
            "VFIO_IOMMU_UNMAP_DMA: 8192 bytes at IOVA 0x2000 (Invalid argument)");
}

TEST_F(Type1Test, UnmapAfterTheKernelDroppedTheContainersIommuIsDone) {
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  // What the kernel does once it detached the last group (its last device was removed): the
  // container has no IOMMU, and every IOMMU ioctl is EINVAL.
  sys_.on_ptr(VFIO_IOMMU_UNMAP_DMA, [](int, void*) { return fail(EINVAL); });
  sys_.on_ptr(VFIO_IOMMU_GET_INFO, [](int, void*) { return fail(EINVAL); });
  EXPECT_TRUE(b->unmap(0x2000, 0x2000));
  // Any other reason for the info to fail keeps the unmap's error.
  sys_.on_ptr(VFIO_IOMMU_GET_INFO, [](int, void*) { return fail(EFAULT); });
  EXPECT_EQ(error_of(b->unmap(0x2000, 0x2000)).message(),
            "VFIO_IOMMU_UNMAP_DMA: 8192 bytes at IOVA 0x2000 (Invalid argument)");
}

TEST_F(Type1Test, InfoIsAskedTwiceAndItsCapabilitiesRead) {
  const auto caps = qemu_caps().bytes(kInfoSize);
  script_info(caps);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto ranges = b->iova_ranges();
  ASSERT_TRUE(ranges) << ranges.error().message();
  EXPECT_THAT(*ranges, ElementsAre(IovaRange{0, 0xfedfffff}, IovaRange{0xfef00000, 0x7fffffffff}));
  EXPECT_THAT(info_argsz_, ElementsAre(kInfoSize, kInfoSize + caps.size()));
  EXPECT_EQ(b->dma_avail(), 65535U);
}

TEST_F(Type1Test, InfoWithoutCapabilitiesHasNoRangesAndNoBudget) {
  script_info({});
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto ranges = b->iova_ranges();
  ASSERT_FALSE(ranges);
  EXPECT_TRUE(ranges.error().is(ENOTSUP));
  EXPECT_THAT(ranges.error().detail, HasSubstr("needs Linux 5.4 or later"));
  EXPECT_EQ(b->dma_avail(), std::nullopt);
  EXPECT_THAT(info_argsz_, ElementsAre(kInfoSize, kInfoSize));  // one call each
}

TEST_F(Type1Test, CyclicCapabilityChainIsRejected) {
  auto caps = qemu_caps().bytes(kInfoSize);
  const std::uint32_t first = kInfoSize;
  const std::uint32_t second = kInfoSize + 8 + 8 + 2 * sizeof(vfio_iova_range);
  std::memcpy(caps.data() + (second - kInfoSize) + 4, &first, sizeof(first));
  script_info(caps);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->iova_ranges();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().detail, "capability chain loops back to offset 0x18");
  EXPECT_EQ(b->dma_avail(), std::nullopt);
}

TEST_F(Type1Test, CapabilityPastTheBufferIsRejected) {
  auto caps = qemu_caps().bytes(kInfoSize);
  const std::uint32_t far = 0x1000;
  std::memcpy(caps.data() + 4, &far, sizeof(far));  // the first cap's next
  script_info(caps);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->iova_ranges();
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().detail, HasSubstr("capability at offset 0x1000 lies outside the"));
}

TEST_F(Type1Test, RangeCountPastTheBufferIsRejected) {
  script_info(qemu_caps(1000).bytes(kInfoSize));
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->iova_ranges();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_EQ(r.error().detail, "IOVA ranges run past the buffer");
}

TEST_F(Type1Test, InfoIoctlFailureIsReported) {
  sys_.on_ptr(VFIO_IOMMU_GET_INFO, [](int, void*) { return fail(EINVAL); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  EXPECT_EQ(error_of(b->iova_ranges()).message(),
            "VFIO_IOMMU_GET_INFO: type1 container (Invalid argument)");
  EXPECT_EQ(b->dma_avail(), std::nullopt);
}

}  // namespace
}  // namespace vfe::vfio
