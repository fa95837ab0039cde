// The bad-input matrix, part 3: interrupts and the drivers. MSI-X vectors beyond the table or
// the enabled set, NVMe queue depths the controller does not allow, I/O past the namespace end
// and I/O that cannot be described, and drivers pointed at the wrong device or given bad ring
// sizes. Each checks the error, that the device still works afterwards, and (NoLeaks) that
// nothing leaked. See bad_input_device_test.cpp for part 1.
#include <gtest/gtest.h>
#include <linux/vfio.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "drivers/e1000e/nic.hpp"
#include "irq/irq_set.hpp"
#include "mmio/region.hpp"
#include "tests/vm/bad_input_support.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"
#include "vfio/device.hpp"

namespace vfe::vmtest {
namespace {

using namespace std::chrono_literals;
using nvme::IoOpcode;

// MSI-X still works on `dev`: two vectors enabled, one fired in software, delivered.
void expect_msix_works(const vfio::Device& dev) {
  auto irqs = irq::IrqSet::enable(dev, irq::IrqIndex::msix, 2);
  ASSERT_TRUE(irqs) << irqs.error().message();
  ASSERT_TRUE(irqs->trigger(1));
  EXPECT_TRUE(irqs->wait(1, 2000ms)) << "vector 1 did not arrive";
}

TEST(BadInput, MsixVectorsBeyondTheTable) {
  const NoLeaks guard;
  VFE_ASSERT_OK_AND_ASSIGN(const vfio::Device dev, open_device("nvme"));
  const auto info = dev.irq_info(VFIO_PCI_MSIX_IRQ_INDEX);
  ASSERT_TRUE(info && info->count > 0);
  EXPECT_FAILS_WITH(irq::IrqSet::enable(dev, irq::IrqIndex::msix, info->count + 1), EINVAL,
                    {dev.bdf().to_string() + " has " + std::to_string(info->count) + " MSI-X vectors",
                     std::to_string(info->count + 1) + " asked for"});
  expect_msix_works(dev);
}

TEST(BadInput, MsixTriggerBeyondTheEnabledVectors) {
  const NoLeaks guard;
  VFE_ASSERT_OK_AND_ASSIGN(const vfio::Device dev, open_device("nvme"));
  auto irqs = irq::IrqSet::enable(dev, irq::IrqIndex::msix, 4);
  ASSERT_TRUE(irqs) << irqs.error().message();
  EXPECT_FAILS_WITH(irqs->trigger(4), EINVAL, {"MSI-X vector 4 is beyond the 4 enabled"});
  EXPECT_FAILS_WITH(irqs->set_attached(9, false), EINVAL, {"MSI-X vector 9 is beyond the 4 enabled"});
  ASSERT_TRUE(irqs->trigger(3));
  EXPECT_TRUE(irqs->wait(3, 2000ms)) << "the enabled vectors stopped working";
}

TEST(BadInput, MsixOnADeviceWithoutMsix) {
  const NoLeaks guard;
  VFE_ASSERT_OK_AND_ASSIGN(const vfio::Device dev, open_device("edu"));
  EXPECT_FAILS_WITH(irq::IrqSet::enable(dev, irq::IrqIndex::msix, 1), ENOTSUP,
                    {dev.bdf().to_string() + " has no MSI-X interrupts"});
  EXPECT_TRUE(irq::IrqSet::enable(dev, irq::IrqIndex::msi, 1)) << "edu's MSI";
}

// An NVMe controller with two polled I/O queues allowed, a worker, and a buffer; each part may
// be made separately. Members in teardown order: the queue first, then the buffer, the worker
// and the controller.
struct NvmeCase {
  std::unique_ptr<nvme::Controller> ctrl;
  std::unique_ptr<engine::Worker> worker;
  std::optional<dma::DmaBuffer> buf;
  std::unique_ptr<nvme::IoQueue> queue;

  static Result<std::unique_ptr<NvmeCase>> open(std::uint32_t io_queues = 2) {
    auto c = std::make_unique<NvmeCase>();
    nvme::ControllerOptions opts;
    opts.io_queues = io_queues;
    VFE_TRY_ASSIGN(c->ctrl, open_nvme(0, opts));
    VFE_TRY_ASSIGN(c->worker, start_worker(engine::WorkerMode::polling));
    VFE_TRY_ASSIGN(auto b, dma::DmaBuffer::allocate(c->ctrl->dma_space(), 16384));
    c->buf.emplace(std::move(b));
    return c;
  }
  Result<std::unique_ptr<nvme::IoQueue>> make_queue(std::uint32_t entries = 32) {
    return ctrl->create_io_queue(*worker, {.entries = entries});
  }
  // A 16 KiB write to the end of the scratch band and its read back: the controller serves I/O.
  void expect_io_works() {
    if (!queue) {
      auto q = make_queue();
      ASSERT_TRUE(q) << q.error().message();
      queue = std::move(q).value();
    }
    const std::uint64_t at = kScratchEnd - 16384;
    fill_pattern(buf->data(), 0, at, 16384);
    const nvme::DataSegment seg{buf->iova(), 16384};
    WaitableRequest wr(worker.get(), IoOpcode::write, at / kBlock, 32, {&seg, 1});
    ASSERT_EQ(run_io(*queue, wr), 0) << nvme::to_string(wr.status);
    std::memset(buf->data(), 0, 16384);
    WaitableRequest rd(worker.get(), IoOpcode::read, at / kBlock, 32, {&seg, 1});
    ASSERT_EQ(run_io(*queue, rd), 0) << nvme::to_string(rd.status);
    EXPECT_EQ(first_mismatch(buf->data(), 0, at, 16384), ~0ULL);
    EXPECT_EQ(ctrl->state(), nvme::ControllerState::running);
  }
};

// The first controller and worker of the process start threads whose stacks and malloc arenas
// glibc keeps for reuse: make them exist before the first snapshot.
void warm_up_nvme() {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, NvmeCase::open());
  c->expect_io_works();
}

#define NVME_CASE(c, ...)                    \
  const NoLeaks guard("nvme", warm_up_nvme); \
  VFE_ASSERT_OK_AND_ASSIGN(auto c, NvmeCase::open(__VA_ARGS__))

TEST(BadInput, NvmeQueueDepthBeyondWhatTheControllerAllows) {
  NVME_CASE(c);
  const std::uint32_t max = std::min<std::uint32_t>(c->ctrl->cap().mqes(), 65536);
  EXPECT_FAILS_WITH(c->make_queue(max + 1), EINVAL,
                    {std::to_string(max + 1) + " entries", "2 to " + std::to_string(max), "CAP.MQES"});
  c->expect_io_works();
}

TEST(BadInput, NvmeQueueDepthOfOne) {
  NVME_CASE(c);
  EXPECT_FAILS_WITH(c->make_queue(1), EINVAL, {"1 entries", "outside what the controller and this driver allow"});
  c->expect_io_works();
}

TEST(BadInput, NvmeMoreQueuesThanTheControllerGranted) {
  NVME_CASE(c, 1);
  ASSERT_EQ(c->ctrl->io_queue_limit(), 1U);
  auto first = c->make_queue();
  ASSERT_TRUE(first) << first.error().message();
  c->queue = std::move(first).value();
  EXPECT_FAILS_WITH(c->make_queue(), EBUSY, {"all 1 I/O queues the controller granted are in use"});
  c->expect_io_works();
}

TEST(BadInput, NvmeIoPastTheNamespaceEnd) {
  NVME_CASE(c);
  auto q = c->make_queue();
  ASSERT_TRUE(q) << q.error().message();
  c->queue = std::move(q).value();
  const std::uint64_t end = c->ctrl->namespaces().front().size_blocks;
  const nvme::DataSegment seg{c->buf->iova(), 2 * kBlock};
  WaitableRequest rd(c->worker.get(), IoOpcode::read, end - 1, 2, {&seg, 1});
  EXPECT_EQ(run_io(*c->queue, rd), -ERANGE);
  EXPECT_NE(nvme::to_string(rd.status).find("LBA Out of Range"), std::string::npos) << nvme::to_string(rd.status);
  EXPECT_EQ(rd.completions.load(), 1);
  EXPECT_EQ(c->queue->stats().errors.load(), 1U);
  c->expect_io_works();
}

TEST(BadInput, NvmeIoOfZeroBlocks) {
  NVME_CASE(c);
  auto q = c->make_queue();
  ASSERT_TRUE(q) << q.error().message();
  c->queue = std::move(q).value();
  WaitableRequest rd(c->worker.get(), IoOpcode::read, 0, 0);
  EXPECT_EQ(c->queue->submit(rd), -EINVAL);
  EXPECT_EQ(rd.completions.load(), 0) << "a refused request never completes";
  c->expect_io_works();
}

TEST(BadInput, NvmeIoOnANamespaceThatDoesNotExist) {
  NVME_CASE(c);
  auto q = c->make_queue();
  ASSERT_TRUE(q) << q.error().message();
  c->queue = std::move(q).value();
  const nvme::DataSegment seg{c->buf->iova(), kBlock};
  WaitableRequest rd(c->worker.get(), IoOpcode::read, 0, 1, {&seg, 1});
  rd.nsid = 9;
  EXPECT_EQ(c->queue->submit(rd), -EINVAL);
  EXPECT_EQ(rd.completions.load(), 0);
  c->expect_io_works();
}

TEST(BadInput, NvmeDriverOnTheEduDevice) {
  const NoLeaks guard;
  const std::string edu = devices_of("edu").at(0).to_string();
  nvme::ControllerOptions opts;
  opts.mode = mode();
  EXPECT_FAILS_WITH(nvme::Controller::create(edu, opts), EINVAL,
                    {edu + " has PCI class code", "not 010802 (NVM Express)"});
  VFE_ASSERT_OK_AND_ASSIGN(const vfio::Device dev, open_device("edu"));
  auto bar = mmio::Bar::open(dev, VFIO_PCI_BAR0_REGION_INDEX);
  ASSERT_TRUE(bar) << bar.error().message();
  EXPECT_EQ(bar->read32(0) & 0xff, 0xedU) << "edu's ID register";
}

e1000e::NicOptions nic_options() {
  e1000e::NicOptions o;
  o.mode = mode();
  o.link_timeout = 0ms;
  return o;
}

// The NIC comes up (and goes) normally after a refused create.
void expect_nic_works() {
  auto nic = e1000e::Nic::create(devices_of("e1000e").at(0).to_string(), nic_options());
  ASSERT_TRUE(nic) << nic.error().message();
  EXPECT_EQ((*nic)->mac_string().rfind("52:54:00:12:34:0", 0), 0U) << (*nic)->mac_string();
}

TEST(BadInput, NicRingSizeNotAMultipleOf8) {
  const NoLeaks guard("nic", expect_nic_works);
  auto o = nic_options();
  o.rx_entries = 100;
  EXPECT_FAILS_WITH(e1000e::Nic::create(devices_of("e1000e").at(0).to_string(), o), EINVAL,
                    {"receive ring of 100 descriptors", "multiple of 8 from 8 to"});
  expect_nic_works();
}

TEST(BadInput, NicTooFewPacketBuffersForTheReceiveRing) {
  const NoLeaks guard("nic", expect_nic_works);
  auto o = nic_options();
  o.packets = 100;
  EXPECT_FAILS_WITH(e1000e::Nic::create(devices_of("e1000e").at(0).to_string(), o), EINVAL,
                    {"100 packet buffers", "512-entry receive ring", "use at least 513"});
  expect_nic_works();
}

TEST(BadInput, NicDriverOnTheEduDevice) {
  const NoLeaks guard("nic", expect_nic_works);
  const std::string edu = devices_of("edu").at(0).to_string();
  EXPECT_FAILS_WITH(e1000e::Nic::create(edu, nic_options()), ENOTSUP,
                    {edu + " is PCI device 1234:11e8", "82574L"});
  expect_nic_works();
}

}  // namespace
}  // namespace vfe::vmtest
