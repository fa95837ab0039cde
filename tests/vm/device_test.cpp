// Device access through the library against the real kernel: BARs, config space, interrupts,
// reset, and several devices sharing one backend. Runs in every IOMMU mode.
#include <gtest/gtest.h>
#include <linux/vfio.h>

#include <chrono>
#include <thread>

#include "irq/irq_set.hpp"
#include "mmio/config_space.hpp"
#include "mmio/region.hpp"
#include "tests/unit/support/assert_ok.hpp"
#include "tests/vm/vm_env.hpp"
#include "tests/vm/vm_support.hpp"
#include "vfio/device.hpp"

namespace vfe {
namespace {
using namespace std::chrono_literals;
using vfio::Device;

// NVMe controller registers (NVMe 1.4 §3.1).
constexpr std::uint64_t kNvmeCap = 0x00;
constexpr std::uint64_t kNvmeVs = 0x08;
constexpr std::uint64_t kNvmeCc = 0x14;
// edu registers (QEMU docs/specs/edu.rst).
constexpr std::uint64_t kEduId = 0x00;
constexpr std::uint64_t kEduLiveness = 0x04;
constexpr std::uint64_t kEduFactorial = 0x08;
constexpr std::uint64_t kEduStatus = 0x20;
constexpr std::uint64_t kEduIrqStatus = 0x24;
constexpr std::uint64_t kEduIrqRaise = 0x60;
constexpr std::uint64_t kEduIrqAck = 0x64;

TEST(Nvme, Bar0CapAndVersionDecode) {
  for (const auto& bdf : vmtest::devices_of("nvme")) {
    SCOPED_TRACE(bdf.to_string());
    VFE_ASSERT_OK_AND_ASSIGN(const Device dev, vmtest::open_device(bdf));
    auto bar0 = mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX);
    ASSERT_TRUE(bar0) << bar0.error().message();
    EXPECT_TRUE(bar0->is_mapped(0, 0x1000)) << "NVMe registers should be mmap'd";
    const std::uint64_t cap = bar0->read64(kNvmeCap);
    const unsigned mqes = static_cast<unsigned>(cap & 0xffff) + 1;
    const unsigned timeout_500ms = static_cast<unsigned>((cap >> 24) & 0xff);
    const unsigned css = static_cast<unsigned>((cap >> 37) & 0xff);
    const unsigned mpsmin = static_cast<unsigned>((cap >> 48) & 0xf);
    EXPECT_GE(mqes, 2U);
    EXPECT_GT(timeout_500ms, 0U);
    EXPECT_TRUE(css & 1U) << "NVM command set";
    EXPECT_EQ(mpsmin, 0U) << "4 KiB pages";
    const std::uint32_t vs = bar0->read32(kNvmeVs);
    EXPECT_EQ(vs >> 16, 1U) << std::hex << vs;  // NVMe 1.x
  }
}

TEST(Nvme, ConfigSpaceListsMsixInBar0) {
  VFE_ASSERT_OK_AND_ASSIGN(const Device dev, vmtest::open_device("nvme"));
  auto config = mmio::ConfigSpace::open(dev);
  ASSERT_TRUE(config) << config.error().message();
  VFE_ASSERT_OK_AND_ASSIGN(const std::uint16_t vendor, config->read16(0));
  EXPECT_EQ(vendor, 0x1b36);
  auto msix = config->msix();
  ASSERT_TRUE(msix) << msix.error().message();
  ASSERT_TRUE(msix->has_value());
  EXPECT_EQ((*msix)->table_bar, 0U);
  EXPECT_GE((*msix)->table_size, 2U);
  auto irq = dev.irq_info(VFIO_PCI_MSIX_IRQ_INDEX);
  ASSERT_TRUE(irq);
  EXPECT_EQ(irq->count, (*msix)->table_size);
  auto bar0 = dev.region_info(VFIO_PCI_BAR0_REGION_INDEX);
  ASSERT_TRUE(bar0);
  EXPECT_TRUE(bar0->msix_mappable) << "the kernel reports MSIX_MAPPABLE for QEMU's NVMe";
}

TEST(Nvme, SoftwareTriggeredMsixVectorArrivesOnItsEventfdOnly) {
  VFE_ASSERT_OK_AND_ASSIGN(const Device dev, vmtest::open_device("nvme"));
  auto irqs = irq::IrqSet::enable(dev, irq::IrqIndex::msix, 4);
  ASSERT_TRUE(irqs) << irqs.error().message();
  ASSERT_TRUE(irqs->trigger(2));
  auto fired = irqs->wait(2, 2000ms);
  ASSERT_TRUE(fired) << fired.error().message();
  EXPECT_EQ(*fired, 1U);
  for (std::uint32_t v : {0U, 1U, 3U}) {
    EXPECT_FALSE(irqs->wait(v, 0ms)) << "vector " << v << " fired without cause";
  }
  EXPECT_FALSE(irqs->trigger(4)) << "vector beyond the enabled set";
}

TEST(Nvme, ResetRestoresRegistersAndLeavesTheControllerReadable) {
  VFE_ASSERT_OK_AND_ASSIGN(Device dev, vmtest::open_device("nvme"));
  ASSERT_TRUE(dev.reset_supported());
  auto bar0 = mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX);
  ASSERT_TRUE(bar0);
  const std::uint64_t cap = bar0->read64(kNvmeCap);
  const std::uint32_t vs = bar0->read32(kNvmeVs);
  // CC with queue entry sizes set but EN clear: the controller keeps it until a reset.
  bar0->write32(kNvmeCc, 0x00460000);
  ASSERT_EQ(bar0->read32(kNvmeCc), 0x00460000U);
  auto r = dev.reset();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(bar0->read32(kNvmeCc), 0U) << "the function reset clears CC";
  EXPECT_EQ(bar0->read64(kNvmeCap), cap);
  EXPECT_EQ(bar0->read32(kNvmeVs), vs);
}

TEST(Nvme, HotResetWhereTheBusAllowsIt) {
  // The NVMe behind the pxb-pcie root port sits on a bus its port can reset.
  const vfio::Bdf behind_port = vmtest::devices_of("nvme").at(1);
  ASSERT_EQ(behind_port.bus, 0x81);
  VFE_ASSERT_OK_AND_ASSIGN(Device dev, vmtest::open_device(behind_port));
  auto bar0 = mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX);
  ASSERT_TRUE(bar0);
  bar0->write32(kNvmeCc, 0x00460000);
  auto r = dev.hot_reset();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(bar0->read32(kNvmeCc), 0U) << "the bus reset clears CC";
  EXPECT_EQ(bar0->read32(kNvmeVs) >> 16, 1U);
  // A root-complex endpoint has no bus to reset: a clear refusal, not a silent success.
  VFE_ASSERT_OK_AND_ASSIGN(Device root, vmtest::open_device("nvme"));
  auto refused = root.hot_reset();
  ASSERT_FALSE(refused);
  EXPECT_FALSE(refused.error().message().empty());
}

TEST(Nvme, ReqInterruptIsOfferedAndDeliverable) {
  VFE_ASSERT_OK_AND_ASSIGN(const Device dev, vmtest::open_device("nvme"));
  auto req = irq::IrqSet::enable(dev, irq::IrqIndex::req, 1);
  ASSERT_TRUE(req) << req.error().message();
  ASSERT_TRUE(req->trigger(0));
  auto fired = req->wait(0, 2000ms);
  ASSERT_TRUE(fired) << fired.error().message();
}

TEST(Edu, LivenessAndFactorialThroughTheBar) {
  VFE_ASSERT_OK_AND_ASSIGN(const Device dev, vmtest::open_device("edu"));
  auto bar = mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX);
  ASSERT_TRUE(bar) << bar.error().message();
  EXPECT_EQ(bar->read32(kEduId) & 0xff, 0xedU);
  bar->write32(kEduLiveness, 0x12345678);
  EXPECT_EQ(bar->read32(kEduLiveness), ~0x12345678U);
  bar->write32(kEduFactorial, 10);
  for (int i = 0; i < 1000 && (bar->read32(kEduStatus) & 1) != 0; ++i) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(bar->read32(kEduFactorial), 3628800U);
}

TEST(Edu, MsiFromTheDeviceReachesTheEventfd) {
  VFE_ASSERT_OK_AND_ASSIGN(const Device dev, vmtest::open_device("edu"));
  auto config = mmio::ConfigSpace::open(dev);
  ASSERT_TRUE(config);
  ASSERT_TRUE(config->enable_bus_master());  // an MSI is a DMA write
  auto msi = config->msi();
  ASSERT_TRUE(msi && msi->has_value()) << "edu has an MSI capability";
  auto bar = mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX);
  ASSERT_TRUE(bar);
  auto irqs = irq::IrqSet::enable(dev, irq::IrqIndex::msi, 1);
  ASSERT_TRUE(irqs) << irqs.error().message();
  bar->write32(kEduIrqRaise, 0x5a);
  auto fired = irqs->wait(0, 2000ms);
  ASSERT_TRUE(fired) << fired.error().message();
  EXPECT_EQ(bar->read32(kEduIrqStatus), 0x5aU);
  bar->write32(kEduIrqAck, 0x5a);
  EXPECT_EQ(bar->read32(kEduIrqStatus), 0U);
}

TEST(Devices, AllOpenAtOnceInOneBackend) {
  auto backend = vfio::make_backend(vmtest::mode());
  ASSERT_TRUE(backend) << backend.error().message();
  std::vector<Device> open;
  for (const auto& d : vmtest::devices()) {
    auto dev = Device::open(d.bdf, *backend);
    ASSERT_TRUE(dev) << d.kind << " " << d.bdf.to_string() << ": " << dev.error().message();
    open.push_back(std::move(dev).value());
  }
  EXPECT_EQ(open.size(), 5U);
  // Opening one again while it is open is refused, with a reason; once closed, it opens again.
  const vfio::Bdf last = open.back().bdf();
  auto again = Device::open(last, *backend);
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().is(EBUSY)) << again.error().message();
  open.pop_back();
  EXPECT_TRUE(Device::open(last, *backend));
}

}  // namespace
}  // namespace vfe
