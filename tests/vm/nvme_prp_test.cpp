// Chained PRP lists (NVMe 1.4 §4.3) against QEMU's controller 1, which the rig gives MDTS 10
// (4 MiB): a 4 MiB request over four buffers in one command (1024 pages: PRP1 and 1023 list
// entries on two chained list pages), written and read back; the same data starting 512 bytes
// into a page takes two (a command never touches more than MDTS's pages: QEMU fails one that
// maps more than 1024 with Internal Error); on a deep queue, whose command slots keep one list
// page each, the aligned request takes two.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

constexpr std::uint64_t kLen = 4 * kMiB;
constexpr std::uint64_t kAt = kScratchBegin + 4 * kMiB;

// Five 1 MiB buffers. Aligned, the request's data is the first four; unaligned, it begins 512
// bytes into the first and ends 512 bytes into the fifth (the PRP rules: only the first segment
// may start inside a page, only the last end inside one).
struct Scattered {
  std::vector<dma::DmaBuffer> bufs;
  std::vector<nvme::DataSegment> segs;
  std::uint64_t lead = 0;
  std::uint8_t* byte(std::uint64_t offset) {  // byte `offset` of the request's data
    const std::uint64_t at = offset + lead;
    return bufs[at / kMiB].as<std::uint8_t>() + at % kMiB;
  }
};

void scatter(nvme::Controller& c, Scattered& s, std::uint64_t lead) {
  for (int i = 0; i < 5; ++i) {
    VFE_ASSERT_OK_AND_ASSIGN(auto b, dma::DmaBuffer::allocate(c.dma_space(), kMiB));
    s.bufs.push_back(std::move(b));
  }
  s.lead = lead;
  s.segs.push_back({s.bufs[0].iova_at(lead), kMiB - lead});
  for (int i = 1; i < 4; ++i) {
    s.segs.push_back({s.bufs[i].iova(), kMiB});
  }
  if (lead != 0) {
    s.segs.push_back({s.bufs[4].iova(), lead});
  }
}

// Writes the pattern through `q` and reads it back into zeroed buffers; returns the commands
// each took (via `commands`).
void write_and_read(nvme::IoQueue& q, engine::Worker& w, Scattered& s, std::vector<std::uint64_t>& commands) {
  for (std::uint64_t o = 0; o < kLen; o += 4096) {
    fill_pattern(s.byte(o), 1, kAt + o, 4096);  // page by page: a page never straddles buffers
  }
  for (const IoOpcode op : {IoOpcode::write, IoOpcode::read}) {
    if (op == IoOpcode::read) {
      for (auto& b : s.bufs) {
        std::memset(b.data(), 0, kMiB);
      }
    }
    const std::uint64_t before = q.stats().commands.load();
    WaitableRequest r(&w, op, kAt / kBlock, kLen / kBlock, s.segs);
    ASSERT_EQ(run_io(q, r), 0) << nvme::to_string(r.status);
    commands.push_back(q.stats().commands.load() - before);
  }
  for (std::uint64_t o = 0; o < kLen; o += 4096) {
    ASSERT_EQ(first_mismatch(s.byte(o), 1, kAt + o, 4096), ~0ULL) << "at byte " << o;
  }
}

TEST(NvmePrpVm, FourMibInOneCommandThroughChainedPrpLists) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(1));
  ASSERT_EQ(c->max_transfer_bytes(), kLen) << "the rig gives controller 1 mdts=10";
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  {
    VFE_ASSERT_OK_AND_ASSIGN(auto q, c->create_io_queue(*w, {.entries = 32}));
    ASSERT_EQ(q->max_transfer_bytes(), kLen);
    Scattered aligned;
    ASSERT_NO_FATAL_FAILURE(scatter(*c, aligned, 0));
    std::vector<std::uint64_t> commands;
    ASSERT_NO_FATAL_FAILURE(write_and_read(*q, *w, aligned, commands));
    EXPECT_EQ(commands, (std::vector<std::uint64_t>{1, 1})) << "one command each way";
    Scattered unaligned;
    ASSERT_NO_FATAL_FAILURE(scatter(*c, unaligned, 512));
    commands.clear();
    ASSERT_NO_FATAL_FAILURE(write_and_read(*q, *w, unaligned, commands));
    EXPECT_EQ(commands, (std::vector<std::uint64_t>{2, 2})) << "1025 pages: 4 MiB less the lead, then the tail";
  }
  VFE_ASSERT_OK_AND_ASSIGN(auto deep, c->create_io_queue(*w, {.entries = 256}));
  EXPECT_EQ(deep->max_transfer_bytes(), 2 * kMiB + 4096) << "one list page a slot keeps the queue in 2 MiB";
  Scattered s;
  ASSERT_NO_FATAL_FAILURE(scatter(*c, s, 0));
  std::vector<std::uint64_t> commands;
  ASSERT_NO_FATAL_FAILURE(write_and_read(*deep, *w, s, commands));
  EXPECT_EQ(commands, (std::vector<std::uint64_t>{2, 2})) << "2 MiB and a page, then the rest";
}

}  // namespace
}  // namespace vfe::vmtest
