// The NVMe driver when things go wrong: a read past the namespace end, a process killed mid-I/O,
// and a queue closed while other threads submit. In each, every request completes exactly once,
// and the controller can be used again.
// Faults the driver recovers from (an FLR, a fatal status, a lost interrupt) are in
// nvme_recovery_test.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

// A short write then read of the scratch band: the controller serves I/O.
void expect_controller_works(nvme::Controller& c, engine::Worker& w, unsigned index) {
  auto q = c.create_io_queue(w, {});
  ASSERT_TRUE(q) << q.error().message();
  auto buf = dma::DmaBuffer::allocate(c.dma_space(), 16384);
  ASSERT_TRUE(buf);
  const std::uint64_t at = kScratchEnd - 16384;
  fill_pattern(buf->data(), index, at, 16384);
  const nvme::DataSegment seg{buf->iova(), 16384};
  WaitableRequest wr(&w, IoOpcode::write, at / kBlock, 32, {&seg, 1});
  ASSERT_EQ(run_io(**q, wr), 0) << nvme::to_string(wr.status);
  std::memset(buf->data(), 0, 16384);
  WaitableRequest rd(&w, IoOpcode::read, wr.lba, 32, {&seg, 1});
  ASSERT_EQ(run_io(**q, rd), 0) << nvme::to_string(rd.status);
  EXPECT_EQ(first_mismatch(buf->data(), index, at, 16384), ~0ULL);
}

TEST(NvmeFaults, ReadPastTheEndIsLbaOutOfRangeAndNothingElseFails) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  auto q = c->create_io_queue(*w, {});
  ASSERT_TRUE(q) << q.error().message();
  auto buf = dma::DmaBuffer::allocate(c->dma_space(), 4096);
  ASSERT_TRUE(buf);
  const nvme::DataSegment seg{buf->iova(), 1024};
  const std::uint64_t end = c->namespaces().front().size_blocks;
  for (const std::uint64_t lba : {end, end - 1, end + 1000}) {
    WaitableRequest rd(w.get(), IoOpcode::read, lba, 2, {&seg, 1});
    EXPECT_EQ(run_io(**q, rd), -ERANGE) << "lba " << lba;
    EXPECT_TRUE(rd.status.is(nvme::sct::kGeneric, nvme::sc::kLbaOutOfRange)) << nvme::to_string(rd.status);
    EXPECT_NE(nvme::to_string(rd.status).find("LBA Out of Range"), std::string::npos);
  }
  WaitableRequest ok_read(w.get(), IoOpcode::read, end - 2, 2, {&seg, 1});
  EXPECT_EQ(run_io(**q, ok_read), 0) << "the last two blocks are in range";
  EXPECT_EQ((*q)->stats().errors.load(), 3U);
  EXPECT_EQ(c->state(), nvme::ControllerState::running);
}

// The child has no test to fail: it says why on stderr and exits, and the parent fails on the
// byte that never comes.
[[noreturn]] void child_fails(const Error& e) {
  std::fprintf(stderr, "child: %s\n", e.message().c_str());
  std::_Exit(3);
}

// The child: I/O on controller 0 until it is killed. It says "running" once I/O flows.
[[noreturn]] void child_io(int ready_fd) {
  auto c = open_nvme(0);
  if (!c) {
    child_fails(c.error());
  }
  auto w = start_worker(engine::WorkerMode::polling);
  if (!w) {
    child_fails(w.error());
  }
  auto q = (*c)->create_io_queue(**w, {});
  if (!q) {
    child_fails(q.error());
  }
  auto buf = dma::DmaBuffer::allocate((*c)->dma_space(), 1U << 20);
  if (!buf) {
    child_fails(buf.error());
  }
  const nvme::DataSegment seg{buf->iova(), 64 * 1024};
  std::vector<std::unique_ptr<WaitableRequest>> reqs;
  for (int k = 0; k < 64; ++k) {
    reqs.push_back(std::make_unique<WaitableRequest>(w->get()));
  }
  for (std::uint64_t round = 0;; ++round) {
    for (std::size_t k = 0; k < reqs.size(); ++k) {
      auto& r = *reqs[k];
      r.completions = 0;
      r.opcode = IoOpcode::write;
      r.lba = (kScratchBegin + k * 64 * 1024) / kBlock;
      r.blocks = 128;
      r.data = {&seg, 1};
      while ((*q)->submit(r) == -EAGAIN) {
      }
    }
    for (auto& r : reqs) {
      r->wait();
    }
    if (round == 1 && ::write(ready_fd, "r", 1) != 1) {
      std::_Exit(5);
    }
  }
}

TEST(NvmeFaults, ProcessKilledMidIoThenANewOneUsesTheController) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipefd[0]);
    child_io(pipefd[1]);
  }
  ::close(pipefd[1]);
  char byte = 0;
  ASSERT_EQ(::read(pipefd[0], &byte, 1), 1) << "the child never got I/O going";
  ::close(pipefd[0]);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));  // usable after its user died mid-I/O
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  expect_controller_works(*c, *w, 0);
}

// Four threads submit reads as fast as they can (each request again once it completed) while
// the test thread closes the queue: each submit is either taken, and its request completes once
// and successfully, or refused with -ECANCELED; none is taken once close() returned; then the
// queue is destroyed with nothing left behind.
TEST(NvmeFaults, CloseWhileOtherThreadsSubmitTakesEachRequestOrRefusesIt) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), 4096));
  const nvme::DataSegment seg{buf.iova(), 4096};
  constexpr int kThreads = 4, kPerThread = 16;
  std::vector<std::unique_ptr<WaitableRequest>> reqs;  // before the queue: it goes first
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    reqs.push_back(std::make_unique<WaitableRequest>(w.get(), IoOpcode::read, kScratchBegin / kBlock, 8,
                                                     std::span<const nvme::DataSegment>(&seg, 1)));
  }
  VFE_ASSERT_OK_AND_ASSIGN(auto q, c->create_io_queue(*w, {.entries = 33}));
  std::atomic<bool> closed{false};
  std::atomic<std::uint64_t> taken{0}, taken_after_close{0}, failed{0}, odd{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      std::vector<bool> sent(kPerThread, false);
      for (int i = 0;; i = (i + 1) % kPerThread) {
        WaitableRequest& r = *reqs[t * kPerThread + i];
        if (sent[i]) {
          if (r.completions.load(std::memory_order_acquire) == 0) {
            continue;  // still in flight
          }
          failed += r.result.load() != 0 ? 1 : 0;
          r.completions.store(0);
        }
        const bool after = closed.load(std::memory_order_acquire);
        const int rc = q->submit(r);
        if (rc == -ECANCELED) {
          return;
        }
        sent[i] = rc == 0;
        taken += rc == 0 ? 1 : 0;
        taken_after_close += rc == 0 && after ? 1 : 0;
        odd += rc != 0 && rc != -EAGAIN ? 1 : 0;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  q->close();
  closed.store(true, std::memory_order_release);
  for (auto& s : submitters) {
    s.join();
  }
  EXPECT_EQ(taken_after_close.load(), 0U) << "a submit was taken after close() returned";
  EXPECT_EQ(odd.load(), 0U) << "a submit failed with something other than -EAGAIN or -ECANCELED";
  EXPECT_EQ(q->submit(*reqs[0]), -ECANCELED);
  // What was taken completes as usual, each once.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (q->stats().requests.load() < taken.load() && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // would a late duplicate show?
  EXPECT_EQ(q->stats().requests.load(), taken.load());
  EXPECT_EQ(q->stats().errors.load(), 0U);
  EXPECT_EQ(failed.load(), 0U);
  EXPECT_GT(taken.load(), static_cast<std::uint64_t>(kThreads * kPerThread)) << "the threads hardly submitted";
  std::printf("close: %llu requests taken and completed before the queue closed\n",
              static_cast<unsigned long long>(taken.load()));
}

}  // namespace
}  // namespace vfe::vmtest
