// A soak in the QEMU guest (tests/vm/guest/soak_check.sh sets VFE_VM_SOAK_SECONDS; without it the
// test skips, so the ordinary run stays short). For that many seconds both NVMe controllers keep
// 128 requests in flight in adaptive mode, each on the worker of its NUMA node, writing and reading
// back verified data inside the scratch band, while the two e1000e exchange sequenced frames on
// the first node's worker. Then every slot is read back once more. Every request must complete
// exactly once without error, none may be lost, and the loopback must be clean with the devices'
// counters agreeing. Every kFaultEvery a fault hits one of the controllers, from another thread
// (an FLR, or bus mastering switched off), which the driver must recover from by a reset without
// failing or losing a request.
//
// Each controller has 128 slots, one request each: slot k owns 128 KiB of the band and 72 KiB of
// DMA memory. A slot alternates writing generation g (a pattern of controller, disk offset and g,
// 4 KiB to 64 KiB, mostly unaligned to pages in memory) and reading it back into a poisoned
// buffer, then moves on to g + 1 at another place and size within its 128 KiB.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "drivers/e1000e/loopback.hpp"
#include "drivers/e1000e/nic.hpp"
#include "engine/engine.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using Clock = std::chrono::steady_clock;
using nvme::IoOpcode;

constexpr std::size_t kDepth = 128;  // requests in flight per controller: one per slot
constexpr std::uint64_t kSlotDisk = (kScratchEnd - kScratchBegin) / kDepth;  // 128 KiB of the band
constexpr std::uint64_t kMaxData = 64 * 1024;
constexpr std::uint64_t kMaxLead = 7 * kBlock;        // where data starts in its slot's memory
constexpr std::uint64_t kSlotBuffer = 72 * 1024;      // the largest lead plus the largest data
constexpr std::uint64_t kChunk = 2 * kMiB;            // one hugepage: contiguous without an IOMMU too
constexpr std::size_t kSlotsPerChunk = kChunk / kSlotBuffer;
constexpr unsigned kGenShift = 32;                    // the generation rides above the disk offset
// What a read must overwrite, and only there. Not one byte repeated, so the compiler does not
// make its loop a memset: glibc's memset (rep stosb) costs 300 us per 72 KiB under TCG.
constexpr std::uint64_t kPoison = 0x5046f1a5c0ffee77ULL;
constexpr auto kProgressEvery = std::chrono::seconds(10);
constexpr auto kLostAfter = std::chrono::seconds(60);  // beyond the controller's 30 s I/O timeout
constexpr int kMaxReports = 10;                        // failures shown per controller
constexpr auto kFaultEvery = std::chrono::milliseconds(5000);
static_assert(kMaxLead + kMaxData <= kSlotBuffer);
static_assert(127 * kBlock + kMaxData <= kSlotDisk, "the farthest extent stays in its slot");
static_assert(kScratchEnd < (1ULL << kGenShift));

/// Seconds from VFE_VM_SOAK_SECONDS: nullopt when unset, 0 when not a positive number.
std::optional<unsigned long> soak_seconds() {
  const char* v = std::getenv("VFE_VM_SOAK_SECONDS");
  if (v == nullptr) {
    return std::nullopt;
  }
  char* end = nullptr;
  const unsigned long s = std::strtoul(v, &end, 10);
  return *v != '\0' && *end == '\0' && s <= 24 * 3600 ? s : 0;
}

/// Where generation `gen` of a slot lies on the disk and in the slot's memory.
struct Extent {
  std::uint64_t disk = 0;   // byte offset, a multiple of the block size
  std::uint64_t bytes = 0;  // 4 KiB to 64 KiB in whole blocks: mostly not whole pages
  std::uint64_t lead = 0;   // a block boundary in the first page: the data crosses pages unaligned
};

Extent extent_of(unsigned ctrl, std::size_t slot, std::uint64_t gen) {
  const std::uint64_t h = pattern_word(ctrl + 2, (std::uint64_t{slot} << 40 | gen) * 8);  // a hash
  Extent e;
  e.bytes = kBlock * (8 + h % 121);
  e.lead = kBlock * ((h >> 8) % 8);
  e.disk = kScratchBegin + slot * kSlotDisk + kBlock * ((h >> 16) % 128);
  return e;
}

/// The offset fill_pattern/first_mismatch see for generation `gen` at disk offset `disk`: the
/// pattern differs per generation, and generation 0 differs from the bare offset's pattern that
/// other tests leave in the band.
std::uint64_t tagged(std::uint64_t disk, std::uint64_t gen) { return disk + ((gen + 1) << kGenShift); }

/// A WaitableRequest that also counts its controller's completions (before its own), so that
/// one completed twice or never shows in the totals.
struct CountedRequest : WaitableRequest {
  std::atomic<std::uint64_t>* completed;
  void (*wait_complete)(engine::Request*, int) noexcept;
  CountedRequest(engine::Worker* w, std::atomic<std::uint64_t>* c)
      : WaitableRequest(w), completed(c), wait_complete(on_complete) {
    on_complete = [](engine::Request* r, int rc) noexcept {
      auto* self = static_cast<CountedRequest*>(r);
      self->completed->fetch_add(1, std::memory_order_relaxed);
      self->wait_complete(r, rc);
    };
  }
};

enum class Step { idle, write, read, check };  // check: the final read-back

struct Slot {
  std::unique_ptr<CountedRequest> req;
  nvme::DataSegment seg{};
  std::uint8_t* mem = nullptr;  // kSlotBuffer bytes of a chunk
  dma::Iova iova{};
  std::uint64_t gen = 0;  // the generation being written or read (after the run: the last one)
  Extent ext;
  Step step = Step::idle;
  bool verified = false;  // some generation was written and read back intact
  Clock::time_point since;
};

// Members in teardown order: the queue goes first (completing what is still in flight into the
// slots' requests and the chunks), then the slots, the counter they point to, the chunks, and
// the controller.
struct Disk {
  unsigned index = 0;
  std::unique_ptr<nvme::Controller> ctrl;
  engine::Worker* worker = nullptr;
  std::vector<dma::DmaBuffer> chunks;
  std::atomic<std::uint64_t> completed{0};  // by the requests' callbacks, on the worker
  std::vector<Slot> slots;
  std::unique_ptr<nvme::IoQueue> queue;
  std::uint64_t submitted = 0, writes = 0, reads = 0, bytes = 0;
  std::size_t busy = 0;  // slots with a request in flight
  // Requests the driver has not completed, sampled every loop: since the last progress line, and
  // over the whole run.
  double depth_sum = 0, run_depth_sum = 0;
  std::uint64_t depth_samples = 0, depth_max = 0, run_depth_samples = 0;
  int failures = 0;
  bool lost = false;  // a request never completed: it is still in flight
};

void fail(Disk& d, const std::string& what) {
  if (++d.failures <= kMaxReports) {
    ADD_FAILURE() << "nvme" << d.index << ": " << what;
  }
}

void set_up_disk(engine::Engine& eng, Disk& d, unsigned index) {
  d.index = index;
  nvme::ControllerOptions opts;
  opts.max_resets = 1000;  // the faults are on purpose: never give up
  VFE_ASSERT_OK_AND_ASSIGN(d.ctrl, open_nvme(index, opts));
  auto w = eng.worker_for_device(devices_of("nvme").at(index));
  ASSERT_TRUE(w) << w.error().message();
  d.worker = *w;
  const int node = eng.node_of(*d.worker);
  EXPECT_EQ(node, static_cast<int>(index)) << "controller " << index << " sits on node " << index;
  auto q = d.ctrl->create_io_queue(
      *d.worker, {.entries = kDepth + 1, .completion = engine::CompletionMode::adaptive, .numa_node = node});
  ASSERT_TRUE(q) << q.error().message();
  d.queue = std::move(*q);
  for (std::size_t c = 0; c * kSlotsPerChunk < kDepth; ++c) {
    auto b = dma::DmaBuffer::allocate(d.ctrl->dma_space(), kChunk, {.hugepages = true, .numa_node = node});
    ASSERT_TRUE(b) << b.error().message();
    d.chunks.push_back(std::move(*b));
  }
  d.slots.resize(kDepth);
  for (std::size_t k = 0; k < kDepth; ++k) {
    const dma::DmaBuffer& chunk = d.chunks[k / kSlotsPerChunk];
    const std::uint64_t at = (k % kSlotsPerChunk) * kSlotBuffer;
    d.slots[k].mem = chunk.as<std::uint8_t>() + at;
    d.slots[k].iova = chunk.iova_at(at);
    d.slots[k].req = std::make_unique<CountedRequest>(d.worker, &d.completed);
  }
}

void submit(Disk& d, Slot& s, IoOpcode op, Step step) {
  CountedRequest& r = *s.req;
  s.seg = {s.iova + s.ext.lead, s.ext.bytes};
  r.opcode = op;
  r.lba = s.ext.disk / kBlock;
  r.blocks = s.ext.bytes / kBlock;
  r.data = {&s.seg, 1};
  r.completions.store(0, std::memory_order_relaxed);
  r.result.store(1, std::memory_order_relaxed);
  int rc;
  while ((rc = d.queue->submit(r)) == -EAGAIN) {  // the ring holds 1024: not at depth 128
    std::this_thread::yield();
  }
  if (rc != 0) {
    fail(d, "submit refused a request: " + std::string(std::strerror(-rc)));
    return;
  }
  s.step = step;
  s.since = Clock::now();
  ++d.busy;
  ++d.submitted;
  ++(op == IoOpcode::write ? d.writes : d.reads);
  d.bytes += s.ext.bytes;
}

void start_write(Disk& d, std::size_t k) {
  Slot& s = d.slots[k];
  s.ext = extent_of(d.index, k, s.gen);
  fill_pattern(s.mem + s.ext.lead, d.index, tagged(s.ext.disk, s.gen), s.ext.bytes);
  submit(d, s, IoOpcode::write, Step::write);
}

void poison(std::uint8_t* p, std::uint64_t len) {
  auto* w = static_cast<std::uint64_t*>(static_cast<void*>(p));
  for (std::uint64_t i = 0; i < len / 8; ++i) {
    w[i] = kPoison;
  }
}

bool is_poison(const std::uint8_t* p, std::uint64_t len) {
  const auto* w = static_cast<const std::uint64_t*>(static_cast<const void*>(p));
  for (std::uint64_t i = 0; i < len / 8; ++i) {
    if (w[i] != kPoison) {
      return false;
    }
  }
  return true;
}

void start_read(Disk& d, Slot& s, Step step) {
  poison(s.mem, kSlotBuffer);
  submit(d, s, IoOpcode::read, step);
}

// The generation read back intact, and nothing written around it in the slot's memory.
bool verify(Disk& d, std::size_t k) {
  const Slot& s = d.slots[k];
  const std::string where = "slot " + std::to_string(k) + " generation " + std::to_string(s.gen) + " (" +
                            std::to_string(s.ext.bytes) + " bytes at disk offset " + std::to_string(s.ext.disk) + ")";
  const std::uint64_t bad = first_mismatch(s.mem + s.ext.lead, d.index, tagged(s.ext.disk, s.gen), s.ext.bytes);
  if (bad != ~0ULL) {
    fail(d, where + ": read back differs at disk offset " + std::to_string(bad - tagged(0, s.gen)));
    return false;
  }
  const std::uint64_t tail = s.ext.lead + s.ext.bytes;
  if (!is_poison(s.mem, s.ext.lead) || !is_poison(s.mem + tail, kSlotBuffer - tail)) {
    fail(d, where + ": the read wrote outside its data");
    return false;
  }
  return true;
}

// A slot's request completed: check it, then start its next step (none once `stopping`).
void on_done(Disk& d, std::size_t k, bool stopping) {
  Slot& s = d.slots[k];
  CountedRequest& r = *s.req;
  const Step step = s.step;
  s.step = Step::idle;
  --d.busy;
  if (const int n = r.completions.load(std::memory_order_acquire); n != 1) {
    fail(d, "slot " + std::to_string(k) + ": a request completed " + std::to_string(n) + " times");
  }
  if (const int rc = r.result.load(std::memory_order_relaxed); rc != 0) {
    fail(d, "slot " + std::to_string(k) + ": " + std::strerror(-rc) + ", status " + nvme::to_string(r.status));
    return;
  }
  if (step == Step::write) {
    start_read(d, s, Step::read);  // even when stopping: every slot ends on a verified generation
    return;
  }
  if (!verify(d, k)) {
    return;
  }
  s.verified = true;
  if (step == Step::read && !stopping) {
    ++s.gen;
    start_write(d, k);
  }
}

// Handles the slots whose request completed; returns how many.
std::size_t service(Disk& d, bool stopping, Clock::time_point now) {
  std::size_t done = 0;
  for (std::size_t k = 0; k < d.slots.size(); ++k) {
    Slot& s = d.slots[k];
    if (s.step == Step::idle) {
      continue;
    }
    if (s.req->completions.load(std::memory_order_acquire) != 0) {
      on_done(d, k, stopping);
      ++done;
    } else if (now - s.since > kLostAfter && !d.lost) {
      d.lost = true;
      fail(d, "slot " + std::to_string(k) + ": a request did not complete within 60 s (lost)");
    }
  }
  const std::uint64_t depth = d.submitted - d.completed.load(std::memory_order_relaxed);
  d.depth_sum += static_cast<double>(depth);
  d.depth_max = std::max(d.depth_max, depth);
  ++d.depth_samples;
  d.run_depth_sum += static_cast<double>(depth);
  ++d.run_depth_samples;
  return done;
}

struct Soak {
  std::array<Disk, 2> disks;
  e1000e::Loopback* loopback = nullptr;
  Clock::time_point start;
};

void print_progress(Soak& soak, Clock::time_point now) {
  std::string line = "soak: " + std::to_string((now - soak.start) / std::chrono::seconds(1)) + " s";
  for (Disk& d : soak.disks) {
    const double depth = d.depth_samples != 0 ? d.depth_sum / static_cast<double>(d.depth_samples) : 0;
    char buf[128];
    std::snprintf(buf, sizeof buf, ", nvme%u %llu ios (in flight %.1f on average, %llu at most)", d.index,
                  static_cast<unsigned long long>(d.completed.load(std::memory_order_relaxed)), depth,
                  static_cast<unsigned long long>(d.depth_max));
    line += buf;
    d.depth_sum = 0;
    d.depth_samples = 0;
    d.depth_max = 0;
  }
  if (soak.loopback != nullptr) {
    const auto& c = soak.loopback->counters();
    line += ", frames " + std::to_string(c.sent.load(std::memory_order_relaxed)) + " sent " +
            std::to_string(c.received.load(std::memory_order_relaxed)) + " received";
  }
  std::fprintf(stderr, "%s\n", line.c_str());
}

// Runs the slots until every one is idle; a slot whose read verified starts its next write until
// `until` or the first failure on either controller. False when a request was lost (it is still in flight).
bool drive(Soak& soak, Clock::time_point until) {
  auto next_line = soak.start + kProgressEvery * ((Clock::now() - soak.start) / kProgressEvery + 1);
  for (;;) {
    const auto now = Clock::now();
    const bool stopping = now >= until || soak.disks[0].failures != 0 || soak.disks[1].failures != 0;
    std::size_t done = 0, busy = 0;
    bool lost = false;
    for (Disk& d : soak.disks) {
      done += service(d, stopping, now);
      busy += d.busy;
      lost = lost || d.lost;
    }
    if (busy == 0 || lost) {
      return !lost;
    }
    if (now >= next_line) {
      print_progress(soak, now);
      next_line += kProgressEvery;
    }
    if (done == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}


void expect_clean_loopback(const e1000e::LoopbackReport& rep) {
  EXPECT_GT(rep.sent, 0U);
  EXPECT_EQ(rep.received, rep.sent);
  EXPECT_EQ(rep.lost, 0U);
  EXPECT_EQ(rep.duplicates, 0U);
  EXPECT_EQ(rep.reordered, 0U);
  EXPECT_EQ(rep.corrupt, 0U);
  EXPECT_EQ(rep.tx_errors, 0U);
  EXPECT_EQ(rep.untracked_gaps, 0U);
  EXPECT_EQ(rep.foreign, 0U) << "nothing else is on the hub";
  EXPECT_TRUE(rep.clean());
  EXPECT_EQ(rep.device_tx_frames, rep.sent) << "GPTC of the sender";
  EXPECT_EQ(rep.device_rx_frames, rep.received) << "GPRC of the receiver";
  EXPECT_TRUE(rep.counters_agree()) << "GOTC " << rep.device_tx_bytes << ", GORC " << rep.device_rx_bytes
                                    << " for " << rep.sent_bytes << " bytes";
}

void expect_every_request_once(const Disk& d) {
  SCOPED_TRACE("nvme" + std::to_string(d.index));
  EXPECT_EQ(d.busy, 0U) << "nothing outstanding";
  EXPECT_EQ(d.completed.load(), d.submitted) << "every request completed exactly once";
  EXPECT_EQ(d.queue->stats().requests.load(), d.submitted);
  EXPECT_EQ(d.queue->stats().errors.load(), 0U);
  EXPECT_EQ(d.ctrl->state(), nvme::ControllerState::running) << d.ctrl->failure();
  for (std::size_t k = 0; k < d.slots.size(); ++k) {
    EXPECT_TRUE(d.slots[k].verified) << "slot " << k << " ends on a verified generation";
    EXPECT_TRUE(d.slots[k].req->on_worker) << "slot " << k << " completed on the queue's worker";
  }
}

void print_summary(const Soak& soak, const e1000e::LoopbackReport& rep) {
  for (const Disk& d : soak.disks) {
    std::fprintf(stderr, "soak: nvme%u %llu requests (%llu writes, %llu reads with the final read-back), %llu MiB, "
                 "%.1f in flight on average, %llu commands, %llu doorbells\n", d.index,
                 static_cast<unsigned long long>(d.submitted), static_cast<unsigned long long>(d.writes),
                 static_cast<unsigned long long>(d.reads), static_cast<unsigned long long>(d.bytes >> 20),
                 d.run_depth_sum / static_cast<double>(std::max<std::uint64_t>(d.run_depth_samples, 1)),
                 static_cast<unsigned long long>(d.queue->stats().commands.load()),
                 static_cast<unsigned long long>(d.queue->stats().sq_doorbells.load()));
  }
  std::fprintf(stderr, "soak: frames %llu sent, %llu received (%llu MiB) in %.1f s, %llu lost, backpressure %llu\n",
               static_cast<unsigned long long>(rep.sent), static_cast<unsigned long long>(rep.received),
               static_cast<unsigned long long>(rep.received_bytes >> 20), rep.seconds,
               static_cast<unsigned long long>(rep.lost), static_cast<unsigned long long>(rep.backpressure));
}

TEST(Soak, BothNvmeAtDepth128AndTheNicsVerifiedAtTheEnd) {
  const std::optional<unsigned long> seconds = soak_seconds();
  if (!seconds) {
    GTEST_SKIP() << "set VFE_VM_SOAK_SECONDS to run the soak (tests/vm/guest/soak_check.sh)";
  }
  ASSERT_GT(*seconds, 0U) << "VFE_VM_SOAK_SECONDS='" << std::getenv("VFE_VM_SOAK_SECONDS")
                          << "': give a whole number of seconds, 1 to 86400";
  engine::EngineOptions eo;
  eo.mode = engine::worker_mode_for(engine::CompletionMode::adaptive);
  auto eng = engine::Engine::create(eo);
  ASSERT_TRUE(eng) << eng.error().message();
  Soak soak;
  for (unsigned i : {0U, 1U}) {
    set_up_disk(**eng, soak.disks[i], i);
    ASSERT_FALSE(HasFatalFailure());
  }
  const auto nics = devices_of("e1000e");
  ASSERT_GE(nics.size(), 2U) << "the rig has two e1000e";
  auto nic_worker = (*eng)->worker_for_device(nics[0]);
  ASSERT_TRUE(nic_worker) << nic_worker.error().message();
  e1000e::NicOptions no;
  no.numa_node = (*eng)->node_of(**nic_worker);
  VFE_ASSERT_OK_AND_ASSIGN(auto a, open_nic(0, no));
  VFE_ASSERT_OK_AND_ASSIGN(auto b, open_nic(1, no));
  e1000e::LoopbackOptions lo;
  lo.frames = 0;  // until finish
  lo.min_length = 60;
  lo.max_length = 1514;
  e1000e::Loopback loopback(*a, *b, lo);
  auto started = loopback.start(**nic_worker, engine::CompletionMode::adaptive);
  ASSERT_TRUE(started) << started.error().message();
  soak.loopback = &loopback;

  soak.start = Clock::now();
  std::fprintf(stderr, "soak: for %lu s: both NVMe at depth %zu in adaptive mode, frames from %s to %s\n", *seconds,
               kDepth, nics[0].to_string().c_str(), nics[1].to_string().c_str());
  for (Disk& d : soak.disks) {
    for (std::size_t k = 0; k < kDepth; ++k) {
      start_write(d, k);
    }
  }
  FaultInjector faults({soak.disks[0].ctrl.get(), soak.disks[1].ctrl.get()}, kFaultEvery);
  const bool all_came_back = drive(soak, soak.start + std::chrono::seconds(*seconds));
  faults.stop();
  auto rep = loopback.finish(std::chrono::milliseconds(5000));
  soak.loopback = nullptr;
  ASSERT_TRUE(all_came_back) << "a request was lost";
  for (Disk& d : soak.disks) {  // the final read-back: every slot holds its last generation
    for (Slot& s : d.slots) {
      if (s.verified) {
        start_read(d, s, Step::check);
      }
    }
  }
  ASSERT_TRUE(drive(soak, Clock::now())) << "a request was lost";
  std::fprintf(stderr, "soak: done after %lld s\n",
               static_cast<long long>((Clock::now() - soak.start) / std::chrono::seconds(1)));
  ASSERT_TRUE(rep) << rep.error().message();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // would a late duplicate show?
  print_summary(soak, *rep);
  for (const Disk& d : soak.disks) {
    expect_every_request_once(d);
    std::fprintf(stderr, "soak: nvme%u: %llu fault(s) injected, %llu reset(s), %llu request(s) sent again\n", d.index,
                 static_cast<unsigned long long>(faults.injected(d.index)),
                 static_cast<unsigned long long>(d.ctrl->stats().resets.load()),
                 static_cast<unsigned long long>(d.queue->stats().retries.load()));
    EXPECT_GE(d.ctrl->stats().resets.load(), faults.injected(d.index)) << "each fault costs a reset";
  }
  expect_clean_loopback(*rep);
  const auto db = b->device_counters();
  EXPECT_EQ(db.rx_missed + db.rx_crc_errors + db.rx_oversize, 0U) << "the receiver dropped nothing";
}

}  // namespace
}  // namespace vfe::vmtest
