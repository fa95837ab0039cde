// The NVMe driver against QEMU's NVMe controllers, through the real kernel's VFIO: identify,
// data integrity over the whole namespace (checked again on the host from the disk images once
// the guest is off, see disk_check.cpp), and queue depth 128 on both controllers at once in
// every completion mode, each controller served by the worker of its NUMA node.
#include <gtest/gtest.h>
#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "base/units.hpp"
#include "engine/engine.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

std::uint64_t disk_bytes() {
  const char* v = std::getenv("VFE_VM_DISK_BYTES");
  return v != nullptr ? std::strtoull(v, nullptr, 10) : 0;
}

TEST(NvmeVm, IdentifiesBothControllersAndTheirNamespace) {
  ASSERT_EQ(disk_bytes(), kDiskBytes) << "the rig passes the image size as VFE_VM_DISK_BYTES";
  for (unsigned i : {0U, 1U}) {
    VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(i));
    EXPECT_EQ(c->identity().model, "QEMU NVMe Ctrl");
    EXPECT_EQ(c->identity().serial, "vfe-nvme-" + std::to_string(i)) << "serial from QEMU's command line";
    // Controller 0 also has the rig's faulty and stalling namespaces (tests/vm/run.sh), for the
    // recovery tests, vfe-ublk's, and four formatted with protection information.
    ASSERT_EQ(c->namespaces().size(), i == 0 ? 8U : 1U);
    if (i == 0) {
      EXPECT_EQ(c->namespaces()[1].nsid, kFaultyNsid);
      EXPECT_EQ(c->namespaces()[1].size_bytes(), kFaultyNsBytes);
      EXPECT_EQ(c->namespaces()[2].nsid, kStallNsid);
      EXPECT_EQ(c->namespaces()[2].size_bytes(), kStallNsBytes);
      EXPECT_EQ(c->namespaces()[3].nsid, kUblkNsid);
      EXPECT_EQ(c->namespaces()[7].nsid, kPi64Nsid);
    }
    const nvme::NamespaceInfo& ns = c->namespaces().front();
    EXPECT_EQ(ns.nsid, 1U);
    EXPECT_EQ(ns.block_size, kBlock);
    EXPECT_EQ(ns.size_bytes(), disk_bytes()) << "namespace size = disk image size";
    // QEMU's MDTS 7 with 4 KiB pages; controller 1 is given mdts=10 (tests/vm/run.sh).
    EXPECT_EQ(c->max_transfer_bytes(), i == 0 ? 512U * 1024 : 4U << 20);
    EXPECT_GE(c->io_queue_limit(), 1U);
    EXPECT_EQ(c->state(), nvme::ControllerState::running);
    EXPECT_TRUE(c->shutdown());
    EXPECT_EQ(c->state(), nvme::ControllerState::shut_down);
  }
}

// One region of the pattern, written through `q` and read back; buffers as the region says. Fails
// fatally (call it under ASSERT_NO_FATAL_FAILURE) when a buffer or an I/O fails.
void write_and_verify(nvme::Controller& c, nvme::IoQueue& q, engine::Worker& w, unsigned index,
                      const PatternRegion& r) {
  SCOPED_TRACE("region at " + std::to_string(r.offset) + ", " + std::to_string(r.length) + " bytes");
  const std::uint64_t seg_len = r.length / r.segments;
  std::vector<dma::DmaBuffer> bufs;
  std::vector<nvme::DataSegment> segs;
  for (unsigned s = 0; s < r.segments; ++s) {
    const std::uint64_t lead = s == 0 ? r.buffer_lead : 0;
    auto b = dma::DmaBuffer::allocate(c.dma_space(), align_up(lead + seg_len, 4096));
    ASSERT_TRUE(b) << b.error().message();
    fill_pattern(b->as<std::uint8_t>() + lead, index, r.offset + s * seg_len, seg_len);
    segs.push_back({b->iova_at(lead), seg_len});
    bufs.push_back(std::move(*b));
  }
  WaitableRequest wr(&w, IoOpcode::write, r.offset / kBlock, r.length / kBlock, segs);
  ASSERT_EQ(run_io(q, wr), 0) << nvme::to_string(wr.status);
  for (unsigned s = 0; s < r.segments; ++s) {
    std::memset(bufs[s].data(), 0, bufs[s].size());
  }
  WaitableRequest rd(&w, IoOpcode::read, wr.lba, wr.blocks, segs);
  ASSERT_EQ(run_io(q, rd), 0) << nvme::to_string(rd.status);
  EXPECT_TRUE(wr.on_worker && rd.on_worker);
  for (unsigned s = 0; s < r.segments; ++s) {
    const std::uint64_t lead = s == 0 ? r.buffer_lead : 0;
    EXPECT_EQ(first_mismatch(bufs[s].as<std::uint8_t>() + lead, index, r.offset + s * seg_len, seg_len), ~0ULL)
        << "segment " << s << " read back differs";
  }
}

// The patterns stay on the disks for the host to check after power-off (tests/vm/run_suite.sh).
TEST(NvmeVm, DataIntegrityAcrossTheNamespace) {
  for (unsigned i : {0U, 1U}) {
    VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(i));
    VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
    auto q = c->create_io_queue(*w, {.entries = 64, .completion = engine::CompletionMode::polling});
    ASSERT_TRUE(q) << q.error().message();
    for (const PatternRegion& r : kPatternRegions) {
      ASSERT_NO_FATAL_FAILURE(write_and_verify(*c, **q, *w, i, r));
    }
    WaitableRequest flush(w.get());
    flush.opcode = IoOpcode::flush;
    EXPECT_EQ(run_io(**q, flush), 0);
    const auto& st = (*q)->stats();
    EXPECT_EQ(st.requests.load(), 2 * kPatternRegions.size() + 1);
    if (i == 0) {  // controller 1's MDTS (4 MiB, tests/vm/run.sh) is above every region
      EXPECT_GT(st.commands.load(), st.requests.load()) << "transfers above MDTS were split";
    }
    EXPECT_EQ(st.errors.load(), 0U);
    q->reset();
    EXPECT_TRUE(c->shutdown()) << "data is on the medium before the guest powers off";
  }
}

// QEMU's controller has a volatile write cache (VWC bit 0), so FUA and flush matter: a write
// with FUA and a read with FUA round-trip the data; a flush with FUA is refused at submit.
TEST(NvmeVm, ForceUnitAccessAndTheVolatileWriteCache) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  EXPECT_TRUE(c->identity().has_volatile_write_cache());
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), 8192));
  auto q = c->create_io_queue(*w, {});
  ASSERT_TRUE(q) << q.error().message();
  const std::uint64_t at = kScratchBegin + 64 * 1024;
  fill_pattern(buf.data(), 3, at, 8192);
  const nvme::DataSegment whole{buf.iova(), 8192};
  WaitableRequest wr(w.get(), IoOpcode::write, at / kBlock, 16, {&whole, 1});
  wr.fua = true;
  ASSERT_EQ(run_io(**q, wr), 0) << nvme::to_string(wr.status);
  std::memset(buf.data(), 0, 8192);
  WaitableRequest rd(w.get(), IoOpcode::read, at / kBlock, 16, {&whole, 1});
  rd.fua = true;
  ASSERT_EQ(run_io(**q, rd), 0) << nvme::to_string(rd.status);
  EXPECT_EQ(first_mismatch(buf.data(), 3, at, 8192), ~0ULL);
  WaitableRequest flush(w.get(), IoOpcode::flush, 0, 0);
  flush.fua = true;
  EXPECT_EQ((*q)->submit(flush), -EINVAL) << "FUA means nothing to a flush";
  flush.fua = false;
  EXPECT_EQ(run_io(**q, flush), 0);
}

TEST(NvmeVm, WriteZeroesAndRequestsThatCannotBeDescribed) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  auto q = c->create_io_queue(*w, {});
  ASSERT_TRUE(q) << q.error().message();
  auto buf = dma::DmaBuffer::allocate(c->dma_space(), 8192);
  ASSERT_TRUE(buf);
  const std::uint64_t lba = kScratchBegin / kBlock;
  fill_pattern(buf->data(), 0, kScratchBegin, 8192);
  const nvme::DataSegment whole{buf->iova(), 8192};
  WaitableRequest wr(w.get(), IoOpcode::write, lba, 16, {&whole, 1});
  ASSERT_EQ(run_io(**q, wr), 0);
  WaitableRequest wz(w.get(), IoOpcode::write_zeroes, lba + 4, 8);
  ASSERT_EQ(run_io(**q, wz), 0) << nvme::to_string(wz.status);
  std::memset(buf->data(), 0xee, 8192);
  WaitableRequest rd(w.get(), IoOpcode::read, lba, 16, {&whole, 1});
  ASSERT_EQ(run_io(**q, rd), 0);
  const auto* bytes = buf->as<std::uint8_t>();
  EXPECT_EQ(first_mismatch(bytes, 0, kScratchBegin, 2048), ~0ULL);
  for (int i = 2048; i < 6144; ++i) {
    ASSERT_EQ(bytes[i], 0) << "byte " << i << " was zeroed";
  }
  EXPECT_EQ(first_mismatch(bytes + 6144, 0, kScratchBegin + 6144, 2048), ~0ULL);

  // Refused at submit, before reaching the controller: size not blocks x 512, an empty segment
  // among the data (neither PRPs nor SGLs take one; a gap between segments alone goes by SGLs on
  // QEMU's controller, NvmeSglVm), zero blocks, an unknown namespace.
  const nvme::DataSegment odd[3] = {{buf->iova(), 512}, {buf->iova_at(2048), 0}, {buf->iova_at(1024), 512}};
  WaitableRequest bad(w.get(), IoOpcode::read, lba, 2, {odd, 1});
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "1 block of data for 2 blocks";
  bad.data = {odd, 3};
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "an empty segment";
  bad.blocks = 0;
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "zero blocks";
  bad.blocks = 1;
  bad.data = {odd, 1};
  bad.nsid = 7;
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "no namespace 7";
  EXPECT_EQ(bad.completions.load(), 0) << "a refused request never completes";
  EXPECT_EQ((*q)->stats().errors.load(), 0U);
}

// Dataset Management, Attribute Deallocate (NVMe 1.4 §6.7), two ranges in one command: the
// blocks in them read as zeroes, as the namespace says (DLFEAT; the rig's images take discards),
// the blocks between and around are untouched.
TEST(NvmeVm, DeallocateTwoRangesInOneCommand) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  ASSERT_TRUE(c->identity().supports_dataset_management()) << "QEMU's controller has DSM (ONCS bit 2)";
  const nvme::NamespaceInfo* ns = c->find_namespace(1);
  ASSERT_NE(ns, nullptr);
  ASSERT_TRUE(ns->deallocated_reads_zero()) << "QEMU 7.2's namespaces say DLFEAT 1; DLFEAT is " << int{ns->dlfeat};
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  auto q = c->create_io_queue(*w, {});
  ASSERT_TRUE(q) << q.error().message();
  constexpr std::uint64_t kLen = 64 * 1024;  // 128 blocks from the scratch band's start
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), kLen));
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer list, dma::DmaBuffer::allocate(c->dma_space(), 4096));
  const std::uint64_t lba = kScratchBegin / kBlock;
  fill_pattern(buf.data(), 0, kScratchBegin, kLen);
  const nvme::DataSegment whole{buf.iova(), kLen};
  WaitableRequest wr(w.get(), IoOpcode::write, lba, kLen / kBlock, {&whole, 1});
  ASSERT_EQ(run_io(**q, wr), 0);
  auto* ranges = list.as<nvme::DsmRange>();
  ranges[0] = {.attributes = 0, .blocks = 16, .lba = lba + 16};  // bytes 8 KiB to 16 KiB
  ranges[1] = {.attributes = 0, .blocks = 32, .lba = lba + 64};  // bytes 32 KiB to 48 KiB
  const nvme::DataSegment two{list.iova(), 2 * sizeof(nvme::DsmRange)};
  WaitableRequest dsm(w.get(), IoOpcode::dataset_management, 0, 0, {&two, 1});
  ASSERT_EQ(run_io(**q, dsm), 0) << nvme::to_string(dsm.status);
  std::memset(buf.data(), 0xee, kLen);
  WaitableRequest rd(w.get(), IoOpcode::read, lba, kLen / kBlock, {&whole, 1});
  ASSERT_EQ(run_io(**q, rd), 0);
  const auto* bytes = buf.as<std::uint8_t>();
  for (const auto& [from, to] : {std::pair<std::uint64_t, std::uint64_t>{0, 8192}, {16384, 32768}, {49152, kLen}}) {
    EXPECT_EQ(first_mismatch(bytes + from, 0, kScratchBegin + from, to - from), ~0ULL) << "outside the ranges";
  }
  for (const auto& [from, to] : {std::pair<std::uint64_t, std::uint64_t>{8192, 16384}, {32768, 49152}}) {
    for (std::uint64_t i = from; i < to; ++i) {
      ASSERT_EQ(bytes[i], 0) << "byte " << i << " was deallocated, and DLFEAT says it reads as zero";
    }
  }
}

// Range lists a Dataset Management command cannot carry are refused at submit: no ranges, a size
// that is not whole ranges, more than 256, blocks or FUA set.
TEST(NvmeVm, DeallocateRangeListsThatCannotBeSentAreRefused) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  auto q = c->create_io_queue(*w, {});
  ASSERT_TRUE(q) << q.error().message();
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer list, dma::DmaBuffer::allocate(c->dma_space(), 4096));
  const nvme::DataSegment two{list.iova(), 2 * sizeof(nvme::DsmRange)};
  WaitableRequest bad(w.get(), IoOpcode::dataset_management, 0, 0, {});
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "no ranges";
  const nvme::DataSegment ragged{list.iova(), 24};
  bad.data = {&ragged, 1};
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "a range and a half";
  VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer big, dma::DmaBuffer::allocate(c->dma_space(), 8192));
  const nvme::DataSegment too_many{big.iova(), (nvme::kMaxDsmRanges + 1) * sizeof(nvme::DsmRange)};
  bad.data = {&too_many, 1};
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "257 ranges";
  bad.data = {&two, 1};
  bad.blocks = 1;
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "blocks are in the ranges";
  bad.blocks = 0;
  bad.fua = true;
  EXPECT_EQ((*q)->submit(bad), -EINVAL) << "FUA means nothing to a deallocate";
  EXPECT_EQ(bad.completions.load(), 0);
}

// Queue depth 128 on both controllers at once: 512 writes of 4 KiB per controller, then reads.
// Members in teardown order: the queue goes first (completing what is still in flight into the
// requests and buffer), then the requests, the buffer, and the controller.
struct Lane {
  std::unique_ptr<nvme::Controller> ctrl;
  engine::Worker* worker = nullptr;
  std::optional<dma::DmaBuffer> buf;
  std::vector<nvme::DataSegment> segs;
  std::vector<std::unique_ptr<WaitableRequest>> reqs;
  std::unique_ptr<nvme::IoQueue> queue;
  std::size_t next = 0;
};

constexpr std::size_t kRequests = 512, kDepth = 128, kIoBytes = 4096;

void start_pass(Lane& l, IoOpcode op) {
  l.next = 0;
  for (std::size_t k = 0; k < kRequests; ++k) {
    auto r = std::make_unique<WaitableRequest>(l.worker);
    r->opcode = op;
    r->lba = (kScratchBegin + k * kIoBytes * 3) / kBlock;  // spread over the scratch band
    r->blocks = kIoBytes / kBlock;
    r->data = {&l.segs[k], 1};
    l.reqs[k] = std::move(r);
  }
}

// Submits while fewer than kDepth of the lane's requests are in flight; true when all are done.
bool pump(Lane& l) {
  std::size_t done = 0;
  for (std::size_t k = 0; k < l.next; ++k) {
    done += l.reqs[k]->completions.load(std::memory_order_acquire) != 0 ? 1 : 0;
  }
  while (l.next < kRequests && l.next - done < kDepth) {
    WaitableRequest& r = *l.reqs[l.next];
    const int rc = l.queue->submit(r);
    if (rc == -EAGAIN) {
      break;
    }
    if (rc != 0) {  // refused: count it as completed with that error (and fail below)
      r.result = rc;
      r.completions = 1;
    }
    ++l.next;
  }
  return done == kRequests;
}

void run_pass(std::vector<Lane>& lanes, IoOpcode op) {
  for (auto& l : lanes) {
    start_pass(l, op);
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (bool all = false; !all;) {
    all = true;
    for (auto& l : lanes) {
      all = pump(l) && all;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), end) << "requests did not complete";
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  for (auto& l : lanes) {
    for (const auto& r : l.reqs) {
      EXPECT_EQ(r->completions.load(), 1);
      EXPECT_EQ(r->result.load(), 0) << nvme::to_string(r->status);
      EXPECT_TRUE(r->on_worker) << "completed on the queue's worker";
    }
  }
}

class NvmeQueueDepth : public ::testing::TestWithParam<engine::CompletionMode> {};

TEST_P(NvmeQueueDepth, BothControllersAtDepth128OnTheirNodesWorkers) {
  const engine::CompletionMode completion = GetParam();
  engine::EngineOptions eo;
  eo.mode = engine::worker_mode_for(completion);
  auto eng = engine::Engine::create(eo);
  ASSERT_TRUE(eng) << eng.error().message();
  std::vector<Lane> lanes(2);
  for (unsigned i : {0U, 1U}) {
    Lane& l = lanes[i];
    VFE_ASSERT_OK_AND_ASSIGN(l.ctrl, open_nvme(i));
    auto w = (*eng)->worker_for_device(devices_of("nvme").at(i));
    ASSERT_TRUE(w) << w.error().message();
    l.worker = *w;
    const int node = (*eng)->node_of(*l.worker);
    EXPECT_EQ(node, static_cast<int>(i)) << "controller " << i << " sits on node " << i;
    auto q = l.ctrl->create_io_queue(*l.worker, {.entries = kDepth + 1, .completion = completion, .numa_node = node});
    ASSERT_TRUE(q) << q.error().message();
    l.queue = std::move(*q);
    auto b = dma::DmaBuffer::allocate(l.ctrl->dma_space(), kRequests * kIoBytes, {.hugepages = true, .numa_node = node});
    ASSERT_TRUE(b) << b.error().message();
    l.buf.emplace(std::move(*b));
    l.reqs.resize(kRequests);
    for (std::size_t k = 0; k < kRequests; ++k) {
      const std::uint64_t disk = kScratchBegin + k * kIoBytes * 3;
      fill_pattern(l.buf->as<std::uint8_t>() + k * kIoBytes, i, disk, kIoBytes);
      l.segs.push_back({l.buf->iova_at(k * kIoBytes), kIoBytes});
    }
  }
  int cpu = -1;
  ASSERT_TRUE(lanes[1].worker->run_sync([&] { cpu = sched_getcpu(); }));
  EXPECT_EQ(cpu, 1) << "node 1's worker runs on node 1's CPU";

  // Under ASSERT_NO_FATAL_FAILURE: after a pass that timed out, requests are still in flight, and
  // the next pass must not replace them (the lanes' queues complete them as the test unwinds).
  ASSERT_NO_FATAL_FAILURE(run_pass(lanes, IoOpcode::write));
  for (auto& l : lanes) {
    std::memset(l.buf->data(), 0, l.buf->size());
  }
  ASSERT_NO_FATAL_FAILURE(run_pass(lanes, IoOpcode::read));
  for (unsigned i : {0U, 1U}) {
    Lane& l = lanes[i];
    for (std::size_t k = 0; k < kRequests; ++k) {
      ASSERT_EQ(first_mismatch(l.buf->as<std::uint8_t>() + k * kIoBytes, i, kScratchBegin + k * kIoBytes * 3, kIoBytes),
                ~0ULL) << "controller " << i << " request " << k;
    }
    const auto& st = l.queue->stats();
    EXPECT_EQ(st.requests.load(), 2 * kRequests);
    EXPECT_LT(st.sq_doorbells.load(), st.commands.load()) << "doorbells are batched";
    l.queue.reset();
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, NvmeQueueDepth,
                         ::testing::Values(engine::CompletionMode::polling, engine::CompletionMode::interrupt,
                                           engine::CompletionMode::adaptive),
                         [](const auto& p) { return std::string(engine::to_string(p.param)); });

}  // namespace
}  // namespace vfe::vmtest
