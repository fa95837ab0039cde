// The NVMe driver when things go wrong: a read past the namespace end, an FLR during I/O, a
// command that never completes (its interrupt goes nowhere), and a process killed mid-I/O. In
// each, every request completes exactly once, and the controller can be used again.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "mmio/config_space.hpp"
#include "mmio/pci_caps.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

// Controller options for fault tests: the watchdog looks every 20 ms.
nvme::ControllerOptions quick_watchdog() {
  nvme::ControllerOptions opts;
  opts.io_queues = 2;
  opts.watchdog_period = std::chrono::milliseconds(20);
  return opts;
}

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

// Many large writes in flight; an FLR underneath. Each request completes once, some with an
// error; the driver notices (CSTS.RDY fell) and fails the rest; a new controller object works.
TEST(NvmeFaults, FlrDuringIoFailsEveryOutstandingRequestOnceAndTheControllerComesBack) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0, quick_watchdog()));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  // Declared before the queue, so that an early ASSERT destroys the queue first (which completes
  // what is in flight) and only then the requests and their buffer; in an optional, so that the
  // buffer can go before the controller.
  VFE_ASSERT_OK_AND_ASSIGN(std::optional<dma::DmaBuffer> buf,
                           dma::DmaBuffer::allocate(c->dma_space(), 2U << 20));
  std::vector<std::unique_ptr<WaitableRequest>> reqs;
  auto q = c->create_io_queue(*w, {.entries = 129});
  ASSERT_TRUE(q) << q.error().message();
  constexpr std::size_t kReqs = 600;
  constexpr std::uint64_t kLen = 64 * 1024;
  const nvme::DataSegment seg{buf->iova(), kLen};
  for (std::size_t k = 0; k < kReqs; ++k) {
    auto r = std::make_unique<WaitableRequest>(w.get());
    r->opcode = IoOpcode::write;
    r->lba = (kScratchBegin + (k % 128) * kLen) / kBlock;
    r->blocks = kLen / kBlock;
    r->data = {&seg, 1};
    ASSERT_EQ((*q)->submit(*r), 0);
    reqs.push_back(std::move(r));
  }
  // Let some finish, then reset the function under the rest.
  while (reqs[20]->completions.load() == 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  ASSERT_TRUE(c->device().reset());
  int ok = 0, failed = 0;
  for (const auto& r : reqs) {
    const int rc = r->wait();
    ASSERT_NE(rc, 1) << "a request never completed";
    (rc == 0 ? ok : failed) += 1;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // would a late duplicate show?
  for (const auto& r : reqs) {
    EXPECT_EQ(r->completions.load(), 1);
    EXPECT_TRUE(r->on_worker);
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(failed, 0) << "the FLR came after every write had finished; nothing was tested";
  EXPECT_EQ(c->state(), nvme::ControllerState::failed);
  EXPECT_NE(c->failure().find("CSTS.RDY"), std::string::npos) << c->failure();
  EXPECT_EQ((*q)->submit(*reqs[0]), -EIO) << "a failed controller refuses new requests";
  q->reset();
  buf.reset();  // a buffer goes before the controller whose DMA space it is in
  c.reset();
  VFE_ASSERT_OK_AND_ASSIGN(auto again, open_nvme(0));
  expect_controller_works(*again, *w, 0);
}

// A command whose completion never arrives (its MSI-X vector is disconnected from the eventfd):
// after io_timeout the controller is disabled and every request fails with ETIMEDOUT, once.
TEST(NvmeFaults, CommandsThatTimeOutFailOnceWithEtimedout) {
  nvme::ControllerOptions opts;
  opts.io_queues = 2;
  opts.io_timeout = std::chrono::milliseconds(300);
  opts.watchdog_period = std::chrono::milliseconds(50);
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0, opts));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::interrupt));
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), 4096));
  std::vector<std::unique_ptr<WaitableRequest>> reqs;  // before the queue, as above
  auto q = c->create_io_queue(*w, {.completion = engine::CompletionMode::interrupt});
  ASSERT_TRUE(q) << q.error().message();
  ASSERT_TRUE(c->irqs().set_attached((*q)->qid(), false));
  const nvme::DataSegment seg{buf.iova(), 4096};
  for (int k = 0; k < 8; ++k) {
    auto r = std::make_unique<WaitableRequest>(w.get());
    r->opcode = IoOpcode::read;
    r->lba = kScratchBegin / kBlock + 8 * static_cast<unsigned>(k);
    r->blocks = 8;
    r->data = {&seg, 1};
    ASSERT_EQ((*q)->submit(*r), 0);
    reqs.push_back(std::move(r));
  }
  for (const auto& r : reqs) {
    EXPECT_EQ(r->wait(std::chrono::milliseconds(10'000)), -ETIMEDOUT);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (const auto& r : reqs) {
    EXPECT_EQ(r->completions.load(), 1);
  }
  EXPECT_EQ(c->state(), nvme::ControllerState::failed);
  EXPECT_NE(c->failure().find("did not complete within 300 ms"), std::string::npos) << c->failure();
}

// With bus mastering off, QEMU's controller cannot fetch the command and sets CSTS.CFS: the
// driver reports the fatal status and fails the request; a new bring-up recovers.
TEST(NvmeFaults, FatalStatusIsReportedAndFailsTheRequests) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0, quick_watchdog()));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  auto q = c->create_io_queue(*w, {});
  ASSERT_TRUE(q) << q.error().message();
  VFE_ASSERT_OK_AND_ASSIGN(std::optional<dma::DmaBuffer> buf, dma::DmaBuffer::allocate(c->dma_space(), 4096));
  auto config = mmio::ConfigSpace::open(c->device());
  ASSERT_TRUE(config);
  const auto command = config->read16(mmio::pci::kCommand);
  ASSERT_TRUE(command);
  ASSERT_TRUE(config->write16(mmio::pci::kCommand, *command & ~mmio::pci::kCommandBusMaster));
  const nvme::DataSegment seg{buf->iova(), 4096};
  WaitableRequest rd(w.get(), IoOpcode::read, kScratchBegin / kBlock, 8, {&seg, 1});
  EXPECT_EQ(run_io(**q, rd), -EIO);
  EXPECT_EQ(rd.completions.load(), 1);
  EXPECT_EQ(c->state(), nvme::ControllerState::failed);
  EXPECT_NE(c->failure().find("fatal status (CSTS.CFS)"), std::string::npos) << c->failure();
  q->reset();
  buf.reset();
  c.reset();
  VFE_ASSERT_OK_AND_ASSIGN(auto again, open_nvme(0));
  expect_controller_works(*again, *w, 0);
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

}  // namespace
}  // namespace vfe::vmtest
