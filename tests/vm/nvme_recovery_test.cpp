// The NVMe driver recovers from faults: an FLR from another thread and bus mastering switched
// off (the controller then reports a fatal status) in the middle of verified I/O, over two queues
// on two workers, in each completion mode. Every request completes exactly once and successfully,
// every block reads back right, and the queues are the same objects throughout. A fault storm
// gives up after max_resets with the reason; a lost interrupt costs no reset; a media error on one
// block fails that request only, after its retries; a stalled command is aborted, then reset.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;
using std::chrono::milliseconds;

constexpr std::size_t kReqs = 1024;
constexpr std::uint64_t kLen = (kScratchEnd - kScratchBegin) / kReqs;  // 16 KiB each, the whole band
constexpr std::uint32_t kDepth = 64;
// Data buffers of one hugepage each: physically contiguous without an IOMMU too.
constexpr std::uint64_t kChunk = 2 * kMiB;
constexpr std::size_t kPerChunk = kChunk / kLen;

nvme::ControllerOptions recovering(std::uint32_t max_resets = 3) {
  nvme::ControllerOptions opts;
  opts.io_queues = 2;
  opts.watchdog_period = milliseconds(20);
  opts.io_timeout = milliseconds(2000);
  opts.max_resets = max_resets;
  return opts;
}

// Two workers, a queue on each, and DMA buffers that hold every request's data.
struct Rig {
  std::unique_ptr<nvme::Controller> ctrl;
  std::vector<std::unique_ptr<engine::Worker>> workers;
  std::vector<dma::DmaBuffer> bufs;
  std::vector<nvme::DataSegment> segs;                 // request k's data: segs[k]
  std::vector<std::unique_ptr<WaitableRequest>> reqs;  // before the queues: they go first
  std::vector<std::unique_ptr<nvme::IoQueue>> queues;

  ~Rig() {
    queues.clear();  // completes what is left before the requests and their buffers go
    reqs.clear();
    bufs.clear();
  }
  // Request k's data.
  [[nodiscard]] std::uint8_t* data(std::size_t k) const {
    return bufs[k / kPerChunk].as<std::uint8_t>() + (k % kPerChunk) * kLen;
  }
  [[nodiscard]] nvme::DataSegment segment(std::size_t k) const {
    return {bufs[k / kPerChunk].iova_at((k % kPerChunk) * kLen), kLen};
  }
};

Result<void> make_rig(Rig& r, engine::CompletionMode mode, const nvme::ControllerOptions& opts) {
  VFE_TRY_ASSIGN(r.ctrl, open_nvme(0, opts));
  for (int i = 0; i < 2; ++i) {
    VFE_TRY_ASSIGN(auto w, start_worker(engine::worker_mode_for(mode)));
    r.workers.push_back(std::move(w));
  }
  for (std::size_t i = 0; i < kReqs / kPerChunk; ++i) {
    VFE_TRY_ASSIGN(auto buf, dma::DmaBuffer::allocate(r.ctrl->dma_space(), kChunk));
    r.bufs.push_back(std::move(buf));
  }
  for (std::size_t k = 0; k < kReqs; ++k) {
    r.segs.push_back(r.segment(k));
  }
  for (auto& w : r.workers) {
    VFE_TRY_ASSIGN(auto q, r.ctrl->create_io_queue(*w, {.entries = kDepth + 1, .completion = mode}));
    r.queues.push_back(std::move(q));
  }
  return ok();
}

// Where a pass goes: `count` requests of kLen bytes from byte `begin` of namespace `nsid`.
struct Band {
  std::uint32_t nsid = 1;
  std::uint64_t begin = kScratchBegin;
  std::size_t count = kReqs;
};

// One pass over a band (by default the scratch band): request k writes (or reads) its own 16 KiB.
// `fault` runs on this thread once request `fault_after` has completed. Every request must
// succeed, once.
void run_pass(Rig& r, IoOpcode op, const std::function<void()>& fault, std::size_t fault_after, Band band = {}) {
  r.reqs.clear();
  for (std::size_t k = 0; k < band.count; ++k) {
    auto& w = *r.workers[k % 2];
    r.reqs.push_back(std::make_unique<WaitableRequest>(&w, op, (band.begin + k * kLen) / kBlock, kLen / kBlock,
                                                       std::span<const nvme::DataSegment>(&r.segs[k], 1)));
    r.reqs.back()->nsid = band.nsid;
  }
  for (std::size_t k = 0; k < band.count; ++k) {
    int rc;
    while ((rc = r.queues[k % 2]->submit(*r.reqs[k])) == -EAGAIN) {
      std::this_thread::yield();
    }
    ASSERT_EQ(rc, 0) << "request " << k;
    if (fault && k == fault_after + kDepth) {
      ASSERT_NE(r.reqs[fault_after]->wait(), 1);
      fault();
    }
  }
  for (std::size_t k = 0; k < band.count; ++k) {
    EXPECT_EQ(r.reqs[k]->wait(milliseconds(60'000)), 0) << "request " << k << ": " << nvme::to_string(r.reqs[k]->status);
  }
  std::this_thread::sleep_for(milliseconds(100));  // would a late duplicate show?
  for (const auto& q : r.reqs) {
    EXPECT_EQ(q->completions.load(), 1);
    EXPECT_TRUE(q->on_worker);
  }
}

class NvmeRecovery : public ::testing::TestWithParam<std::tuple<Fault, engine::CompletionMode>> {};

TEST_P(NvmeRecovery, AFaultMidIoIsRecoveredByAResetAndNothingIsLostOrCompletedTwice) {
  const auto [fault, mode] = GetParam();
  Rig r;
  ASSERT_NO_FATAL_FAILURE(VFE_ASSERT_OK(make_rig(r, mode, recovering())));
  auto* const first_queue = r.queues[0].get();
  for (std::size_t k = 0; k < kReqs; ++k) {
    fill_pattern(r.data(k), 0, kScratchBegin + k * kLen, kLen);
  }
  ASSERT_NO_FATAL_FAILURE(run_pass(r, IoOpcode::write, [&] { inject_fault(*r.ctrl, fault); }, 100));
  EXPECT_GE(r.ctrl->stats().resets.load(), 1U) << "the fault came after every write had finished; nothing was tested";
  EXPECT_EQ(r.ctrl->state(), nvme::ControllerState::running) << r.ctrl->failure();
  std::uint64_t retries = 0;
  for (const auto& q : r.queues) {
    retries += q->stats().retries.load();
  }
  std::printf("recovery: %s, %s completion: %llu reset(s), %llu request(s) sent again\n",
              to_string(fault), engine::to_string(mode),
              static_cast<unsigned long long>(r.ctrl->stats().resets.load()),
              static_cast<unsigned long long>(retries));
  for (const auto& b : r.bufs) {
    std::memset(b.data(), 0, kChunk);
  }
  ASSERT_NO_FATAL_FAILURE(run_pass(r, IoOpcode::read, nullptr, 0));
  for (std::size_t k = 0; k < kReqs; ++k) {
    EXPECT_EQ(first_mismatch(r.data(k), 0, kScratchBegin + k * kLen, kLen), ~0ULL)
        << "block range of request " << k;
  }
  EXPECT_EQ(r.queues[0].get(), first_queue);
}

INSTANTIATE_TEST_SUITE_P(
    FaultsAndModes, NvmeRecovery,
    ::testing::Combine(::testing::Values(Fault::flr, Fault::bus_master_off),
                       ::testing::Values(engine::CompletionMode::polling, engine::CompletionMode::interrupt,
                                         engine::CompletionMode::adaptive)),
    [](const auto& p) {
      return std::string(std::get<0>(p.param) == Fault::flr ? "Flr_" : "BusMasterOff_") +
             engine::to_string(std::get<1>(p.param));
    });

// A stalled command (tests/vm/run.sh holds namespace 3's requests for `ms` on the host): after
// io_timeout (2 s) the driver aborts the oldest, and resets the controller when it is still late
// one io_timeout after that (about 4 s). A 3 s stall ends before the reset (whether the
// controller took the Abort or refused it, as QEMU 7.2's does), a second from each edge; a 7 s
// stall needs it: QEMU's reset then waits for the held requests, so the host's timer, not the
// driver, ends the stall, and the driver's reset goes on from there. Either way every request completes once, successfully, and the data is right.
enum class Stall { short_one, long_one };

class NvmeStall : public ::testing::TestWithParam<std::tuple<Stall, engine::CompletionMode>> {};

TEST_P(NvmeStall, AStalledCommandIsAbortedOrResetAndNothingIsLostOrCompletedTwice) {
  const auto [stall, mode] = GetParam();
  nvme::ControllerOptions opts = recovering();
  opts.io_timeout = milliseconds(2000);
  Rig r;
  ASSERT_NO_FATAL_FAILURE(VFE_ASSERT_OK(make_rig(r, mode, opts)));
  const nvme::NamespaceInfo* ns = r.ctrl->find_namespace(kStallNsid);
  ASSERT_NE(ns, nullptr) << "the rig's stalling namespace is missing (tests/vm/run.sh)";
  ASSERT_EQ(ns->size_bytes(), kStallNsBytes);
  const Band band{.nsid = kStallNsid, .begin = 0, .count = kStallNsBytes / kLen};
  for (std::size_t k = 0; k < band.count; ++k) {
    fill_pattern(r.data(k), 3, k * kLen, kLen);
  }
  std::printf("VFE-STALL %d\n", stall == Stall::short_one ? 3000 : 7000);  // the host's watcher reads it
  std::fflush(stdout);
  // Writes over and over until one was held past io_timeout (the host pauses within moments).
  const auto give_up = std::chrono::steady_clock::now() + milliseconds(30'000);
  while (r.ctrl->stats().timeouts.load() == 0 && std::chrono::steady_clock::now() < give_up) {
    ASSERT_NO_FATAL_FAILURE(run_pass(r, IoOpcode::write, nullptr, 0, band));
  }
  const nvme::ControllerStats& st = r.ctrl->stats();
  ASSERT_GE(st.timeouts.load(), 1U) << "no command was held for 30 s: did the host get VFE-STALL (tests/vm/run.sh)?";
  EXPECT_EQ(r.ctrl->state(), nvme::ControllerState::running) << r.ctrl->failure();
  EXPECT_GE(st.aborts.load() + st.aborts_refused.load(), 1U) << "a late command is aborted before any reset";
  if (stall == Stall::short_one) {
    EXPECT_EQ(st.resets.load(), 0U) << "the stall ended within io_timeout of the Abort";
  } else {
    EXPECT_GE(st.resets.load(), 1U) << "a command late after its Abort resets the controller";
  }
  std::printf("stall: %s, %s completion: %llu Abort(s) accepted, %llu refused, %llu reset(s): %s\n",
              stall == Stall::short_one ? "3 s" : "7 s", engine::to_string(mode),
              static_cast<unsigned long long>(st.aborts.load()), static_cast<unsigned long long>(st.aborts_refused.load()),
              static_cast<unsigned long long>(st.resets.load()),
              st.resets.load() != 0 ? "the reset recovered" : "the command completed after its Abort");
  for (const auto& b : r.bufs) {
    std::memset(b.data(), 0, kChunk);
  }
  ASSERT_NO_FATAL_FAILURE(run_pass(r, IoOpcode::read, nullptr, 0, band));
  for (std::size_t k = 0; k < band.count; ++k) {
    EXPECT_EQ(first_mismatch(r.data(k), 3, k * kLen, kLen), ~0ULL) << "block range of request " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    FaultsAndModes, NvmeStall,
    ::testing::Combine(::testing::Values(Stall::short_one, Stall::long_one),
                       ::testing::Values(engine::CompletionMode::polling, engine::CompletionMode::interrupt,
                                         engine::CompletionMode::adaptive)),
    [](const auto& p) {
      return std::string(std::get<0>(p.param) == Stall::short_one ? "ShortStall_" : "LongStall_") +
             engine::to_string(std::get<1>(p.param));
    });

// Faults that keep coming: the driver resets max_resets times, then gives up with the reason, and
// what was in flight fails once.
TEST(NvmeRecoveryLimits, AResetStormGivesUpAfterMaxResetsWithTheReason) {
  Rig r;
  ASSERT_NO_FATAL_FAILURE(VFE_ASSERT_OK(make_rig(r, engine::CompletionMode::polling, recovering(2))));
  for (std::uint64_t n = 1; n <= 2; ++n) {
    ASSERT_TRUE(r.ctrl->device().reset());
    ASSERT_NO_FATAL_FAILURE(wait_for_reset(*r.ctrl, n));
  }
  auto& inflight = r.reqs;  // the rig's: they outlive the queues however the test ends
  for (std::size_t k = 0; k < 32; ++k) {
    inflight.push_back(std::make_unique<WaitableRequest>(r.workers[0].get(), IoOpcode::read,
                                                         (kScratchBegin + k * kLen) / kBlock, kLen / kBlock,
                                                         std::span<const nvme::DataSegment>(&r.segs[k], 1)));
    ASSERT_EQ(r.queues[0]->submit(*inflight.back()), 0);
  }
  ASSERT_TRUE(r.ctrl->device().reset());
  for (const auto& q : inflight) {
    EXPECT_NE(q->wait(), 1) << "a request never completed";
  }
  std::this_thread::sleep_for(milliseconds(100));
  for (const auto& q : inflight) {
    EXPECT_EQ(q->completions.load(), 1);
  }
  EXPECT_EQ(r.ctrl->state(), nvme::ControllerState::failed);
  EXPECT_EQ(r.ctrl->stats().resets.load(), 2U);
  EXPECT_NE(r.ctrl->failure().find("reset 2 times within 60000 ms"), std::string::npos) << r.ctrl->failure();
  EXPECT_NE(r.ctrl->failure().find("CSTS.RDY"), std::string::npos) << r.ctrl->failure();
  EXPECT_EQ(r.queues[0]->submit(*inflight[0]), -EIO) << "a controller failed for good refuses new requests";
}

// A command whose interrupt never arrives (its MSI-X vector is disconnected from the eventfd):
// the timeout check finds the completion in the queue before it counts the command as late, so
// the request succeeds and the controller is not reset.
TEST(NvmeRecoveryLimits, ALostInterruptCostsNoReset) {
  nvme::ControllerOptions opts = recovering();
  opts.io_timeout = milliseconds(300);
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0, opts));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::interrupt));
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), 4096));
  std::vector<std::unique_ptr<WaitableRequest>> reqs;  // before the queue: it goes first
  auto q = c->create_io_queue(*w, {.completion = engine::CompletionMode::interrupt});
  ASSERT_TRUE(q) << q.error().message();
  ASSERT_TRUE(c->irqs().set_attached((*q)->qid(), false));
  const nvme::DataSegment seg{buf.iova(), 4096};
  for (int k = 0; k < 8; ++k) {
    reqs.push_back(std::make_unique<WaitableRequest>(w.get(), IoOpcode::read, kScratchBegin / kBlock + 8U * k, 8,
                                                     std::span<const nvme::DataSegment>(&seg, 1)));
    ASSERT_EQ((*q)->submit(*reqs.back()), 0);
  }
  for (const auto& r : reqs) {
    EXPECT_EQ(r->wait(milliseconds(10'000)), 0);
  }
  std::this_thread::sleep_for(milliseconds(100));
  for (const auto& r : reqs) {
    EXPECT_EQ(r->completions.load(), 1);
  }
  EXPECT_GE((*q)->stats().watchdog_reaps.load(), 8U);
  EXPECT_EQ(c->stats().resets.load(), 0U);
  EXPECT_EQ(c->state(), nvme::ControllerState::running) << c->failure();
}

// A media error on one block (QEMU's blkdebug under namespace 2: Unrecovered Read Error, which has
// no Do Not Retry): the request that reads it goes again `retries` times and then fails with that
// status; the requests around it, in flight at the same time, succeed; the controller is not reset.
TEST(NvmeRecoveryLimits, AMediaErrorFailsOnlyThatRequestAfterItsRetries) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0, recovering()));
  const nvme::NamespaceInfo* ns = c->find_namespace(kFaultyNsid);
  ASSERT_NE(ns, nullptr) << "the rig's faulty namespace is missing (tests/vm/run.sh)";
  ASSERT_EQ(ns->size_bytes(), kFaultyNsBytes);
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), kChunk));
  constexpr std::uint64_t kIo = 4096, kBlocksPerIo = kIo / kBlock, kIos = kFaultyNsBytes / kIo;
  std::vector<nvme::DataSegment> segs;
  for (std::uint64_t k = 0; k < kIos; ++k) {
    segs.push_back({buf.iova_at(k * kIo), kIo});
  }
  std::vector<std::unique_ptr<WaitableRequest>> reqs;  // before the queue: it goes first
  auto q = c->create_io_queue(*w, {.entries = kDepth + 1});
  ASSERT_TRUE(q) << q.error().message();
  fill_pattern(buf.data(), 7, 0, kFaultyNsBytes);
  for (const IoOpcode op : {IoOpcode::write, IoOpcode::read}) {
    if (op == IoOpcode::read) {
      std::memset(buf.data(), 0, kFaultyNsBytes);
    }
    reqs.clear();
    for (std::uint64_t k = 0; k < kIos; ++k) {
      reqs.push_back(std::make_unique<WaitableRequest>(w.get(), op, k * kBlocksPerIo, kBlocksPerIo,
                                                       std::span<const nvme::DataSegment>(&segs[k], 1)));
      reqs.back()->nsid = kFaultyNsid;
      int rc;
      while ((rc = (*q)->submit(*reqs.back())) == -EAGAIN) {
        std::this_thread::yield();
      }
      ASSERT_EQ(rc, 0);
    }
    for (std::uint64_t k = 0; k < kIos; ++k) {
      const bool bad = op == IoOpcode::read && k == kFaultyLba / kBlocksPerIo;
      EXPECT_EQ(reqs[k]->wait(), bad ? -EIO : 0) << "request " << k << ": " << nvme::to_string(reqs[k]->status);
      if (bad) {
        EXPECT_TRUE(reqs[k]->status.is(nvme::sct::kMediaError, 0x81)) << nvme::to_string(reqs[k]->status);
        EXPECT_FALSE(reqs[k]->status.dnr);
      }
    }
  }
  std::this_thread::sleep_for(milliseconds(100));
  for (std::uint64_t k = 0; k < kIos; ++k) {
    EXPECT_EQ(reqs[k]->completions.load(), 1);
    if (k != kFaultyLba / kBlocksPerIo) {
      EXPECT_EQ(first_mismatch(buf.as<std::uint8_t>() + k * kIo, 7, k * kIo, kIo), ~0ULL) << "request " << k;
    }
  }
  EXPECT_EQ((*q)->stats().retries.load(), c->options().retries) << "only the bad read goes again, 5 times";
  EXPECT_EQ((*q)->stats().errors.load(), 1U);
  EXPECT_EQ(c->stats().resets.load(), 0U);
  EXPECT_EQ(c->state(), nvme::ControllerState::running) << c->failure();
}

}  // namespace
}  // namespace vfe::vmtest
