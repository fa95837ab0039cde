// Shadow doorbells (NVMe 1.4 §5.8 Doorbell Buffer Config) against QEMU's controller, which has
// them (OACS bit 8): the same stream of writes and reads at depth 32, with data verified, once
// with the doorbell registers only and once with shadow doorbells; the MMIO writes per request
// of each are printed, and with shadow doorbells some doorbell updates go to memory only.
// After a controller reset (an FLR) they are set up again and still save register writes (the
// recovery tests run with them on too).
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

constexpr std::size_t kDepth = 32, kRequests = 2048, kIoBytes = 4096;
constexpr std::uint64_t kAt = kScratchBegin + 8 * kMiB, kSpan = 4 * kMiB;  // 1024 blocks of 4 KiB

struct Counts {
  double mmio_per_request = 0;
  std::uint64_t elided = 0;
};

// kRequests of `op` at depth kDepth, 4 KiB each, cycling over kSpan from kAt; buffer slot k
// holds the pattern of the block it carries.
void stream(nvme::IoQueue& q, engine::Worker& w, dma::DmaBuffer& buf, IoOpcode op) {
  std::vector<nvme::DataSegment> segs(kDepth);
  std::vector<std::unique_ptr<WaitableRequest>> slots(kDepth);
  std::vector<std::uint64_t> offsets(kDepth);  // where slot k's request is, from kAt
  std::size_t next = 0, done = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  auto start = [&](std::size_t k) {
    const std::uint64_t offset = (next * kIoBytes) % kSpan;
    segs[k] = {buf.iova_at(k * kIoBytes), kIoBytes};
    auto* data = buf.as<std::uint8_t>() + k * kIoBytes;
    if (op == IoOpcode::write) {
      fill_pattern(data, 0, kAt + offset, kIoBytes);
    }
    slots[k] = std::make_unique<WaitableRequest>(&w, op, (kAt + offset) / kBlock, kIoBytes / kBlock,
                                                 std::span<const nvme::DataSegment>(&segs[k], 1));
    offsets[k] = offset;
    ++next;
    while (q.submit(*slots[k]) == -EAGAIN) {
      std::this_thread::yield();
    }
  };
  for (std::size_t k = 0; k < kDepth; ++k) {
    start(k);
  }
  while (done < kRequests) {
    ASSERT_LT(std::chrono::steady_clock::now(), end) << "requests did not complete";
    for (std::size_t k = 0; k < kDepth; ++k) {
      WaitableRequest* r = slots[k].get();
      if (r == nullptr || r->completions.load(std::memory_order_acquire) == 0) {
        continue;
      }
      ASSERT_EQ(r->result.load(), 0) << nvme::to_string(r->status);
      if (op == IoOpcode::read) {
        const auto* data = buf.as<std::uint8_t>() + k * kIoBytes;
        ASSERT_EQ(first_mismatch(data, 0, kAt + offsets[k], kIoBytes), ~0ULL);
      }
      ++done;
      slots[k].reset();
      if (next < kRequests) {
        start(k);
      }
    }
  }
}

Counts run_both_ways(bool shadow) {
  nvme::ControllerOptions o;
  o.shadow_doorbells = shadow;
  auto c = open_nvme(0, o);
  EXPECT_TRUE(c) << c.error().message();
  if (!c) {
    return {};
  }
  EXPECT_EQ((*c)->uses_shadow_doorbells(), shadow) << "QEMU's controller has Doorbell Buffer Config";
  auto w = start_worker(engine::WorkerMode::polling);
  EXPECT_TRUE(w);
  auto q = (*c)->create_io_queue(**w, {});
  EXPECT_TRUE(q) << q.error().message();
  auto buf = dma::DmaBuffer::allocate((*c)->dma_space(), kDepth * kIoBytes);
  EXPECT_TRUE(buf);
  if (!w || !q || !buf) {
    return {};
  }
  stream(**q, **w, *buf, IoOpcode::write);
  stream(**q, **w, *buf, IoOpcode::read);
  const auto& st = (*q)->stats();
  Counts n;
  n.mmio_per_request = static_cast<double>(st.sq_doorbells.load() + st.cq_doorbells.load()) /
                       static_cast<double>(st.requests.load());
  n.elided = st.doorbells_elided.load();
  if (shadow) {
    // A reset turns shadow doorbells off on the controller (§5.8); the driver hands it the
    // buffers again, or the stream below would hang on doorbells that were never rung.
    inject_fault(**c, Fault::flr);
    wait_for_reset(**c, 1);
    stream(**q, **w, *buf, IoOpcode::read);
    EXPECT_TRUE((*c)->uses_shadow_doorbells());
    EXPECT_GT(st.doorbells_elided.load(), n.elided) << "still elided after the reset";
  }
  std::printf("shadow doorbells %s: %llu requests, %llu SQ and %llu CQ doorbell writes (%.3f a request), %llu elided\n",
              shadow ? "on" : "off", static_cast<unsigned long long>(st.requests.load()),
              static_cast<unsigned long long>(st.sq_doorbells.load()),
              static_cast<unsigned long long>(st.cq_doorbells.load()), n.mmio_per_request,
              static_cast<unsigned long long>(n.elided));
  return n;
}

TEST(NvmeDoorbellVm, ShadowDoorbellsOffAndOnWithDataVerified) {
  const Counts off = run_both_ways(false);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(off.elided, 0U) << "without shadow doorbells every update is a register write";
  const Counts on = run_both_ways(true);
  ASSERT_FALSE(HasFailure());
  EXPECT_GT(on.elided, 0U) << "at depth 32 the controller is still reading the queue when some updates come";
  EXPECT_LT(on.mmio_per_request, off.mmio_per_request);
}

}  // namespace
}  // namespace vfe::vmtest
