#include "vfio/iommufd_backend.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_vfio.hpp"
#include "vfio/device.hpp"

namespace vfe::vfio {
namespace {

using vfe::test::error_of;
using test::fail;
using test::kDevice;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::uint32_t kIoasId = 5;
constexpr const char* kCdev = "/dev/vfio/devices/vfio3";

class IommufdTest : public test::VfioFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(VfioFixture::SetUp());
    add_cdev(test::kDeviceName, "vfio3");
    sys_.on_ptr(IOMMU_IOAS_ALLOC, [](int, void* arg) {
      static_cast<iommu_ioas_alloc*>(arg)->out_ioas_id = kIoasId;
      return 0;
    });
    sys_.on_ptr(VFIO_DEVICE_BIND_IOMMUFD, [this](int, void* arg) {
      bind_ = *static_cast<vfio_device_bind_iommufd*>(arg);
      return 0;
    });
    sys_.on_ptr(VFIO_DEVICE_ATTACH_IOMMUFD_PT, [this](int, void* arg) {
      attach_ = *static_cast<vfio_device_attach_iommufd_pt*>(arg);
      return 0;
    });
  }

  Result<std::shared_ptr<IommufdBackend>> backend() { return IommufdBackend::create(sys_); }

  vfio_device_bind_iommufd bind_{};
  vfio_device_attach_iommufd_pt attach_{};
};

TEST_F(IommufdTest, MissingDevIommuSaysWhatTheKernelNeeds) {
  sys_.fail_open("/dev/iommu", ENOENT);
  const auto r = IommufdBackend::create(sys_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "open: /dev/iommu: the kernel needs CONFIG_IOMMUFD (Linux 6.6+), and you need to be "
            "root or the node's owner; or use type1 mode (No such file or directory)");
}

TEST_F(IommufdTest, IoasAllocFailureIsReported) {
  sys_.on_ptr(IOMMU_IOAS_ALLOC, [](int, void*) { return fail(ENOMEM); });
  const auto r = IommufdBackend::create(sys_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "IOMMU_IOAS_ALLOC: /dev/iommu (Cannot allocate memory)");
}

TEST_F(IommufdTest, OpensTheCdevBindsItAndAttachesItToTheIoas) {
  const auto dev = Device::open(test::kDeviceName, {IommuMode::iommufd, &sys_});
  ASSERT_TRUE(dev) << dev.error().message();
  EXPECT_EQ(dev->backend().mode(), IommuMode::iommufd);
  EXPECT_THAT(sys_.opened(), ElementsAre("/dev/iommu", kCdev));
  EXPECT_EQ(sys_.path_of(dev->fd()), kCdev);
  EXPECT_EQ(bind_.argsz, sizeof(bind_));
  EXPECT_EQ(sys_.path_of(bind_.iommufd), "/dev/iommu");
  EXPECT_EQ(attach_.argsz, sizeof(attach_));
  EXPECT_EQ(attach_.pt_id, kIoasId);
  EXPECT_EQ(sys_.count(VFIO_GROUP_GET_DEVICE_FD), 0U);  // no legacy group in this mode
}

TEST_F(IommufdTest, DeviceWithoutCdevNeedsAnotherKernelOrType1) {
  add_device("0000:00:05.0", "vfio-pci", "8");
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(Bdf{0, 0, 5, 0});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOTSUP));
  EXPECT_EQ(r.error().detail,
            "0000:00:05.0 has no /dev/vfio/devices node: the kernel lacks "
            "CONFIG_VFIO_DEVICE_CDEV; use type1 mode");
  EXPECT_THAT(sys_.opened(), ElementsAre("/dev/iommu"));
}

TEST_F(IommufdTest, DeviceNotBoundToVfioPciOpensNothing) {
  add_device("0000:00:05.0", "nvme", "8");
  add_cdev("0000:00:05.0", "vfio4");
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(Bdf{0, 0, 5, 0});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().detail, HasSubstr("is bound to nvme, not vfio-pci"));
  EXPECT_THAT(sys_.opened(), ElementsAre("/dev/iommu"));
}

TEST_F(IommufdTest, BusyCdevSaysAnotherProcessHasIt) {
  sys_.fail_open(kCdev, EBUSY);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "/dev/vfio/devices/vfio3 is already open in another process");
}

TEST_F(IommufdTest, BusyCdevNamesTheProcessHoldingIt) {
  add_holder(4321, "vfe_vm_tests", 5, kCdev);
  sys_.fail_open(kCdev, EBUSY);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "/dev/vfio/devices/vfio3 is held by process 4321 (vfe_vm_tests)");
}

// The kernel refuses a second bind of a device with EINVAL; when another process holds the
// cdev, that is the reason, and the error says EBUSY and who.
TEST_F(IommufdTest, BindRefusedWhileAnotherProcessHoldsTheCdevNamesIt) {
  add_holder(4321, "vfe_vm_tests", 5, kCdev);
  sys_.on_ptr(VFIO_DEVICE_BIND_IOMMUFD, [](int, void*) { return fail(EINVAL); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EBUSY));
  EXPECT_EQ(r.error().message(),
            "VFIO_DEVICE_BIND_IOMMUFD: 0000:00:04.0 is in use: /dev/vfio/devices/vfio3 is held "
            "by process 4321 (vfe_vm_tests); a device is bound to one iommufd at a time, so "
            "close it there (in this process: open the device through the backend that has it) "
            "(Device or resource busy)");
  EXPECT_EQ(sys_.count(VFIO_DEVICE_ATTACH_IOMMUFD_PT), 0U);
}

TEST_F(IommufdTest, BindFailureStopsBeforeAttach) {
  sys_.on_ptr(VFIO_DEVICE_BIND_IOMMUFD, [](int, void*) { return fail(EBUSY); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "VFIO_DEVICE_BIND_IOMMUFD: /dev/vfio/devices/vfio3 (Device or resource busy)");
  EXPECT_EQ(sys_.count(VFIO_DEVICE_ATTACH_IOMMUFD_PT), 0U);
}

TEST_F(IommufdTest, AttachFailureIsReported) {
  sys_.on_ptr(VFIO_DEVICE_ATTACH_IOMMUFD_PT, [](int, void*) { return fail(EINVAL); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->open_device(kDevice);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT: /dev/vfio/devices/vfio3 (Invalid argument)");
}

TEST_F(IommufdTest, MapsAtAFixedIovaInTheIoas) {
  iommu_ioas_map seen{};
  sys_.on_ptr(IOMMU_IOAS_MAP, [&](int fd, void* arg) {
    seen = *static_cast<iommu_ioas_map*>(arg);
    return sys_.path_of(fd) == "/dev/iommu" ? 0 : fail(EBADF);
  });
  const auto* va = reinterpret_cast<const void*>(0x7f0000200000);
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto iova = b->map(va, 0x200000, 0x400000);
  ASSERT_TRUE(iova) << iova.error().message();
  EXPECT_EQ(*iova, 0x400000U);
  EXPECT_EQ(seen.size, sizeof(seen));
  EXPECT_EQ(seen.flags,
            IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
  EXPECT_EQ(seen.ioas_id, kIoasId);
  EXPECT_EQ(seen.user_va, 0x7f0000200000U);
  EXPECT_EQ(seen.length, 0x200000U);
  EXPECT_EQ(seen.iova, 0x400000U);
}

TEST_F(IommufdTest, MapErrorsSayWhatToDo) {
  const struct {
    int err;
    const char* detail;
  } cases[] = {
      {ENOMEM, "4096 bytes at IOVA 0x1000: pinning it exceeds RLIMIT_MEMLOCK (or memory is "
               "short); raise the memlock limit to cover all DMA memory"},
      {EEXIST, "4096 bytes at IOVA 0x1000: overlaps an existing mapping"},
      {EINVAL, "4096 bytes at IOVA 0x1000"},
  };
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  for (const auto& c : cases) {
    sys_.on_ptr(IOMMU_IOAS_MAP, [err = c.err](int, void*) { return fail(err); });
    const auto r = b->map(reinterpret_cast<const void*>(0x7f0000000000), 4096, 0x1000);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is(c.err));
    EXPECT_STREQ(r.error().op, "IOMMU_IOAS_MAP");
    EXPECT_EQ(r.error().detail, c.detail);
  }
}

TEST_F(IommufdTest, UnmapOfNothingIsADoubleUnmap) {
  sys_.on_ptr(IOMMU_IOAS_UNMAP, [](int, void*) { return fail(ENOENT); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->unmap(0x1000, 0x2000);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOENT));
  EXPECT_EQ(r.error().detail, "8192 bytes at IOVA 0x1000: nothing is mapped there (double unmap?)");

  sys_.on_ptr(IOMMU_IOAS_UNMAP, [](int, void* arg) {
    static_cast<iommu_ioas_unmap*>(arg)->length = 0x1000;  // the kernel unmapped less
    return 0;
  });
  const auto partial = b->unmap(0x1000, 0x2000);
  ASSERT_FALSE(partial);
  EXPECT_TRUE(partial.error().is(ENOENT));
  EXPECT_EQ(partial.error().detail, "8192 bytes at IOVA 0x1000: only 4096 were mapped there");

  iommu_ioas_unmap seen{};
  sys_.on_ptr(IOMMU_IOAS_UNMAP, [&](int, void* arg) {
    seen = *static_cast<iommu_ioas_unmap*>(arg);
    return 0;  // the kernel leaves length as asked when it unmapped all of it
  });
  EXPECT_TRUE(b->unmap(0x1000, 0x2000));
  EXPECT_EQ(seen.ioas_id, kIoasId);
  EXPECT_EQ(seen.iova, 0x1000U);
  EXPECT_EQ(seen.length, 0x2000U);
}

// The kernel's IOMMU_IOAS_IOVA_RANGES: writes min(num_iovas, ranges) entries, sets num_iovas to
// how many there are, and fails with EMSGSIZE when they did not all fit.
int answer_ranges(void* arg, const std::vector<iommu_iova_range>& ranges) {
  auto* req = static_cast<iommu_ioas_iova_ranges*>(arg);
  auto* out = reinterpret_cast<iommu_iova_range*>(static_cast<std::uintptr_t>(req->allowed_iovas));
  for (std::size_t i = 0; i < ranges.size() && i < req->num_iovas; ++i) {
    out[i] = ranges[i];
  }
  const bool fits = req->num_iovas >= ranges.size();
  req->num_iovas = static_cast<std::uint32_t>(ranges.size());
  req->out_iova_alignment = 4096;
  return fits ? 0 : fail(EMSGSIZE);
}

TEST_F(IommufdTest, IovaRangesAsksForTheCountThenTheRanges) {
  std::vector<std::uint32_t> asked;
  sys_.on_ptr(IOMMU_IOAS_IOVA_RANGES, [&](int, void* arg) {
    const auto* req = static_cast<iommu_ioas_iova_ranges*>(arg);
    EXPECT_EQ(req->ioas_id, kIoasId);
    asked.push_back(req->num_iovas);
    return answer_ranges(arg, {{0xfef00000, 0x7fffffffff}, {0, 0xfedfffff}});
  });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto ranges = b->iova_ranges();
  ASSERT_TRUE(ranges) << ranges.error().message();
  EXPECT_THAT(*ranges, ElementsAre(IovaRange{0, 0xfedfffff}, IovaRange{0xfef00000, 0x7fffffffff}));
  EXPECT_THAT(asked, ElementsAre(0U, 2U));
}

TEST_F(IommufdTest, IovaRangesThatKeepGrowingAreAnErrorNotZeros) {
  // Each answer reports one range more than was asked for (devices attaching meanwhile).
  sys_.on_ptr(IOMMU_IOAS_IOVA_RANGES, [](int, void* arg) {
    const auto n = static_cast<iommu_ioas_iova_ranges*>(arg)->num_iovas + 1;
    return answer_ranges(arg, std::vector<iommu_iova_range>(n, {0x1000, 0x1fff}));
  });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  const auto r = b->iova_ranges();
  ASSERT_FALSE(r) << "returned " << r->size() << " ranges";
  EXPECT_TRUE(r.error().is(EMSGSIZE));
}

TEST_F(IommufdTest, IovaRangesFailureAndNoDmaBudget) {
  sys_.on_ptr(IOMMU_IOAS_IOVA_RANGES, [](int, void*) { return fail(ENOTTY); });
  VFE_ASSERT_OK_AND_ASSIGN(auto b, backend());
  EXPECT_EQ(error_of(b->iova_ranges()).message(),
            "IOMMU_IOAS_IOVA_RANGES: /dev/iommu (Inappropriate ioctl for device)");
  EXPECT_EQ(b->dma_avail(), std::nullopt);
}

}  // namespace
}  // namespace vfe::vfio
