// The second half of vfe-ublk's data check (tests/vm/guest/ublk_check.sh): blocks that a program
// not written here (dd) wrote through /dev/ublkb0 read back through this library's NVMe driver,
// straight from the controller. The host then finds the same bytes in the disk image
// (vfe_disk_check IMAGE ublk). The script runs this test after it wrote the region, with
// VFE_UBLK_READBACK=1; without that (the suite's own run) the test skips and says why.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

TEST(UblkReadback, BlocksWrittenThroughTheBlockDeviceReadBackThroughTheDriver) {
  if (std::getenv("VFE_UBLK_READBACK") == nullptr) {
    GTEST_SKIP() << "tests/vm/guest/ublk_check.sh runs this after it wrote the region through vfe-ublk";
  }
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  ASSERT_NE(c->find_namespace(kUblkNsid), nullptr) << "the rig's vfe-ublk namespace is missing (tests/vm/run.sh)";
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  auto q = c->create_io_queue(*w, {.entries = 64, .completion = engine::CompletionMode::polling});
  ASSERT_TRUE(q) << q.error().message();
  constexpr std::uint64_t kChunk = 256 * 1024;
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), kChunk));
  const nvme::DataSegment whole{buf.iova(), kChunk};
  for (std::uint64_t at = kUblkRegion.offset; at < kUblkRegion.offset + kUblkRegion.length; at += kChunk) {
    std::memset(buf.data(), 0, kChunk);
    WaitableRequest rd(w.get(), IoOpcode::read, at / kBlock, kChunk / kBlock, {&whole, 1});
    rd.nsid = kUblkNsid;
    ASSERT_EQ(run_io(**q, rd), 0) << nvme::to_string(rd.status);
    const std::uint64_t bad = first_mismatch(buf.data(), kUblkPatternIndex, at, kChunk);
    ASSERT_EQ(bad, ~0ULL) << "byte " << bad << " of namespace " << kUblkNsid
                          << " differs from what was written through the block device";
  }
  std::printf("ublk readback: %llu MiB written through /dev/ublkb0 read back equal through the driver\n",
              static_cast<unsigned long long>(kUblkRegion.length >> 20));
}

}  // namespace
}  // namespace vfe::vmtest
