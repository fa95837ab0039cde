// What the kernel is told of a block device: ublk's basic and discard parameters from a
// BlockGeometry, and the geometries refused before the kernel is asked.
#include <gtest/gtest.h>

#include "frontends/ublk/device.hpp"
#include "tests/unit/support/assert_ok.hpp"

namespace vfe::ublk {
namespace {

BlockGeometry nvme_like() {
  BlockGeometry g;
  g.block_size = 4096;
  g.blocks = 16384;  // 64 MiB
  g.max_io_bytes = 256 * 1024;
  return g;
}

// Refused with EINVAL, before the kernel is asked.
bool refused(const Result<abi::Params>& r) { return !r && r.error().is(EINVAL); }

TEST(UblkParams, BasicParametersFollowTheGeometry) {
  VFE_ASSERT_OK_AND_ASSIGN(const abi::Params p, params_for(nvme_like(), 256 * 1024));
  EXPECT_EQ(p.len, 0U) << "Control::set_params fills in the length";
  EXPECT_EQ(p.types, abi::kParamBasic);
  EXPECT_EQ(p.basic.logical_bs_shift, 12);
  EXPECT_EQ(p.basic.physical_bs_shift, 12);
  EXPECT_EQ(p.basic.max_sectors, 512U);
  EXPECT_EQ(p.basic.dev_sectors, 131072U);
  EXPECT_EQ(p.basic.attrs, 0U) << "no volatile cache: no FLUSH and no FUA requests";
}

TEST(UblkParams, AVolatileCacheAsksForFlushAndFua) {
  BlockGeometry g = nvme_like();
  g.volatile_cache = true;
  VFE_ASSERT_OK_AND_ASSIGN(const abi::Params p, params_for(g, g.max_io_bytes));
  EXPECT_EQ(p.basic.attrs, abi::kAttrVolatileCache | abi::kAttrFua);
}

TEST(UblkParams, WriteZeroesIsOfferedWithoutDiscard) {
  BlockGeometry g = nvme_like();
  g.block_size = 512;
  g.blocks = 131072;
  g.write_zeroes = true;
  VFE_ASSERT_OK_AND_ASSIGN(const abi::Params p, params_for(g, g.max_io_bytes));
  EXPECT_EQ(p.types, abi::kParamBasic | abi::kParamDiscard);
  EXPECT_EQ(p.basic.logical_bs_shift, 9);
  EXPECT_EQ(p.discard.max_write_zeroes_sectors, 512U);
  EXPECT_EQ(p.discard.max_discard_sectors, 0U) << "no discard asked for: the kernel sends none";
  EXPECT_EQ(p.discard.discard_granularity, 512U);
}

TEST(UblkParams, DiscardIsOneRangeOfWholeBlocks) {
  BlockGeometry g = nvme_like();
  g.discard = true;
  VFE_ASSERT_OK_AND_ASSIGN(const abi::Params p, params_for(g, g.max_io_bytes));
  EXPECT_EQ(p.types, abi::kParamBasic | abi::kParamDiscard);
  EXPECT_EQ(p.discard.max_discard_segments, 1U) << "ublk refuses other counts";
  EXPECT_EQ(p.discard.discard_granularity, 4096U);
  EXPECT_GT(p.discard.max_discard_sectors, 0U);
  EXPECT_EQ(p.discard.max_discard_sectors % (4096 / 512), 0U) << "whole blocks";
  EXPECT_EQ(p.discard.max_write_zeroes_sectors, 0U) << "no write zeroes asked for";
}

TEST(UblkParams, DiscardFollowsTheTargetsRangeLimit) {
  BlockGeometry g = nvme_like();  // 4096-byte blocks
  g.discard = true;
  VFE_ASSERT_OK_AND_ASSIGN(abi::Params p, params_for(g, g.max_io_bytes));
  EXPECT_EQ(p.discard.max_discard_sectors, 1U << 21) << "no limit said: 1 GiB";
  g.max_discard_bytes = std::uint64_t{0x7FFFF} * 4096;  // QEMU's DMRSL for 4 KiB blocks
  VFE_ASSERT_OK_AND_ASSIGN(p, params_for(g, g.max_io_bytes));
  EXPECT_EQ(p.discard.max_discard_sectors, 0x7FFFFU * 8);
  g.max_discard_bytes = 10000;  // not whole blocks: rounded down to two
  VFE_ASSERT_OK_AND_ASSIGN(p, params_for(g, g.max_io_bytes));
  EXPECT_EQ(p.discard.max_discard_sectors, 16U);
  g.max_discard_bytes = std::uint64_t{1} << 50;  // more than the 32-bit field holds
  VFE_ASSERT_OK_AND_ASSIGN(p, params_for(g, g.max_io_bytes));
  EXPECT_EQ(p.discard.max_discard_sectors, ~0U);
}

TEST(UblkParams, TheKernelsBufferSizeBoundsTheRequestSize) {
  // ADD_DEV rounds max_io_buf_bytes down to a page; max_sectors follows what it answered.
  VFE_ASSERT_OK_AND_ASSIGN(const abi::Params p, params_for(nvme_like(), 128 * 1024));
  EXPECT_EQ(p.basic.max_sectors, 256U);
}

TEST(UblkParams, GeometriesUblkCannotServeAreRefused) {
  BlockGeometry g = nvme_like();
  g.block_size = 8192;
  EXPECT_TRUE(refused(params_for(g, g.max_io_bytes)));
  g.block_size = 1000;
  EXPECT_TRUE(refused(params_for(g, g.max_io_bytes)));
  g = nvme_like();
  g.blocks = 0;
  EXPECT_TRUE(refused(params_for(g, g.max_io_bytes)));
  EXPECT_TRUE(refused(params_for(nvme_like(), 2048))) << "requests smaller than a block";
}

}  // namespace
}  // namespace vfe::ublk
