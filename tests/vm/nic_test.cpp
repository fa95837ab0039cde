// The e1000e driver against QEMU's two 82574L NICs on one hub, through the real kernel's VFIO:
// bring-up, 10,000 frames of 60 to 1514 bytes from NIC A to NIC B in each completion mode with
// nothing lost, duplicated, reordered or corrupted and the devices' counters agreeing, a frame
// refused at submit, and backpressure from a full transmit ring.
#include <gtest/gtest.h>

#include <cerrno>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "drivers/e1000e/loopback.hpp"
#include "drivers/e1000e/nic.hpp"
#include "drivers/e1000e/spec.hpp"
#include "engine/worker.hpp"
#include "tests/vm/vm_env.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using e1000e::Nic;

TEST(NicVm, BringsUpBothNicsWithTheirAddressesAndLink) {
  const char* expected[] = {"52:54:00:12:34:01", "52:54:00:12:34:02"};  // from run.sh
  for (unsigned i : {0U, 1U}) {
    VFE_ASSERT_OK_AND_ASSIGN(auto nic, open_nic(i));
    EXPECT_EQ(nic->mac_string(), expected[i]);
    EXPECT_TRUE(nic->has_msix()) << "QEMU's 82574L has MSI-X";
    EXPECT_EQ(nic->pool().available(), nic->pool().capacity() - 512) << "all but the receive ring's buffers";
  }
}

void run_loopback(engine::CompletionMode cmode, engine::WorkerMode wmode, std::uint64_t frames) {
  VFE_ASSERT_OK_AND_ASSIGN(auto a, open_nic(0));
  VFE_ASSERT_OK_AND_ASSIGN(auto b, open_nic(1));
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start_worker(wmode));
  e1000e::LoopbackOptions o;
  o.frames = frames;
  o.min_length = 60;
  o.max_length = 1514;
  e1000e::Loopback run(*a, *b, o);
  ASSERT_TRUE(run.start(*worker, cmode));
  // Interrupt events, counted while the NICs are still attached: once every frame is across, the
  // worker (an adaptive one too) goes idle, sleeps in its ring and reads the eventfds.
  std::uint64_t irq_events = 0;
  if (cmode != engine::CompletionMode::polling) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!run.done() && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(worker->run_sync([] {}));
    ASSERT_TRUE(worker->run_sync([] {}));
  }
  irq_events = worker->stats().irq_events.load();
  auto rep = run.finish(std::chrono::milliseconds(5000));
  ASSERT_TRUE(rep) << rep.error().message();
  EXPECT_EQ(rep->sent, frames);
  EXPECT_EQ(rep->received, frames);
  EXPECT_EQ(rep->lost, 0U);
  EXPECT_EQ(rep->duplicates, 0U);
  EXPECT_EQ(rep->reordered, 0U);
  EXPECT_EQ(rep->corrupt, 0U);
  EXPECT_EQ(rep->tx_errors, 0U);
  EXPECT_EQ(rep->foreign, 0U) << "nothing else is on the hub";
  EXPECT_EQ(rep->ring_tx_frames, frames);
  EXPECT_EQ(rep->ring_rx_frames, frames);
  EXPECT_EQ(rep->device_tx_frames, frames) << "GPTC of NIC A";
  EXPECT_EQ(rep->device_rx_frames, frames) << "GPRC of NIC B";
  EXPECT_TRUE(e1000e::device_bytes_match(rep->device_tx_bytes, rep->sent_bytes, frames))
      << "GOTC " << rep->device_tx_bytes << " for " << rep->sent_bytes << " bytes";
  EXPECT_TRUE(e1000e::device_bytes_match(rep->device_rx_bytes, rep->received_bytes, frames))
      << "GORC " << rep->device_rx_bytes << " for " << rep->received_bytes << " bytes";
  EXPECT_TRUE(rep->counters_agree());
  // Every buffer is back: none leaked on either side.
  EXPECT_EQ(a->pool().available(), a->pool().capacity() - 512 - a->tx_in_flight());
  EXPECT_EQ(b->pool().available(), b->pool().capacity() - 512);
  EXPECT_EQ(a->pool().bad_frees() + b->pool().bad_frees(), 0U);
  // The worker learnt of the frames the way the mode says: only interrupt modes take vectors
  // (attach fires both once in these modes; an adaptive worker reads them when it enters its
  // ring, now and then while busy or to sleep).
  if (cmode == engine::CompletionMode::polling) {
    EXPECT_EQ(irq_events, 0U);
  } else {
    EXPECT_GT(irq_events, 0U) << "the receive and transmit vectors fired";
  }
  const auto da = a->device_counters();
  const auto db = b->device_counters();
  EXPECT_EQ(db.rx_missed + db.rx_crc_errors + db.rx_oversize, 0U);
  EXPECT_EQ(da.rx_total_frames, 0U) << "NIC A received nothing: nobody sent to it";
}

TEST(NicVm, TenThousandFramesCrossIntactWhenPolling) {
  run_loopback(engine::CompletionMode::polling, engine::WorkerMode::polling, 10'000);
}

TEST(NicVm, TenThousandFramesCrossIntactWithInterrupts) {
  run_loopback(engine::CompletionMode::interrupt, engine::WorkerMode::interrupt, 10'000);
}

TEST(NicVm, FramesCrossIntactInAdaptiveMode) {
  run_loopback(engine::CompletionMode::adaptive, engine::WorkerMode::adaptive, 2'000);
}

// A frame the device must not send is refused at submit, before any descriptor is written, and
// stays the caller's.
TEST(NicVm, RefusesAFrameLongerThanTheMaximumAtSubmit) {
  VFE_ASSERT_OK_AND_ASSIGN(auto nic, open_nic(0));
  e1000e::Packet* good = nic->pool().alloc();
  e1000e::Packet* big = nic->pool().alloc();
  ASSERT_TRUE(good && big);
  good->length = 60;
  big->length = e1000e::kMaxFrame + 1;
  std::vector<e1000e::Packet*> frames{big, good};
  const e1000e::TxResult r = nic->tx_batch(frames);
  EXPECT_EQ(r.sent, 0U);
  EXPECT_EQ(r.error, -EMSGSIZE);
  EXPECT_EQ(nic->tx_in_flight(), 0U);
  EXPECT_EQ(nic->tx_stats().refused, 1U);
  EXPECT_FALSE(big->in_pool) << "a refused frame stays with the caller";
  big->length = e1000e::kEthernetHeader - 1;
  EXPECT_EQ(nic->tx_batch(frames).error, -EMSGSIZE) << "shorter than an Ethernet header";
  big->length = 2 * e1000e::PacketPool::kBufferSize;
  EXPECT_EQ(nic->tx_batch(frames).error, -EMSGSIZE) << "longer than the buffer itself";
  EXPECT_EQ(nic->device_counters().tx_good_frames, 0U) << "nothing reached the wire";
  nic->pool().free(big);
  nic->pool().free(good);
}

// With transmission paused (TCTL.EN clear), the ring fills: tx_batch takes what fits, says
// -EAGAIN, and keeps the rest with the caller. Once transmission resumes every frame it took
// arrives on the other NIC, and no other.
TEST(NicVm, AFullTransmitRingPushesBackAndDropsNothing) {
  e1000e::NicOptions small;
  small.tx_entries = 16;
  VFE_ASSERT_OK_AND_ASSIGN(auto a, open_nic(0, small));
  VFE_ASSERT_OK_AND_ASSIGN(auto b, open_nic(1));
  const std::uint32_t tctl = a->bar().read32(e1000e::reg::kTctl);
  a->bar().write32(e1000e::reg::kTctl, tctl & ~e1000e::tctl::kEnable);
  std::vector<e1000e::Packet*> frames(40);
  ASSERT_EQ(a->pool().alloc_bulk(frames), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const e1000e::LoopbackFrame f{.dst = b->mac(), .src = a->mac(), .run_id = 7, .seq = i, .sent_ns = 0,
                                  .length = 100};
    ASSERT_TRUE(e1000e::write_loopback_frame({frames[i]->data, e1000e::PacketPool::kBufferSize}, f));
    frames[i]->length = f.length;
  }
  const e1000e::TxResult r = a->tx_batch(frames);
  EXPECT_EQ(r.sent, 15U) << "16 descriptors, one always empty";
  EXPECT_EQ(r.error, -EAGAIN);
  EXPECT_EQ(a->tx_stats().full, 1U);
  EXPECT_EQ(a->reclaim(), 0U) << "nothing was sent while paused";
  EXPECT_EQ(a->tx_batch(std::span(frames).subspan(r.sent)).sent, 0U) << "still full";
  a->bar().write32(e1000e::reg::kTctl, tctl);
  a->bar().write32_db(e1000e::reg::kTdt, a->bar().read32(e1000e::reg::kTdt));  // make it look again
  std::vector<e1000e::Packet*> got(64);
  std::size_t n = 0;
  for (int tries = 0; tries < 2000 && n < r.sent; ++tries) {
    n += b->rx_batch(std::span(got).subspan(n));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(n, r.sent);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(b->rx_batch(got), 0U) << "no frame beyond those the ring took";
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = e1000e::check_loopback_frame(got[i]->bytes(), 7);
    EXPECT_EQ(c.verdict, e1000e::FrameVerdict::ok);
    EXPECT_EQ(c.seq, i) << "in order";
  }
  b->pool().free_bulk(std::span(got).first(n));
  EXPECT_EQ(a->reclaim(), r.sent);
  a->pool().free_bulk(std::span(frames).subspan(r.sent));
  EXPECT_EQ(a->pool().available(), a->pool().capacity() - 512);
}

// Sends `count` loopback frames from `a` on the calling thread (a is not attached), reclaiming as
// it goes; QEMU delivers each to the other NIC inside the TDT write, or queues it. Fails fatally
// (call it under ASSERT_NO_FATAL_FAILURE) when a frame cannot be sent.
void send_frames(Nic& a, const Nic& b, std::uint64_t first, std::uint64_t count) {
  std::vector<e1000e::Packet*> batch(32);
  for (std::uint64_t seq = first; seq < first + count;) {
    const std::size_t want = std::min<std::uint64_t>(batch.size(), first + count - seq);
    ASSERT_EQ(a.pool().alloc_bulk(std::span(batch).first(want)), want);
    for (std::size_t i = 0; i < want; ++i) {
      const e1000e::LoopbackFrame f{.dst = b.mac(), .src = a.mac(), .run_id = 9, .seq = seq + i, .sent_ns = 0,
                                    .length = 200};
      ASSERT_TRUE(e1000e::write_loopback_frame({batch[i]->data, e1000e::PacketPool::kBufferSize}, f));
      batch[i]->length = f.length;
    }
    const auto r = a.tx_batch(std::span(batch).first(want));
    ASSERT_EQ(r.sent, want) << "error " << r.error;
    seq += want;
    for (int i = 0; i < 100 && a.tx_in_flight() != 0; ++i) {
      a.reclaim();
    }
  }
}

// Keeps what it receives until told to let go (on the worker), like an application that holds
// buffers; counts frames of run 9.
class Hoarder final : public e1000e::NicHandler {
 public:
  void on_receive(Nic& nic, std::span<e1000e::Packet* const> frames) noexcept override {
    for (e1000e::Packet* p : frames) {
      if (e1000e::check_loopback_frame(p->bytes(), 9).verdict == e1000e::FrameVerdict::ok) {
        count.store(count.load() + 1);
      }
      if (hoard) {
        held.push_back(p);  // capacity reserved by the test
      } else {
        nic.pool().free(p);
      }
    }
  }
  std::atomic<std::uint64_t> count{0};
  bool hoard = false;  // worker only once attached
  std::vector<e1000e::Packet*> held;
};

bool wait_count(const std::atomic<std::uint64_t>& c, std::uint64_t want) {
  for (int i = 0; i < 5000 && c.load() < want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return c.load() == want;
}

// Frames that arrived before the NIC was attached in interrupt mode are not forgotten: attaching
// raises the vectors once, so the handler looks.
TEST(NicVm, InterruptModeTakesFramesThatArrivedBeforeAttach) {
  // The handler and the worker first, so that they outlive the NICs: a NIC still attached when an
  // ASSERT returns early detaches from a live worker, and no handler runs after its Hoarder went.
  Hoarder h;
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start_worker(engine::WorkerMode::interrupt));
  VFE_ASSERT_OK_AND_ASSIGN(auto a, open_nic(0));
  VFE_ASSERT_OK_AND_ASSIGN(auto b, open_nic(1));
  ASSERT_NO_FATAL_FAILURE(send_frames(*a, *b, 0, 20));
  ASSERT_TRUE(b->attach(*worker, engine::CompletionMode::interrupt, h));
  EXPECT_TRUE(wait_count(h.count, 20)) << h.count.load() << " of 20 frames";
  ASSERT_TRUE(b->detach());
}

// A receiver whose pool runs dry in interrupt mode (the application holds every buffer) leaves
// frames on the ring and waits; once buffers come back, everything queued arrives.
TEST(NicVm, InterruptModeRecoversWhenThePoolRunsDry) {
  Hoarder h;  // the handler and the worker outlive the NICs, as above
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start_worker(engine::WorkerMode::interrupt));
  VFE_ASSERT_OK_AND_ASSIGN(auto a, open_nic(0));
  VFE_ASSERT_OK_AND_ASSIGN(auto b, open_nic(1));
  h.hoard = true;
  h.held.reserve(b->pool().capacity());
  ASSERT_TRUE(b->attach(*worker, engine::CompletionMode::interrupt, h));
  const std::uint64_t total = b->pool().capacity() + 200;  // more than the pool and the ring hold
  ASSERT_NO_FATAL_FAILURE(send_frames(*a, *b, 0, total));
  const std::uint64_t first = b->pool().capacity() - b->rx_entries();  // what fits until it is dry
  EXPECT_TRUE(wait_count(h.count, first)) << h.count.load() << " of " << first;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(h.count.load(), first) << "no buffer, no frame";
  ASSERT_TRUE(worker->run_sync([&] {
    h.hoard = false;
    b->pool().free_bulk(h.held);
    h.held.clear();
  }));
  EXPECT_TRUE(wait_count(h.count, total)) << h.count.load() << " of " << total;
  ASSERT_TRUE(b->detach());
}

TEST(NicVm, RefusesADeviceThatIsNotAn82574L) {
  const auto nvmes = devices_of("nvme");
  ASSERT_FALSE(nvmes.empty());
  e1000e::NicOptions o;
  o.mode = mode();
  auto nic = Nic::create(nvmes[0].to_string(), o);
  ASSERT_FALSE(nic);
  EXPECT_NE(nic.error().message().find("82574L"), std::string::npos) << nic.error().message();
  auto missing = Nic::create("0000:00:1f.7", o);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(ENODEV)) << missing.error().message();
}

}  // namespace
}  // namespace vfe::vmtest
