// Identify data (NVMe 1.4 §5.15) decoded from hand-built 4096-byte pages: a controller like
// QEMU's emulated one, namespaces with good and bad formats, and active namespace lists.
#include "drivers/nvme/identify.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <string_view>
#include <vector>

#include "drivers/nvme/spec.hpp"
#include "tests/unit/support/le_bytes.hpp"

namespace vfe::nvme {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Page = test::Bytes;
using test::put_ascii;
using test::put_le;

// Identify Controller as QEMU 7.2's NVMe device reports it (figure 247 offsets).
Page qemu_controller() {
  Page p(kIdentifySize, 0);
  put_le<std::uint16_t>(p, 0, 0x1b36);
  put_le<std::uint16_t>(p, 2, 0x1af4);
  put_ascii(p, 4, 20, "vfe-nvme-0");
  put_ascii(p, 24, 40, "QEMU NVMe Ctrl");
  put_ascii(p, 64, 8, "7.2.0");
  p[77] = 7;
  put_le<std::uint16_t>(p, 78, 0x0001);
  put_le<std::uint32_t>(p, 80, 0x00010400);
  p[512] = 0x66;
  p[513] = 0x44;
  put_le<std::uint16_t>(p, 514, 0);
  put_le<std::uint32_t>(p, 516, 256);
  put_le<std::uint16_t>(p, 520, 0x015d);
  p[525] = 0x07;
  return p;
}

TEST(IdentifyController, ParsesAQemuController) {
  const auto c = parse_identify_controller(qemu_controller());
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->vendor_id, 0x1b36);
  EXPECT_EQ(c->subsystem_vendor_id, 0x1af4);
  EXPECT_EQ(c->serial, "vfe-nvme-0");
  EXPECT_EQ(c->model, "QEMU NVMe Ctrl");
  EXPECT_EQ(c->firmware, "7.2.0");
  EXPECT_EQ(c->mdts, 7);
  EXPECT_EQ(c->controller_id, 1);
  EXPECT_EQ(c->version, 0x00010400U);
  EXPECT_EQ(c->sqes, 0x66);
  EXPECT_EQ(c->cqes, 0x44);
  EXPECT_EQ(c->max_cmd, 0);
  EXPECT_EQ(c->namespace_count, 256U);
  EXPECT_EQ(c->oncs, 0x015d);
  EXPECT_EQ(c->vwc, 0x07);
  EXPECT_TRUE(c->supports_write_zeroes());
  EXPECT_TRUE(c->supports_dataset_management()) << "ONCS bit 2";
  EXPECT_EQ(c->max_transfer_bytes(12), 512U * 1024);
}

TEST(IdentifyController, OptionalCommandsAndAttributes) {
  Page p = qemu_controller();
  put_le<std::uint16_t>(p, 256, 0x010a);  // OACS: format, namespace management, doorbell buffer config
  p[260] = 0x03;                          // FRMW: slot 1 read-only, one slot
  p[261] = 0x07;                          // LPA
  p[262] = 63;                            // ELPE: 64 error log entries
  put_le<std::uint32_t>(p, 536, 0x00100002);  // SGLS: dword aligned, bit bucket
  put_le<std::uint16_t>(p, 520, 0x0081);      // ONCS: compare, verify
  const auto c = parse_identify_controller(p);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->oacs, 0x010a);
  EXPECT_TRUE(c->supports_doorbell_buffer_config()) << "OACS bit 8";
  EXPECT_EQ(c->frmw, 0x03);
  EXPECT_EQ(c->lpa, 0x07);
  EXPECT_EQ(c->elpe, 63);
  EXPECT_EQ(c->sgls, 0x00100002U);
  EXPECT_TRUE(c->supports_sgls());
  EXPECT_TRUE(c->supports_compare());
  EXPECT_TRUE(c->supports_verify());
  EXPECT_FALSE(c->supports_dataset_management());

  put_le<std::uint16_t>(p, 256, 0x00ff);
  put_le<std::uint32_t>(p, 536, 0xfffffffc);  // every bit but the NVM command set's support
  put_le<std::uint16_t>(p, 520, 0xff7e);
  const auto d = parse_identify_controller(p);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_FALSE(d->supports_doorbell_buffer_config());
  EXPECT_FALSE(d->supports_sgls());
  put_le<std::uint32_t>(p, 536, 0x00000003);  // 11b: reserved
  EXPECT_FALSE(parse_identify_controller(p)->supports_sgls()) << "SGLS 11b is reserved, not support";
  put_le<std::uint32_t>(p, 536, 0x00000001);
  EXPECT_TRUE(parse_identify_controller(p)->supports_sgls());
  put_le<std::uint32_t>(p, 536, 0xfffffffc);
  EXPECT_FALSE(d->supports_compare());
  EXPECT_FALSE(d->supports_verify());
}

TEST(IdentifyNvmController, ReadsTheCommandSizeLimits) {
  Page p(kIdentifySize, 0);
  p[0] = 7;                                          // VSL
  p[1] = 8;                                          // WZSL
  p[2] = 9;                                          // WUSL
  p[3] = 128;                                        // DMRL
  put_le<std::uint32_t>(p, 4, 0x003fffff);           // DMRSL
  put_le<std::uint64_t>(p, 8, 0x0000000123456789);  // DMSL
  const auto l = parse_identify_nvm_controller(p);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->vsl, 7);
  EXPECT_EQ(l->wzsl, 8);
  EXPECT_EQ(l->wusl, 9);
  EXPECT_EQ(l->dmrl, 128);
  EXPECT_EQ(l->dmrsl, 0x003fffffU);
  EXPECT_EQ(l->dmsl, 0x0000000123456789U);
  EXPECT_FALSE(parse_identify_nvm_controller(std::span(p).first(4095)));
}

TEST(IdentifyController, MultiByteFieldsAreLittleEndian) {
  Page p = qemu_controller();
  put_le<std::uint16_t>(p, 0, 0x8086);
  put_le<std::uint16_t>(p, 78, 0xbeef);
  put_le<std::uint32_t>(p, 80, 0x00020001);
  put_le<std::uint16_t>(p, 514, 0x1234);
  put_le<std::uint32_t>(p, 516, 0xa1b2c3d4);
  put_le<std::uint16_t>(p, 520, 0x0007);
  put_le<std::uint32_t>(p, 92, 0x00000300);  // OAES: namespace attribute and firmware notices
  p[259] = 3;                                // AERL: four event requests at once
  const auto c = parse_identify_controller(p);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->oaes, 0x300U);
  EXPECT_EQ(c->aerl, 3);
  EXPECT_EQ(c->vendor_id, 0x8086);
  EXPECT_EQ(p[0], 0x86);
  EXPECT_EQ(c->controller_id, 0xbeef);
  EXPECT_EQ(c->version, 0x00020001U);
  EXPECT_EQ(c->max_cmd, 0x1234);
  EXPECT_EQ(c->namespace_count, 0xa1b2c3d4U);
  EXPECT_FALSE(c->supports_write_zeroes());  // ONCS bit 3 clear
}

TEST(IdentifyController, StringsLoseTrailingPaddingAndKeepTheRest) {
  Page p = qemu_controller();
  put_ascii(p, 4, 20, "  SN 1");                 // leading and inner spaces stay
  put_ascii(p, 24, 40, "Model\x01X\x7f\xff");     // non-printable bytes become '?'
  for (std::size_t i = 64; i < 72; ++i) {
    p[i] = 0;
  }
  p[64] = 'F';
  p[65] = 'W';
  p[66] = ' ';  // spaces then NULs: all trailing padding
  const auto c = parse_identify_controller(p);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->serial, "  SN 1");
  EXPECT_EQ(c->model, "Model?X??");
  EXPECT_EQ(c->firmware, "FW");
}

TEST(IdentifyController, NulInsideAStringIsReplaced) {
  Page p = qemu_controller();
  put_ascii(p, 4, 20, "ab");
  p[5] = 0;  // "a\0" followed by spaces
  p[6] = 'c';
  const auto c = parse_identify_controller(p);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->serial, "a?c");
}

TEST(IdentifyController, BlankStringsAreEmpty) {
  Page p = qemu_controller();
  put_ascii(p, 4, 20, "");
  const auto c = parse_identify_controller(p);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->serial, "");
  EXPECT_EQ(c->model, "QEMU NVMe Ctrl");  // the neighbouring field is untouched
}

TEST(IdentifyController, ShortBufferFails) {
  const Page p = qemu_controller();
  const auto c = parse_identify_controller(std::span(p).first(4095));
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().is(EINVAL));
  EXPECT_THAT(c.error().message(), HasSubstr("4095 bytes"));
  EXPECT_FALSE(parse_identify_controller({}));
}

TEST(IdentifyController, LongerBufferIsFine) {
  Page p = qemu_controller();
  p.resize(8192, 0xff);
  const auto c = parse_identify_controller(p);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->model, "QEMU NVMe Ctrl");
}

TEST(IdentifyController, AcceptsEntrySizeRangesThatIncludeOurs) {
  const std::array<std::pair<std::uint8_t, std::uint8_t>, 4> ok = {{
      {0x00, 0x00},  // not reported (before NVMe 1.2)
      {0x66, 0x44},
      {0x76, 0x54},  // larger entries allowed, ours required
      {0xa6, 0xf4},
  }};
  for (const auto& [sqes, cqes] : ok) {
    Page p = qemu_controller();
    p[512] = sqes;
    p[513] = cqes;
    const auto c = parse_identify_controller(p);
    EXPECT_TRUE(c) << int{sqes} << " " << int{cqes} << ": " << c.error().message();
  }
}

TEST(IdentifyController, RejectsEntrySizesThisDriverCannotUse) {
  Page p = qemu_controller();
  p[512] = 0x77;  // requires 128-byte SQEs
  auto c = parse_identify_controller(p);
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().is(ENOTSUP));
  EXPECT_THAT(c.error().message(), HasSubstr("SQES is 0x77"));
  EXPECT_THAT(c.error().message(), HasSubstr("only 128-byte submission queue entries"));

  p = qemu_controller();
  p[512] = 0x55;  // at most 32-byte SQEs
  EXPECT_FALSE(parse_identify_controller(p));

  p = qemu_controller();
  p[513] = 0x33;  // at most 8-byte CQEs
  c = parse_identify_controller(p);
  ASSERT_FALSE(c);
  EXPECT_THAT(c.error().message(), HasSubstr("CQES is 0x33"));
  EXPECT_THAT(c.error().message(), HasSubstr("16-byte"));

  p = qemu_controller();
  p[513] = 0x55;  // requires 32-byte CQEs
  EXPECT_FALSE(parse_identify_controller(p));
}

TEST(IdentifyController, MaxTransferBytes) {
  ControllerIdentity c;
  EXPECT_EQ(c.max_transfer_bytes(12), 0U);  // mdts 0: no limit
  c.mdts = 7;
  EXPECT_EQ(c.max_transfer_bytes(12), 512U * 1024);
  EXPECT_EQ(c.max_transfer_bytes(16), 8U * 1024 * 1024);
  c.mdts = 1;
  EXPECT_EQ(c.max_transfer_bytes(12), 8192U);
  c.mdts = 50;
  EXPECT_EQ(c.max_transfer_bytes(12), std::uint64_t{1} << 62);
  c.mdts = 51;
  EXPECT_EQ(c.max_transfer_bytes(12), std::uint64_t{1} << 63);
  c.mdts = 255;  // would shift past 64 bits: saturates
  EXPECT_EQ(c.max_transfer_bytes(12), std::uint64_t{1} << 63);
  EXPECT_EQ(c.max_transfer_bytes(0xffffffff), std::uint64_t{1} << 63);
}

// LBA format descriptor (figure 251): MS 15:0, LBADS 23:16, RP 25:24.
std::uint32_t lbaf(std::uint16_t ms, std::uint8_t lbads, std::uint8_t rp) {
  return ms | (std::uint32_t{lbads} << 16) | (std::uint32_t{rp} << 24);
}

// Identify Namespace (figure 249): 1 GiB of 512-byte blocks; formats 512+0 and 4096+8.
Page namespace_page(std::uint8_t flbas = 0) {
  Page p(kIdentifySize, 0);
  put_le<std::uint64_t>(p, 0, 0x200000);
  put_le<std::uint64_t>(p, 8, 0x1ff000);
  put_le<std::uint64_t>(p, 16, 0x1234);
  p[25] = 1;  // two formats
  p[26] = flbas;
  put_le(p, 128, lbaf(0, 9, 2));
  put_le(p, 132, lbaf(8, 12, 0));
  return p;
}

TEST(IdentifyNamespace, ParsesSizesAndTheFormatInUse) {
  const auto ns = parse_identify_namespace(1, namespace_page());
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->nsid, 1U);
  EXPECT_EQ(ns->size_blocks, 0x200000U);
  EXPECT_EQ(ns->capacity_blocks, 0x1ff000U);
  EXPECT_EQ(ns->used_blocks, 0x1234U);
  EXPECT_EQ(ns->format_index, 0);
  EXPECT_EQ(ns->block_size, 512U);
  EXPECT_EQ(ns->metadata_bytes, 0);
  EXPECT_FALSE(ns->extended_lba);
  EXPECT_FALSE(ns->deallocated_reads_zero()) << "DLFEAT 0: not said";
  EXPECT_EQ(ns->size_bytes(), 1ULL << 30);
  ASSERT_EQ(ns->formats.size(), 2U);
  EXPECT_EQ(ns->formats[0].metadata_bytes, 0);
  EXPECT_EQ(ns->formats[0].data_shift, 9);
  EXPECT_EQ(ns->formats[0].relative_performance, 2);
  EXPECT_EQ(ns->formats[1].metadata_bytes, 8);
  EXPECT_EQ(ns->formats[1].data_shift, 12);
  EXPECT_EQ(ns->formats[1].relative_performance, 0);
}

TEST(IdentifyNamespace, DeallocatedBlocksReadAsDlfeatSays) {
  Page p = namespace_page();
  p[33] = 0x09;  // bits 2:0 = 001b (zeroes), bit 3 (Write Zeroes may deallocate)
  auto ns = parse_identify_namespace(1, p);
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->dlfeat, 0x09);
  EXPECT_TRUE(ns->deallocated_reads_zero());
  p[33] = 0x02;  // 010b: all bytes FFh
  ns = parse_identify_namespace(1, p);
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_FALSE(ns->deallocated_reads_zero());
}

TEST(IdentifyNamespace, SecondFormatWithInlineMetadata) {
  const auto ns = parse_identify_namespace(3, namespace_page(0x11));
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->nsid, 3U);
  EXPECT_EQ(ns->format_index, 1);
  EXPECT_TRUE(ns->extended_lba);
  EXPECT_EQ(ns->block_size, 4096U);
  EXPECT_EQ(ns->metadata_bytes, 8);
  EXPECT_EQ(ns->size_bytes(), 0x200000ULL * 4096);
}

TEST(IdentifyNamespace, ProtectionTypeAndWhereMetadataGoes) {
  Page p = namespace_page(0x11);  // 4096 + 8, extended LBAs
  p[29] = 0x09;                   // DPS: type 1, protection information first
  auto ns = parse_identify_namespace(1, p);
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->dps, 0x09);
  EXPECT_EQ(ns->pi_type, 1);
  EXPECT_TRUE(ns->pi_first);
  EXPECT_EQ(ns->data_unit(false), 4104U) << "metadata inline with each block";
  EXPECT_EQ(ns->metadata_unit(false), 0U);
  EXPECT_TRUE(ns->pract_strips(true)) << "MS 8 is the protection information alone";
  EXPECT_EQ(ns->data_unit(true), 4096U) << "PRACT: the controller adds and strips it";
  p[26] = 0x01;  // the same format with a separate metadata buffer
  p[29] = 0x02;  // type 2, last
  ns = parse_identify_namespace(1, p);
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->pi_type, 2);
  EXPECT_FALSE(ns->pi_first);
  EXPECT_EQ(ns->data_unit(false), 4096U);
  EXPECT_EQ(ns->metadata_unit(false), 8U);
  EXPECT_EQ(ns->metadata_unit(true), 0U);
  p[26] = 0x00;  // 512 + 0: DPS means nothing without metadata
  ns = parse_identify_namespace(1, p);
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->pi_type, 0);
  EXPECT_EQ(ns->dps, 0x02) << "kept as said";
  EXPECT_FALSE(ns->pract_strips(true));
  EXPECT_EQ(ns->data_unit(true), 512U);
}

TEST(IdentifyNamespace, PractStripsATupleOfItsFormatsSize) {
  NamespaceInfo ns;
  ns.block_size = 512;
  ns.metadata_bytes = 16;
  ns.extended_lba = true;
  ns.pi_type = 1;
  EXPECT_FALSE(ns.pract_strips(true)) << "16-bit guard: 8 of the 16 bytes are the tuple";
  EXPECT_EQ(ns.data_unit(true), 528U);
  ns.pi_format = 2;
  EXPECT_TRUE(ns.pract_strips(true)) << "64-bit guard: the 16 bytes are the tuple";
  EXPECT_EQ(ns.data_unit(true), 512U);
  EXPECT_EQ(ns.data_unit(false), 528U);
}

TEST(IdentifyNvmNamespace, ProtectionFormatOfTheFormatInUse) {
  Page p(kIdentifySize, 0);
  put_le<std::uint32_t>(p, 12, 0x000);      // ELBAF0: 16-bit guard
  put_le<std::uint32_t>(p, 16, 2U << 7);    // ELBAF1: 64-bit guard
  put_le<std::uint32_t>(p, 20, 0x7fU);      // ELBAF2: a storage tag size, 16-bit guard
  put_le<std::uint32_t>(p, 12 + 4 * 63, 1U << 7);
  EXPECT_EQ(parse_pi_format(p, 0), 0);
  EXPECT_EQ(parse_pi_format(p, 1), 2);
  EXPECT_EQ(parse_pi_format(p, 2), 0);
  EXPECT_EQ(parse_pi_format(p, 63), 1) << "64 formats in NVMe 2.0";
  EXPECT_EQ(parse_pi_format(std::span(p).first(16), 1), 0) << "short: the 16-bit guard";
}

TEST(IdentifyNamespace, HighFlbasBitsDoNotChangeTheIndex) {
  const auto ns = parse_identify_namespace(1, namespace_page(0xe1));  // bits 7:5 set
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->format_index, 1);
  EXPECT_FALSE(ns->extended_lba);
}

TEST(IdentifyNamespace, SixteenFormatsAreTheMost) {
  Page p = namespace_page(15);
  p[25] = 15;
  for (std::size_t i = 0; i < 16; ++i) {
    put_le(p, 128 + 4 * i, lbaf(static_cast<std::uint16_t>(i), 16, 3));
  }
  const auto ns = parse_identify_namespace(1, p);
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->formats.size(), 16U);
  EXPECT_EQ(ns->block_size, 65536U);
  EXPECT_EQ(ns->metadata_bytes, 15);
  EXPECT_EQ(ns->formats[15].relative_performance, 3);

  p[25] = 16;  // 17 formats
  const auto bad = parse_identify_namespace(1, p);
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(), HasSubstr("NLBAF is 16"));
}

TEST(IdentifyNamespace, InactiveNamespaceFails) {
  const auto ns = parse_identify_namespace(4, Page(kIdentifySize, 0));
  ASSERT_FALSE(ns);
  EXPECT_TRUE(ns.error().is(EINVAL));
  EXPECT_THAT(ns.error().message(),
              HasSubstr("namespace 4: NSZE is 0 (the namespace is not active"));
}

TEST(IdentifyNamespace, ShortBufferFails) {
  const Page p = namespace_page();
  const auto ns = parse_identify_namespace(1, std::span(p).first(512));
  ASSERT_FALSE(ns);
  EXPECT_TRUE(ns.error().is(EINVAL));
  EXPECT_THAT(ns.error().message(), HasSubstr("namespace 1: the data is 512 bytes"));
}

TEST(IdentifyNamespace, FormatIndexBeyondNlbafFails) {
  const auto ns = parse_identify_namespace(2, namespace_page(2));  // only formats 0 and 1
  ASSERT_FALSE(ns);
  EXPECT_TRUE(ns.error().is(EINVAL));
  EXPECT_THAT(ns.error().message(), HasSubstr("FLBAS selects LBA format 2"));
}

TEST(IdentifyNamespace, BlockSizesOutsideSupportedRangeFail) {
  for (const std::uint8_t lbads : {0, 8, 17, 40}) {
    Page p = namespace_page(1);
    put_le(p, 132, lbaf(0, lbads, 0));
    const auto ns = parse_identify_namespace(1, p);
    ASSERT_FALSE(ns) << int{lbads};
    EXPECT_TRUE(ns.error().is(EINVAL));
    EXPECT_THAT(ns.error().message(), HasSubstr("LBADS " + std::to_string(lbads)));
  }
}

TEST(IdentifyNamespace, UnusedFormatsMayBeAnything) {
  Page p = namespace_page(0);
  put_le(p, 132, lbaf(0, 0, 0));  // format 1 unused (LBADS 0), format 0 in use
  const auto ns = parse_identify_namespace(1, p);
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_EQ(ns->formats[1].data_shift, 0);
}

// The active namespace list (CNS 02h): 1024 little-endian dwords.
Page id_list(std::initializer_list<std::uint32_t> ids) {
  Page p(kIdentifySize, 0);
  std::size_t i = 0;
  for (const std::uint32_t id : ids) {
    put_le(p, 4 * i++, id);
  }
  return p;
}

TEST(ActiveNamespaceList, StopsAtTheFirstZero) {
  const auto ids = parse_active_namespace_list(id_list({1, 2, 0x105, 0, 7}));
  ASSERT_TRUE(ids) << ids.error().message();
  EXPECT_THAT(*ids, ElementsAre(1U, 2U, 0x105U));
}

TEST(ActiveNamespaceList, EmptyList) {
  const auto ids = parse_active_namespace_list(id_list({}));
  ASSERT_TRUE(ids) << ids.error().message();
  EXPECT_TRUE(ids->empty());
}

TEST(ActiveNamespaceList, FullPageHoldsAtMost1024) {
  Page p(kIdentifySize + 8, 0);
  for (std::uint32_t i = 0; i < 1026; ++i) {
    put_le(p, 4 * i, 10 + i);  // two more beyond the page, which must not be read
  }
  const auto ids = parse_active_namespace_list(p);
  ASSERT_TRUE(ids) << ids.error().message();
  ASSERT_EQ(ids->size(), 1024U);
  EXPECT_EQ(ids->front(), 10U);
  EXPECT_EQ(ids->back(), 1033U);
}

TEST(ActiveNamespaceList, OrderMustBeStrictlyIncreasing) {
  auto ids = parse_active_namespace_list(id_list({1, 3, 2}));
  ASSERT_FALSE(ids);
  EXPECT_TRUE(ids.error().is(EINVAL));
  EXPECT_THAT(ids.error().message(), HasSubstr("entry 2 is 2 after 3"));
  EXPECT_FALSE(parse_active_namespace_list(id_list({1, 1})));
}

TEST(ActiveNamespaceList, BroadcastIdFails) {
  const auto ids = parse_active_namespace_list(id_list({1, 0xffffffff}));
  ASSERT_FALSE(ids);
  EXPECT_THAT(ids.error().message(), HasSubstr("broadcast"));
}

TEST(ActiveNamespaceList, ShortBufferFails) {
  const Page p = id_list({1, 2});
  const auto ids = parse_active_namespace_list(std::span(p).first(8));
  ASSERT_FALSE(ids);
  EXPECT_TRUE(ids.error().is(EINVAL));
  EXPECT_THAT(ids.error().message(), HasSubstr("8 bytes"));
}

}  // namespace
}  // namespace vfe::nvme
