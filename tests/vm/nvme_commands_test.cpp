// The NVMe driver's commands beyond read and write, against QEMU's controller through the real
// kernel's VFIO: Compare, passthrough of commands the driver has no opcode for (Verify, a read
// composed by hand, an opcode the controller does not know), and the typed admin calls: Identify
// of any CNS, the error, health and firmware slot logs, Get/Set Features.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

constexpr std::uint64_t kAt = kScratchBegin + 4 * kMiB;  // this file's part of the scratch band
constexpr std::uint8_t kVerify = 0x0c;                   // NVM Command Set §3.2.5 (NVMe 1.4 §6.16)

struct Queue {
  std::unique_ptr<nvme::Controller> c;
  std::unique_ptr<engine::Worker> w;
  std::unique_ptr<nvme::IoQueue> q;
};

// Controller 0 with one polled queue, and `bytes` of the pattern written at kAt.
void open_with_pattern(Queue& s, std::optional<dma::DmaBuffer>& buf, std::uint64_t bytes) {
  VFE_ASSERT_OK_AND_ASSIGN(s.c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(s.w, start_worker(engine::WorkerMode::polling));
  VFE_ASSERT_OK_AND_ASSIGN(s.q, s.c->create_io_queue(*s.w, {}));
  VFE_ASSERT_OK_AND_ASSIGN(auto b, dma::DmaBuffer::allocate(s.c->dma_space(), bytes));
  buf.emplace(std::move(b));
  fill_pattern(buf->data(), 0, kAt, bytes);
  const nvme::DataSegment whole{buf->iova(), bytes};
  WaitableRequest wr(s.w.get(), IoOpcode::write, kAt / kBlock, bytes / kBlock, {&whole, 1});
  ASSERT_EQ(run_io(*s.q, wr), 0) << nvme::to_string(wr.status);
}

// Compare (NVMe 1.4 §6.3): equal data succeeds, over more than one command's worth (1 MiB, MDTS
// 512 KiB: the driver splits it); one changed byte fails with Compare Failure and -EILSEQ.
TEST(NvmeCommandsVm, CompareSucceedsOnEqualDataAndFailsOnOneChangedByte) {
  constexpr std::uint64_t kLen = 1 * kMiB;
  Queue s;
  std::optional<dma::DmaBuffer> buf;
  ASSERT_NO_FATAL_FAILURE(open_with_pattern(s, buf, kLen));
  ASSERT_TRUE(s.c->identity().supports_compare()) << "QEMU's controller has Compare (ONCS bit 0)";
  ASSERT_LT(s.c->max_transfer_bytes(), kLen) << "the compare must take more than one command";
  const nvme::DataSegment whole{buf->iova(), kLen};
  WaitableRequest same(s.w.get(), IoOpcode::compare, kAt / kBlock, kLen / kBlock, {&whole, 1});
  EXPECT_EQ(run_io(*s.q, same), 0) << nvme::to_string(same.status);
  const std::uint64_t commands = s.q->stats().commands.load();

  buf->as<std::uint8_t>()[kLen - 700] ^= 0x40;  // in the last command's blocks
  WaitableRequest other(s.w.get(), IoOpcode::compare, kAt / kBlock, kLen / kBlock, {&whole, 1});
  EXPECT_EQ(run_io(*s.q, other), -EILSEQ);
  EXPECT_TRUE(other.status.is(nvme::sct::kMediaError, nvme::sc::kCompareFailure)) << nvme::to_string(other.status);
  EXPECT_EQ(s.q->stats().retries.load(), 0U)
      << "a compare failure is final though QEMU sets no DNR: " << nvme::to_string(other.status);
  EXPECT_GE(s.q->stats().commands.load() - commands, 2U);
}

// A Verify (opcode 0Ch) passed through: the controller reads the blocks and checks them; out of
// the namespace it fails with LBA Out of Range. A read composed by hand over 3 pages (a PRP
// list) brings the pattern back, and an opcode the controller does not know fails as such.
TEST(NvmeCommandsVm, PassthroughOfCommandsTheDriverHasNoOpcodeFor) {
  constexpr std::uint64_t kLen = 12 * 1024;
  Queue s;
  std::optional<dma::DmaBuffer> buf;
  ASSERT_NO_FATAL_FAILURE(open_with_pattern(s, buf, kLen));
  const nvme::NamespaceInfo* ns = s.c->find_namespace(1);
  ASSERT_NE(ns, nullptr);
  nvme::PassthroughCommand verify{.opcode = kVerify};
  verify.cdw10 = static_cast<std::uint32_t>(kAt / kBlock);
  verify.cdw12 = kLen / kBlock - 1;  // NLB, 0's based
  WaitableRequest v(s.w.get());
  v.passthrough = &verify;
  EXPECT_EQ(run_io(*s.q, v), 0) << nvme::to_string(v.status);

  verify.cdw10 = static_cast<std::uint32_t>(ns->size_blocks);  // past the end
  WaitableRequest beyond(s.w.get());
  beyond.passthrough = &verify;
  EXPECT_EQ(run_io(*s.q, beyond), -ERANGE) << nvme::to_string(beyond.status);

  std::memset(buf->data(), 0, kLen);
  nvme::PassthroughCommand read{.opcode = static_cast<std::uint8_t>(IoOpcode::read)};
  read.cdw10 = static_cast<std::uint32_t>(kAt / kBlock);
  read.cdw12 = kLen / kBlock - 1;
  const nvme::DataSegment whole{buf->iova(), kLen};
  WaitableRequest rd(s.w.get());
  rd.passthrough = &read;
  rd.data = {&whole, 1};
  ASSERT_EQ(run_io(*s.q, rd), 0) << nvme::to_string(rd.status);
  EXPECT_EQ(first_mismatch(buf->data(), 0, kAt, kLen), ~0ULL);

  nvme::PassthroughCommand unknown{.opcode = 0xfc};  // vendor specific, none in QEMU
  WaitableRequest u(s.w.get());
  u.passthrough = &unknown;
  EXPECT_EQ(run_io(*s.q, u), -EINVAL);
  EXPECT_TRUE(u.status.is(nvme::sct::kGeneric, nvme::sc::kInvalidOpcode)) << nvme::to_string(u.status);
}

// Passthrough requests the driver cannot send as one command are refused at submit.
TEST(NvmeCommandsVm, PassthroughThatCannotBeSentIsRefused) {
  Queue s;
  std::optional<dma::DmaBuffer> buf;
  ASSERT_NO_FATAL_FAILURE(open_with_pattern(s, buf, 4096));
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer big,
                           dma::DmaBuffer::allocate(s.c->dma_space(), 2 * s.c->max_transfer_bytes()));
  nvme::PassthroughCommand flush{.opcode = 0x00};
  const nvme::DataSegment page{buf->iova(), 4096};
  WaitableRequest bad(s.w.get());
  bad.passthrough = &flush;
  bad.data = {&page, 1};
  EXPECT_EQ(s.q->submit(bad), -EINVAL) << "opcode bits 1:0 say the command moves no data";
  nvme::PassthroughCommand read{.opcode = 0x02};
  read.cdw12 = 4096 / kBlock - 1;
  bad.passthrough = &read;
  bad.blocks = 8;
  EXPECT_EQ(s.q->submit(bad), -EINVAL) << "blocks belong in the command's dwords";
  bad.blocks = 0;
  bad.data = {};
  EXPECT_EQ(s.q->submit(bad), -EINVAL) << "a read moves data, and none is given";
  read.cdw12 = 2 * 4096 / kBlock - 1;
  bad.data = {&page, 1};
  EXPECT_EQ(s.q->submit(bad), -EINVAL) << "NLB says 8 KiB and the buffer is 4 KiB: the controller would DMA past it";
  nvme::PassthroughCommand vendor{.opcode = 0x82};  // vendor specific, from the controller
  bad.passthrough = &vendor;
  const nvme::DataSegment too_much{big.iova(), s.c->max_transfer_bytes() + 4096};
  bad.data = {&too_much, 1};
  EXPECT_EQ(s.q->submit(bad), -EINVAL) << "more than one command carries";
  EXPECT_EQ(bad.completions.load(), 0);
}

}  // namespace
}  // namespace vfe::vmtest
