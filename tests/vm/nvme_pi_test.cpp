// Namespaces formatted with metadata and end-to-end protection (NVM Command Set §5.2), against
// QEMU's controller through the real kernel's VFIO: extended LBAs (type 1), a separate metadata
// buffer split over commands (type 2), protection information first in larger metadata (type 3);
// PRACT generating and stripping, PRCHK checking, and an injected tag error of each kind coming back
// as its status and -EILSEQ. The tuples QEMU makes are checked against drivers/nvme/pi.hpp's.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "drivers/nvme/pi.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;
namespace pi = nvme::pi;

struct Rig {
  std::unique_ptr<nvme::Controller> c;
  std::unique_ptr<engine::Worker> w;
  std::unique_ptr<nvme::IoQueue> q;
  const nvme::NamespaceInfo* ns = nullptr;
};

// The rig's format of each namespace (tests/vm/run.sh), as the driver found it.
struct Format {
  std::uint8_t pi_type;
  std::uint16_t ms;
  bool extended;
  bool first;
};

void open_rig(Rig& r, std::uint32_t nsid, const Format& f) {
  VFE_ASSERT_OK_AND_ASSIGN(r.c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(r.w, start_worker(engine::WorkerMode::polling));
  VFE_ASSERT_OK_AND_ASSIGN(r.q, r.c->create_io_queue(*r.w, {}));
  r.ns = r.c->find_namespace(nsid);
  ASSERT_NE(r.ns, nullptr) << "tests/vm/run.sh gives controller 0 namespace " << nsid;
  ASSERT_EQ(r.ns->block_size, kBlock);
  ASSERT_EQ(r.ns->pi_type, f.pi_type);
  ASSERT_EQ(r.ns->metadata_bytes, f.ms);
  ASSERT_EQ(r.ns->extended_lba, f.extended);
  ASSERT_EQ(r.ns->pi_first, f.first);
}

// A request for namespace `nsid` whose data is `data` (which must outlive it).
struct NsRequest : WaitableRequest {
  NsRequest(Rig& r, IoOpcode op, std::uint32_t ns_id, std::uint64_t first, std::uint64_t count,
            const nvme::DataSegment& d)
      : WaitableRequest(r.w.get(), op, first, count, {&d, 1}) {
    nsid = ns_id;
  }
};

std::span<const std::uint8_t> bytes_of(const dma::DmaBuffer& b, std::uint64_t at, std::uint64_t len) {
  return {b.as<const std::uint8_t>() + at, len};
}

// Blocks [lba, lba + blocks) of namespace 5 written with PRACT from `buf`, which gets the pattern
// (512 bytes a block), with LBAT `app`: the controller makes the tuples.
void write_type1_with_pract(Rig& r, dma::DmaBuffer& buf, std::uint64_t lba, std::uint64_t blocks, std::uint16_t app) {
  fill_pattern(buf.data(), 5, lba * kBlock, blocks * kBlock);
  const nvme::DataSegment plain{buf.iova(), blocks * kBlock};
  NsRequest wr(r, IoOpcode::write, kPiType1Nsid, lba, blocks, plain);
  wr.protection = {.pract = true, .check = 0, .ref_tag = 0, .app_tag = app, .app_mask = 0};
  ASSERT_EQ(run_io(*r.q, wr), 0) << nvme::to_string(wr.status);
}

// Type 1, 8 bytes inline after each block. A write with PRACT sends the blocks alone; the
// controller adds tuples equal to pi::block_tuple's (guard over the block, LBAT, the LBA). A read
// with PRACT and every check strips them again; a wrong application tag fails with 0283h and
// -EILSEQ, once (not retried); a block whose guard the host spoiled is refused on write (0282h).
TEST(NvmePiVm, Type1ExtendedLbasPractGeneratesChecksAndStrips) {
  Rig r;
  ASSERT_NO_FATAL_FAILURE(open_rig(r, kPiType1Nsid, {.pi_type = 1, .ms = 8, .extended = true, .first = false}));
  constexpr std::uint64_t kLba = 16, kBlocks = 8, kExt = kBlock + 8;
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer buf, dma::DmaBuffer::allocate(r.c->dma_space(), kBlocks * kExt));
  ASSERT_NO_FATAL_FAILURE(write_type1_with_pract(r, buf, kLba, kBlocks, 0x1234));
  const nvme::DataSegment plain{buf.iova(), kBlocks * kBlock};

  // The blocks with their tuples, as stored.
  std::memset(buf.data(), 0, kBlocks * kExt);
  const nvme::DataSegment ext{buf.iova(), kBlocks * kExt};
  NsRequest raw(r, IoOpcode::read, kPiType1Nsid, kLba, kBlocks, ext);
  ASSERT_EQ(run_io(*r.q, raw), 0) << nvme::to_string(raw.status);
  std::vector<std::uint8_t> want(kBlocks * kBlock);
  fill_pattern(want.data(), 5, kLba * kBlock, want.size());
  for (std::uint64_t i = 0; i < kBlocks; ++i) {
    const auto block = bytes_of(buf, i * kExt, kBlock);
    ASSERT_EQ(std::memcmp(block.data(), want.data() + i * kBlock, kBlock), 0) << "block " << i;
    const auto tuple = bytes_of(buf, i * kExt + kBlock, pi::kTupleBytes).first<pi::kTupleBytes>();
    EXPECT_EQ(pi::decode(tuple), pi::block_tuple(block, {}, 0x1234, static_cast<std::uint32_t>(kLba + i)))
        << "block " << i << ": QEMU's tuple is the one pi.hpp computes";
  }

  // Read with every check, stripped: the blocks alone.
  std::memset(buf.data(), 0, kBlocks * kExt);
  NsRequest checked(r, IoOpcode::read, kPiType1Nsid, kLba, kBlocks, plain);
  checked.protection = {.pract = true, .check = pi::kCheckAll, .ref_tag = 0, .app_tag = 0x1234, .app_mask = 0xffff};
  ASSERT_EQ(run_io(*r.q, checked), 0) << nvme::to_string(checked.status);
  EXPECT_EQ(std::memcmp(buf.data(), want.data(), want.size()), 0);

  // The injected error: a wrong application tag.
  const std::uint64_t before = r.q->stats().commands.load();
  NsRequest wrong(r, IoOpcode::read, kPiType1Nsid, kLba, kBlocks, plain);
  wrong.protection = {.pract = true, .check = pi::kCheckApp, .ref_tag = 0, .app_tag = 0x4321, .app_mask = 0xffff};
  EXPECT_EQ(run_io(*r.q, wrong), -EILSEQ);
  EXPECT_TRUE(wrong.status.is(nvme::sct::kMediaError, nvme::sc::kAppTagCheck)) << nvme::to_string(wrong.status);
  EXPECT_EQ(r.q->stats().commands.load() - before, 1U) << "a tag that differs is an answer: not retried";
  // Masked out, the bits that differ pass.
  NsRequest masked(r, IoOpcode::read, kPiType1Nsid, kLba, kBlocks, plain);
  masked.protection = {.pract = true, .check = pi::kCheckApp, .ref_tag = 0, .app_tag = 0x5534, .app_mask = 0x00ff};
  EXPECT_EQ(run_io(*r.q, masked), 0) << nvme::to_string(masked.status);

  // The host's own tuples, one with a spoiled guard, checked by the controller on write.
  for (std::uint64_t i = 0; i < kBlocks; ++i) {
    std::memcpy(buf.as<std::uint8_t>() + i * kExt, want.data() + i * kBlock, kBlock);
    const auto t = pi::encode(pi::block_tuple(bytes_of(buf, i * kExt, kBlock), {}, 7, static_cast<std::uint32_t>(kLba + i)));
    std::memcpy(buf.as<std::uint8_t>() + i * kExt + kBlock, t.data(), t.size());
  }
  NsRequest good(r, IoOpcode::write, kPiType1Nsid, kLba, kBlocks, ext);
  good.protection = {.pract = false, .check = pi::kCheckAll, .ref_tag = 0, .app_tag = 7, .app_mask = 0xffff};
  EXPECT_EQ(run_io(*r.q, good), 0) << nvme::to_string(good.status);
  buf.as<std::uint8_t>()[3 * kExt + kBlock] ^= 0x01;  // block 3's guard
  NsRequest spoiled(r, IoOpcode::write, kPiType1Nsid, kLba, kBlocks, ext);
  spoiled.protection = good.protection;
  EXPECT_EQ(run_io(*r.q, spoiled), -EILSEQ);
  EXPECT_TRUE(spoiled.status.is(nvme::sct::kMediaError, nvme::sc::kGuardCheck)) << nvme::to_string(spoiled.status);

  // Refused at submit: the blocks alone without PRACT (the format wants 520 bytes a block), a
  // separate metadata buffer on an extended format, PRACT on a namespace without protection.
  NsRequest short_data(r, IoOpcode::read, kPiType1Nsid, kLba, kBlocks, plain);
  EXPECT_EQ(r.q->submit(short_data), -EINVAL);
  NsRequest extra(r, IoOpcode::read, kPiType1Nsid, kLba, kBlocks, ext);
  extra.metadata = {buf.iova(), kBlocks * 8};
  EXPECT_EQ(r.q->submit(extra), -EINVAL);
  NsRequest no_pi(r, IoOpcode::read, 1, kScratchBegin / kBlock, kBlocks, plain);
  no_pi.protection.pract = true;
  EXPECT_EQ(r.q->submit(no_pi), -EINVAL);
  no_pi.protection.pract = false;
  no_pi.metadata = {buf.iova(), kBlocks * 8};
  EXPECT_EQ(r.q->submit(no_pi), -EINVAL) << "metadata for a namespace that has none";
}

// Type 2, 8 bytes in a separate buffer: 1 MiB of blocks (two commands at MDTS 512 KiB) with the
// host's tuples, reference tags counting up from 1000h, checked by the controller on write and on
// read; the driver points each command at its part of the metadata (MPTR) and its first tag.
TEST(NvmePiVm, Type2SeparateMetadataOverTwoCommands) {
  Rig r;
  ASSERT_NO_FATAL_FAILURE(open_rig(r, kPiType2Nsid, {.pi_type = 2, .ms = 8, .extended = false, .first = false}));
  constexpr std::uint64_t kBlocks = 2048, kLba = 100;
  constexpr std::uint32_t kRef = 0x1000;
  ASSERT_LT(r.c->max_transfer_bytes(), kBlocks * kBlock) << "the request must take more than one command";
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer data, dma::DmaBuffer::allocate(r.c->dma_space(), kBlocks * kBlock));
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer meta, dma::DmaBuffer::allocate(r.c->dma_space(), kBlocks * 8));
  fill_pattern(data.data(), 6, kLba * kBlock, kBlocks * kBlock);
  for (std::uint64_t i = 0; i < kBlocks; ++i) {
    const auto t = pi::encode(pi::block_tuple(bytes_of(data, i * kBlock, kBlock), {}, 0x00aa, kRef + static_cast<std::uint32_t>(i)));
    std::memcpy(meta.as<std::uint8_t>() + i * 8, t.data(), t.size());
  }
  const std::vector<std::uint8_t> written(meta.as<std::uint8_t>(), meta.as<std::uint8_t>() + kBlocks * 8);
  const nvme::DataSegment whole{data.iova(), kBlocks * kBlock};
  const nvme::IoRequest::Protection all{.pract = false, .check = pi::kCheckAll, .ref_tag = kRef, .app_tag = 0x00aa, .app_mask = 0xffff};
  const std::uint64_t before = r.q->stats().commands.load();
  NsRequest wr(r, IoOpcode::write, kPiType2Nsid, kLba, kBlocks, whole);
  wr.metadata = {meta.iova(), kBlocks * 8};
  wr.protection = all;
  ASSERT_EQ(run_io(*r.q, wr), 0) << nvme::to_string(wr.status);
  EXPECT_EQ(r.q->stats().commands.load() - before, 2U);

  std::memset(data.data(), 0, kBlocks * kBlock);
  std::memset(meta.data(), 0, kBlocks * 8);
  NsRequest rd(r, IoOpcode::read, kPiType2Nsid, kLba, kBlocks, whole);
  rd.metadata = wr.metadata;
  rd.protection = all;
  ASSERT_EQ(run_io(*r.q, rd), 0) << nvme::to_string(rd.status);
  EXPECT_EQ(first_mismatch(data.data(), 6, kLba * kBlock, kBlocks * kBlock), ~0ULL);
  EXPECT_EQ(std::memcmp(meta.data(), written.data(), written.size()), 0) << "the metadata read back";

  // The injected error: reference tags from another start.
  NsRequest wrong(r, IoOpcode::read, kPiType2Nsid, kLba, kBlocks, whole);
  wrong.metadata = wr.metadata;
  wrong.protection = all;
  wrong.protection.ref_tag = kRef + 1;
  EXPECT_EQ(run_io(*r.q, wrong), -EILSEQ);
  EXPECT_TRUE(wrong.status.is(nvme::sct::kMediaError, nvme::sc::kRefTagCheck)) << nvme::to_string(wrong.status);

  // Refused at submit: no metadata, too little, not dword aligned.
  NsRequest bad(r, IoOpcode::read, kPiType2Nsid, kLba, kBlocks, whole);
  EXPECT_EQ(r.q->submit(bad), -EINVAL);
  bad.metadata = {meta.iova(), kBlocks * 8 - 8};
  EXPECT_EQ(r.q->submit(bad), -EINVAL);
  bad.metadata = {meta.iova_at(2), kBlocks * 8};
  EXPECT_EQ(r.q->submit(bad), -EINVAL);

  // Passthrough: a read composed by hand (opcode 02h) of the first 8 blocks with their metadata;
  // without it, refused (the controller would take MPTR 0 for an address).
  std::memset(meta.data(), 0, 64);
  nvme::PassthroughCommand pt{.opcode = 0x02, .cdw10 = kLba, .cdw12 = 7};
  const nvme::DataSegment first8{data.iova(), 8 * kBlock};
  NsRequest by_hand(r, IoOpcode::read, kPiType2Nsid, 0, 0, first8);
  by_hand.passthrough = &pt;
  by_hand.metadata = {meta.iova(), 64};
  ASSERT_EQ(run_io(*r.q, by_hand), 0) << nvme::to_string(by_hand.status);
  EXPECT_EQ(std::memcmp(meta.data(), written.data(), 64), 0) << "the metadata of a passthrough read";
  NsRequest bare(r, IoOpcode::read, kPiType2Nsid, 0, 0, first8);
  bare.passthrough = &pt;
  EXPECT_EQ(r.q->submit(bare), -EINVAL);
  // Data only SGLs describe, with a separate buffer: QEMU does not say it takes both (SGLS bit 17).
  ASSERT_EQ(r.c->identity().sgls & (1U << 17), 0U);
  const std::array<nvme::DataSegment, 2> gap{{{data.iova(), kBlock}, {data.iova_at(2 * kBlock), kBlock}}};
  WaitableRequest scattered(r.w.get(), IoOpcode::read, kLba, 2, gap);
  scattered.nsid = kPiType2Nsid;
  scattered.metadata = {meta.iova(), 16};
  EXPECT_EQ(r.q->submit(scattered), -EINVAL);
}

// Type 1 with extended LBAs over several commands: 2048 blocks written with PRACT go as two
// commands of 512-byte blocks; read back with their tuples (520 bytes a block) they take three,
// cut where no page begins, and every tuple carries its own LBA: the driver sent each command's.
// Written back as they are with every check, the controller checks each command's tags.
TEST(NvmePiVm, Type1ExtendedLbasOverSeveralCommands) {
  Rig r;
  ASSERT_NO_FATAL_FAILURE(open_rig(r, kPiType1Nsid, {.pi_type = 1, .ms = 8, .extended = true, .first = false}));
  constexpr std::uint64_t kLba = 3000, kBlocks = 2048, kExt = kBlock + 8;
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer buf, dma::DmaBuffer::allocate(r.c->dma_space(), kBlocks * kExt));
  std::uint64_t before = r.q->stats().commands.load();
  ASSERT_NO_FATAL_FAILURE(write_type1_with_pract(r, buf, kLba, kBlocks, 0x0101));
  EXPECT_EQ(r.q->stats().commands.load() - before, 2U);

  std::memset(buf.data(), 0, kBlocks * kExt);
  const nvme::DataSegment ext{buf.iova(), kBlocks * kExt};
  before = r.q->stats().commands.load();
  NsRequest raw(r, IoOpcode::read, kPiType1Nsid, kLba, kBlocks, ext);
  ASSERT_EQ(run_io(*r.q, raw), 0) << nvme::to_string(raw.status);
  EXPECT_EQ(r.q->stats().commands.load() - before, 3U) << "1064960 bytes at most 524288 a command";
  std::vector<std::uint8_t> want(kBlock);
  for (std::uint64_t i = 0; i < kBlocks; ++i) {
    fill_pattern(want.data(), 5, (kLba + i) * kBlock, kBlock);
    const auto block = bytes_of(buf, i * kExt, kBlock);
    ASSERT_EQ(std::memcmp(block.data(), want.data(), kBlock), 0) << "block " << i;
    const auto tuple = bytes_of(buf, i * kExt + kBlock, pi::kTupleBytes).first<pi::kTupleBytes>();
    ASSERT_EQ(pi::decode(tuple), pi::block_tuple(block, {}, 0x0101, static_cast<std::uint32_t>(kLba + i))) << "block " << i;
  }
  NsRequest back(r, IoOpcode::write, kPiType1Nsid, kLba, kBlocks, ext);
  back.protection = {.pract = false, .check = pi::kCheckAll, .ref_tag = 0, .app_tag = 0x0101, .app_mask = 0xffff};
  EXPECT_EQ(run_io(*r.q, back), 0) << nvme::to_string(back.status);
}

// Type 3, 16 bytes of metadata whose first 8 are the protection information: a write with PRACT
// sends all 16, the controller fills in the tuple (guard over the block alone, as the tuple comes
// first) and keeps the other 8 bytes; a wrong application tag fails with 0283h; a reference tag
// check is refused at submit, as type 3 has none to check.
TEST(NvmePiVm, Type3TupleFirstInLargerMetadata) {
  Rig r;
  ASSERT_NO_FATAL_FAILURE(open_rig(r, kPiType3Nsid, {.pi_type = 3, .ms = 16, .extended = false, .first = true}));
  constexpr std::uint64_t kBlocks = 4, kLba = 40;
  constexpr std::uint32_t kRef = 0xabcdef01;
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer data, dma::DmaBuffer::allocate(r.c->dma_space(), kBlocks * kBlock));
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer meta, dma::DmaBuffer::allocate(r.c->dma_space(), kBlocks * 16));
  fill_pattern(data.data(), 7, kLba * kBlock, kBlocks * kBlock);
  for (std::uint64_t i = 0; i < kBlocks * 16; ++i) {
    meta.as<std::uint8_t>()[i] = static_cast<std::uint8_t>(0xc0 + i);
  }
  const nvme::DataSegment whole{data.iova(), kBlocks * kBlock};
  NsRequest wr(r, IoOpcode::write, kPiType3Nsid, kLba, kBlocks, whole);
  wr.metadata = {meta.iova(), kBlocks * 16};
  wr.protection = {.pract = true, .check = 0, .ref_tag = kRef, .app_tag = 0x7777, .app_mask = 0};
  ASSERT_EQ(run_io(*r.q, wr), 0) << nvme::to_string(wr.status);

  std::memset(meta.data(), 0, kBlocks * 16);
  NsRequest rd(r, IoOpcode::read, kPiType3Nsid, kLba, kBlocks, whole);
  rd.metadata = wr.metadata;
  ASSERT_EQ(run_io(*r.q, rd), 0) << nvme::to_string(rd.status);
  for (std::uint64_t i = 0; i < kBlocks; ++i) {
    const auto tuple = bytes_of(meta, i * 16, pi::kTupleBytes).first<pi::kTupleBytes>();
    EXPECT_EQ(pi::decode(tuple), pi::block_tuple(bytes_of(data, i * kBlock, kBlock), {}, 0x7777, kRef)) << "block " << i;
    EXPECT_EQ(meta.as<std::uint8_t>()[i * 16 + 8], static_cast<std::uint8_t>(0xc0 + i * 16 + 8)) << "the host's own bytes kept";
  }

  NsRequest wrong(r, IoOpcode::read, kPiType3Nsid, kLba, kBlocks, whole);
  wrong.metadata = wr.metadata;
  wrong.protection = {.pract = false, .check = pi::kCheckGuard | pi::kCheckApp, .ref_tag = kRef, .app_tag = 0x7778, .app_mask = 0xffff};
  EXPECT_EQ(run_io(*r.q, wrong), -EILSEQ);
  EXPECT_TRUE(wrong.status.is(nvme::sct::kMediaError, nvme::sc::kAppTagCheck)) << nvme::to_string(wrong.status);
  NsRequest right(r, IoOpcode::read, kPiType3Nsid, kLba, kBlocks, whole);
  right.metadata = wr.metadata;
  right.protection = wrong.protection;
  right.protection.app_tag = 0x7777;
  EXPECT_EQ(run_io(*r.q, right), 0) << nvme::to_string(right.status);
  NsRequest ref(r, IoOpcode::read, kPiType3Nsid, kLba, kBlocks, whole);
  ref.metadata = wr.metadata;
  ref.protection = right.protection;
  ref.protection.check = pi::kCheckRef;
  EXPECT_EQ(r.q->submit(ref), -EINVAL) << "type 3 has no reference tag to check";
}

// NVMe 2.0's 64-bit guard format (QEMU's pif=2), found through Identify CNS 05h: the driver has
// no 16-byte tuples or 48-bit reference tags, so it refuses PRACT and PRCHK there, while plain
// reads and writes of the blocks and their metadata still work.
TEST(NvmePiVm, SixtyFourBitGuardFormatIsFoundAndNotGuessedAt) {
  Rig r;
  ASSERT_NO_FATAL_FAILURE(open_rig(r, kPi64Nsid, {.pi_type = 1, .ms = 16, .extended = false, .first = false}));
  EXPECT_EQ(r.ns->pi_format, 2) << "ELBAF PIF 10b from Identify Namespace for the NVM command set";
  constexpr std::uint64_t kBlocks = 2, kLba = 8;
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer data, dma::DmaBuffer::allocate(r.c->dma_space(), kBlocks * kBlock));
  VFE_ASSERT_OK_AND_ASSIGN(dma::DmaBuffer meta, dma::DmaBuffer::allocate(r.c->dma_space(), kBlocks * 16));
  fill_pattern(data.data(), 8, kLba * kBlock, kBlocks * kBlock);
  std::memset(meta.data(), 0x3c, kBlocks * 16);
  const nvme::DataSegment whole{data.iova(), kBlocks * kBlock};
  NsRequest pract(r, IoOpcode::write, kPi64Nsid, kLba, kBlocks, whole);
  pract.protection.pract = true;
  EXPECT_EQ(r.q->submit(pract), -EOPNOTSUPP);
  NsRequest wr(r, IoOpcode::write, kPi64Nsid, kLba, kBlocks, whole);
  wr.metadata = {meta.iova(), kBlocks * 16};
  ASSERT_EQ(run_io(*r.q, wr), 0) << nvme::to_string(wr.status);
  std::memset(data.data(), 0, kBlocks * kBlock);
  std::memset(meta.data(), 0, kBlocks * 16);
  NsRequest rd(r, IoOpcode::read, kPi64Nsid, kLba, kBlocks, whole);
  rd.metadata = wr.metadata;
  ASSERT_EQ(run_io(*r.q, rd), 0) << nvme::to_string(rd.status);
  EXPECT_EQ(first_mismatch(data.data(), 8, kLba * kBlock, kBlocks * kBlock), ~0ULL);
  EXPECT_EQ(meta.as<std::uint8_t>()[17], 0x3c) << "the metadata as written";
}

}  // namespace
}  // namespace vfe::vmtest
