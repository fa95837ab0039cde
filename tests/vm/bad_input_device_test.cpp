// The bad-input matrix, part 1: PCI addresses and devices. Each case makes one bad call against
// the real kernel's VFIO and checks that it fails with the expected errno and a message that
// says what to do, that whatever was open before still works, and (NoLeaks) that no descriptor,
// mapping or pinned page is left behind. Parts 2 and 3: bad_input_dma_test.cpp,
// bad_input_driver_test.cpp.
#include <gtest/gtest.h>
#include <linux/vfio.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "base/scope_guard.hpp"
#include "mmio/region.hpp"
#include "tests/vm/bad_input_support.hpp"
#include "tests/vm/vm_env.hpp"
#include "vfio/device.hpp"
#include "vfio/sysfs.hpp"

namespace vfe::vmtest {
namespace {

using vfio::Bdf;
using vfio::Device;
using vfio::IommuMode;

vfio::DeviceOptions options() { return {.mode = mode(), .sys = nullptr}; }
Bdf nvme0() { return devices_of("nvme").at(0); }

// The device answers: NVMe's VS register reads version 1.x through a fresh BAR mapping.
void expect_nvme_answers(const Device& dev) {
  auto bar = mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX);
  ASSERT_TRUE(bar) << bar.error().message();
  EXPECT_EQ(bar->read32(0x08) >> 16, 1U) << "NVMe VS register";
}

// Every PCI function of the guest, sorted.
std::vector<Bdf> all_functions() {
  std::vector<Bdf> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/bus/pci/devices", ec)) {
    if (auto b = Bdf::parse(e.path().filename().string())) {
      out.push_back(*b);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// `shown`: how the message quotes `text` (control characters escaped).
void expect_bad_bdf(const std::string& text, const std::string& why, const std::string& shown = "") {
  const NoLeaks guard;
  EXPECT_FAILS_WITH(Device::open(text, options()), EINVAL,
                    {"'" + (shown.empty() ? text : shown) + "' is not a PCI address", why,
                     "expected DDDD:BB:DD.F"});
}

TEST(BadInput, BdfEmpty) { expect_bad_bdf("", "no '.' before the function number"); }
TEST(BadInput, BdfWithoutFunction) { expect_bad_bdf("0000:00:02", "no '.'"); }
TEST(BadInput, BdfFunctionAbove7) { expect_bad_bdf("0000:00:02.8", "at most 7"); }
TEST(BadInput, BdfDeviceAbove1f) { expect_bad_bdf("0000:00:20.0", "at most 1f"); }
TEST(BadInput, BdfNonHexDigit) { expect_bad_bdf("0000:0g:02.0", "must be hex digits"); }
TEST(BadInput, BdfThreeDigitDomain) { expect_bad_bdf("000:00:02.0", "domain must be 4 to 8"); }
TEST(BadInput, BdfWithTrailingNewline) {
  expect_bad_bdf("0000:00:02.0\n", "must be hex digits", "0000:00:02.0\\n");
}

TEST(BadInput, DeviceThatDoesNotExist) {
  const NoLeaks guard;
  const std::string bdf = "0000:00:1e.7";
  ASSERT_FALSE(std::filesystem::exists("/sys/bus/pci/devices/" + bdf)) << "the rig grew a device";
  EXPECT_FAILS_WITH(Device::open(bdf, options()), ENODEV,
                    {bdf, "no such PCI function", "lspci -D"});
}

TEST(BadInput, DeviceInADomainThatDoesNotExist) {
  const NoLeaks guard;
  EXPECT_FAILS_WITH(Device::open("0001:00:02.0", options()), ENODEV,
                    {"0001:00:02.0", "no such PCI function"});
}

TEST(BadInput, DeviceBoundToAnotherDriver) {
  std::optional<Bdf> other;
  std::string driver;
  for (const Bdf& b : all_functions()) {
    if (auto d = vfio::bound_driver(b); d && *d != "vfio-pci") {
      other = b;
      driver = *d;
      break;
    }
  }
  if (!other) {
    GTEST_SKIP() << "no PCI function in this guest is bound to a driver other than vfio-pci";
  }
  const NoLeaks guard;
  const std::string bdf = other->to_string();
  EXPECT_FAILS_WITH(Device::open(bdf, options()), ENODEV,
                    {bdf + " is bound to " + driver + ", not vfio-pci", "devbind.sh bind " + bdf});
}

TEST(BadInput, DeviceBoundToNoDriver) {
  std::optional<Bdf> unbound;
  for (const Bdf& b : all_functions()) {
    if (!vfio::bound_driver(b)) {
      unbound = b;
      break;
    }
  }
  if (!unbound) {
    GTEST_SKIP() << "every PCI function in this guest has a driver";
  }
  const NoLeaks guard;
  const std::string bdf = unbound->to_string();
  EXPECT_FAILS_WITH(Device::open(bdf, options()), ENODEV,
                    {bdf + " is bound to no driver, not vfio-pci", "devbind.sh bind"});
}

TEST(BadInput, NonViableGroup) {
  if (mode() == IommuMode::noiommu) {
    GTEST_SKIP() << "no-IOMMU groups hold one function each: none can be non-viable";
  }
  // A group with a vfio-pci function and a member bound to a driver VFIO does not tolerate.
  std::optional<Bdf> victim;
  for (const Bdf& b : vfio::vfio_pci_devices()) {
    for (const Bdf& member : vfio::iommu_group_devices(vfio::iommu_group(b).value_or("none"))) {
      const auto d = vfio::bound_driver(member);
      if (d && *d != "vfio-pci" && *d != "pcieport") {
        victim = b;
      }
    }
  }
  if (!victim) {
    GTEST_SKIP() << "every IOMMU group with a vfio-pci function is viable here (the rig's "
                    "devices each sit in a group of their own)";
  }
  const NoLeaks guard;
  EXPECT_FAILS_WITH(Device::open(victim->to_string(), options()), EBUSY, {"is not viable", "bound to"});
}

// A child process holds the NVMe open; this one must be refused with EBUSY naming the child.
// The child's device keeps working, and once it is gone the device opens here.
TEST(BadInput, SecondProcessOpensTheSameDevice) {
  const NoLeaks guard;
  int ready[2];
  int go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // holds the device until told; reports whether it still answers
    ::close(ready[0]);
    ::close(go[1]);
    auto dev = Device::open(nvme0().to_string(), options());
    auto bar = dev ? mmio::Bar::open(*dev, VFIO_PCI_BAR0_REGION_INDEX) : Result<mmio::Bar>(Error{});
    char c = bar ? 'R' : 'E';
    static_cast<void>(::write(ready[1], &c, 1));
    if (!bar) {
      ::_exit(1);
    }
    while (::read(go[0], &c, 1) == 1) {
      c = bar->read32(0x08) >> 16 == 1 ? 'V' : 'X';
      static_cast<void>(::write(ready[1], &c, 1));
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(go[0]);
  // Whatever fails below, the child lets go of the device before the next test runs.
  bool reaped = false;
  auto reap = ScopeGuard([&]() noexcept {
    if (go[1] >= 0) {
      ::close(go[1]);
    }
    if (!reaped) {
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
    }
    ::close(ready[0]);
  });
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'R') << "the child could not open " << nvme0().to_string();
  std::string comm;
  std::getline(std::ifstream("/proc/self/comm"), comm);
  EXPECT_FAILS_WITH(Device::open(nvme0().to_string(), options()), EBUSY,
                    {"is held by process " + std::to_string(child) + " (" + comm + ")", "close it there"});
  c = '?';
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_EQ(c, 'V') << "the holder's device stopped answering";
  ::close(go[1]);
  go[1] = -1;
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  reaped = true;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto dev = Device::open(nvme0().to_string(), options());
  ASSERT_TRUE(dev) << dev.error().message();
  expect_nvme_answers(*dev);
}

// Two backends of one process: the second is refused, naming this process as the holder.
TEST(BadInput, SameDeviceThroughTwoBackendsOfOneProcess) {
  const NoLeaks guard;
  auto first = Device::open(nvme0().to_string(), options());
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_FAILS_WITH(Device::open(nvme0().to_string(), options()), EBUSY,
                    {"is held by this process (pid " + std::to_string(::getpid()) + ")"});
  expect_nvme_answers(*first);
}

TEST(BadInput, SameDeviceTwiceInOneBackend) {
  const NoLeaks guard;
  auto first = Device::open(nvme0().to_string(), options());
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_FAILS_WITH(Device::open(nvme0(), first->shared_backend()), EBUSY,
                    {nvme0().to_string(), "already open in this process", "share that Device"});
  expect_nvme_answers(*first);
}

TEST(BadInput, OpenWithoutABackend) {
  const NoLeaks guard;
  EXPECT_FAILS_WITH(Device::open(nvme0(), nullptr), EINVAL, {"no IOMMU backend given"});
}

// A mode this device or kernel does not offer: no-IOMMU for a device behind the IOMMU (off in
// these kernels unless booted for it), type1 for a device in a no-IOMMU group.
TEST(BadInput, IommuModeTheDeviceIsNotIn) {
  const NoLeaks guard;
  const bool noiommu = mode() == IommuMode::noiommu;
  const auto r = Device::open(nvme0().to_string(), {.mode = noiommu ? IommuMode::type1 : IommuMode::noiommu, .sys = nullptr});
  if (noiommu) {
    EXPECT_FAILS_WITH(r, EPERM, {"has only a no-IOMMU group", "choose noiommu mode explicitly"});
  } else {
    EXPECT_FAILS_WITH(r, ENOTSUP, {"no-IOMMU mode is off", "enable_unsafe_noiommu_mode=1"});
  }
}

TEST(BadInput, RegionIndexBeyondTheDevice) {
  const NoLeaks guard;
  auto dev = Device::open(nvme0().to_string(), options());
  ASSERT_TRUE(dev) << dev.error().message();
  const std::uint32_t n = dev->num_regions();
  EXPECT_FAILS_WITH(dev->region_info(n + 3), EINVAL,
                    {nvme0().to_string() + " has " + std::to_string(n) + " regions"});
  expect_nvme_answers(*dev);
}

TEST(BadInput, IrqIndexBeyondTheDevice) {
  const NoLeaks guard;
  auto dev = Device::open(nvme0().to_string(), options());
  ASSERT_TRUE(dev) << dev.error().message();
  EXPECT_FAILS_WITH(dev->irq_info(dev->num_irqs() + 3), EINVAL,
                    {nvme0().to_string() + " irq index " + std::to_string(dev->num_irqs() + 3)});
  EXPECT_TRUE(dev->irq_info(VFIO_PCI_MSIX_IRQ_INDEX));
  expect_nvme_answers(*dev);
}

TEST(BadInput, HotResetWithoutAResettableBus) {
  const NoLeaks guard;
  auto dev = Device::open(nvme0().to_string(), options());
  ASSERT_TRUE(dev) << dev.error().message();
  EXPECT_FAILS_WITH(dev->hot_reset(), ENOTSUP, {nvme0().to_string(), "has no bus the kernel can reset"});
  expect_nvme_answers(*dev);
}

}  // namespace
}  // namespace vfe::vmtest
