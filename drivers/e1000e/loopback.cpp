#include "drivers/e1000e/loopback.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <thread>

#include <fmt/format.h>

#include "base/log.hpp"

namespace vfe::e1000e {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxBatch = 64;

std::uint64_t now_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

}  // namespace

Loopback::Loopback(Nic& tx, Nic& rx, const LoopbackOptions& options) : tx_(tx), rx_(rx), options_(options) {
  options_.batch = std::clamp<std::uint32_t>(options_.batch, 1, kMaxBatch);
  options_.window = std::clamp<std::uint32_t>(options_.window, 1, rx_.rx_entries() - 1);
  if (options_.run_id == 0) {
    options_.run_id = now_ns() | 1;
  }
}

Loopback::~Loopback() {
  for (Nic* nic : {&tx_, &rx_}) {
    if (worker_ != nullptr && nic->worker() != nullptr) {
      if (auto r = nic->detach(); !r) {
        log_error("loopback: {}", r.error().message());
      }
    }
  }
}

Result<void> Loopback::start(engine::Worker& worker, engine::CompletionMode mode) {
  if (started_once_) {
    return Error::invalid("start loopback", "a Loopback runs once; make a new one");
  }
  // Shorter frames would arrive padded to kMinFrame and fail the length check.
  if (options_.min_length < kMinFrame || options_.max_length > kMaxFrame ||
      options_.min_length > options_.max_length) {
    return Error::invalid("start loopback",
                          fmt::format("frame lengths {}..{}: use {} to {} bytes", options_.min_length,
                                      options_.max_length, kMinFrame, kMaxFrame));
  }
  if (tx_.worker() != nullptr || rx_.worker() != nullptr) {
    return Error::invalid("start loopback", "a NIC is attached to a worker already; detach it first");
  }
  started_once_ = true;
  drop_waiting_frames();  // both NICs are still this thread's
  tx_at_start_ = tx_.device_counters();
  rx_at_start_ = rx_.device_counters();
  tx_ring_at_start_ = tx_.tx_stats();
  rx_ring_at_start_ = rx_.rx_stats();
  started_ = Clock::now();  // before attach: handlers read it on the worker
  // The sender first: the receiver's handler may send as soon as it is attached.
  VFE_TRY(tx_.attach(worker, mode, *this));
  if (auto r = rx_.attach(worker, mode, *this); !r) {
    static_cast<void>(tx_.detach());
    return r;
  }
  worker_ = &worker;
  while (!worker.try_post(&Loopback::start_task, this)) {
    std::this_thread::yield();
  }
  return ok();
}

void Loopback::drop_waiting_frames() noexcept {
  std::array<Packet*, kMaxBatch> frames{};
  while (const std::size_t n = rx_.rx_batch(frames)) {
    bump(counters_.foreign, n);
    rx_.pool().free_bulk(std::span<Packet* const>(frames.data(), n));
  }
}

void Loopback::start_task(void* self) noexcept { static_cast<Loopback*>(self)->pump(); }

bool Loopback::done() const noexcept {
  const std::uint64_t sent = counters_.sent.load(std::memory_order_relaxed);
  const bool sending_over = stopping_.load(std::memory_order_relaxed) || halted_.load(std::memory_order_relaxed) ||
                            (options_.frames != 0 && sent == options_.frames);
  return sending_over && counters_.received.load(std::memory_order_relaxed) == sent;
}

// Worker: sends while the window and the ring allow. Runs again when frames arrive (the window
// opens) or sent frames are reclaimed (the ring and the pool have room).
void Loopback::pump() noexcept {
  while (!stopping_.load(std::memory_order_relaxed) && !halted_.load(std::memory_order_relaxed)) {
    const std::uint64_t in_flight = next_seq_ - counters_.received.load(std::memory_order_relaxed);
    std::uint64_t want = in_flight < options_.window ? std::min<std::uint64_t>(options_.batch, options_.window - in_flight) : 0;
    if (options_.frames != 0) {
      want = std::min(want, options_.frames - next_seq_);
    }
    if (want == 0 || send_batch(want) < want) {
      return;  // the window, the ring or the pool is full: a handler calls again
    }
  }
}

// Builds up to `want` frames and hands them to the transmit ring; returns how many it took.
std::size_t Loopback::send_batch(std::size_t want) noexcept {
  std::array<Packet*, kMaxBatch> batch{};
  const std::size_t got = tx_.pool().alloc_bulk(std::span<Packet*>(batch.data(), want));
  const std::uint64_t stamp = now_ns();
  for (std::size_t i = 0; i < got; ++i) {
    const std::uint64_t seq = next_seq_ + i;
    const LoopbackFrame f{.dst = rx_.mac(), .src = tx_.mac(), .run_id = options_.run_id, .seq = seq,
                          .sent_ns = stamp,
                          .length = loopback_frame_length(seq, options_.min_length, options_.max_length)};
    static_cast<void>(write_loopback_frame({batch[i]->data, PacketPool::kBufferSize}, f));
    batch[i]->length = f.length;
  }
  const TxResult r = tx_.tx_batch(std::span<Packet* const>(batch.data(), got));
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < r.sent; ++i) {
    bytes += batch[i]->length;
  }
  next_seq_ += r.sent;
  bump(counters_.sent, r.sent);
  bump(counters_.sent_bytes, bytes);
  tx_.pool().free_bulk(std::span<Packet* const>(batch.data() + r.sent, got - r.sent));
  if (r.error == -EAGAIN) {
    bump(counters_.backpressure);  // on_transmitted resumes
  } else if (r.error != 0) {
    bump(counters_.tx_errors);
    halted_.store(true, std::memory_order_relaxed);
    log_error("loopback: tx_batch refused frame {}: error {}", next_seq_, r.error);
  }
  return r.sent;
}

void Loopback::on_transmitted(Nic& nic, std::size_t count) noexcept {
  static_cast<void>(count);
  if (&nic == &tx_) {
    pump();
  }
}

void Loopback::on_receive(Nic& nic, std::span<Packet* const> frames) noexcept {
  for (Packet* p : frames) {
    const FrameCheck c = &nic == &rx_ ? check_loopback_frame(p->bytes(), options_.run_id) : FrameCheck{};
    switch (c.verdict) {
      case FrameVerdict::ok: accept(c, p->length); break;
      case FrameVerdict::corrupt: bump(counters_.corrupt); break;
      case FrameVerdict::foreign: bump(counters_.foreign); break;
    }
  }
  nic.pool().free_bulk(frames);
  if (&nic == &rx_) {
    pump();  // the window moved
  }
}

void Loopback::accept(const FrameCheck& c, std::uint32_t length) noexcept {
  const bool fixed = options_.min_length == options_.max_length;
  if (c.seq >= next_seq_ || (!fixed && length != loopback_frame_length(c.seq, options_.min_length, options_.max_length))) {
    bump(counters_.corrupt);  // a number never sent, or a length its number does not have
    return;
  }
  switch (order_.accept(c.seq)) {
    case SequenceTracker::Arrival::duplicate: bump(counters_.duplicates); return;
    case SequenceTracker::Arrival::late: bump(counters_.reordered); break;
    case SequenceTracker::Arrival::in_order: break;
  }
  const auto now = Clock::now();
  if (options_.on_latency != nullptr) {
    const std::uint64_t t = now_ns();
    options_.on_latency(options_.latency_ctx, t > c.sent_ns ? t - c.sent_ns : 0);
  }
  bump(counters_.received);
  bump(counters_.received_bytes, length);
  last_rx_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(now - started_).count(),
                    std::memory_order_relaxed);
}

void Loopback::wait_quiet(std::chrono::milliseconds drain) const {
  std::uint64_t seen = counters_.received.load(std::memory_order_relaxed);
  auto quiet_since = Clock::now();
  while (!done() && Clock::now() - quiet_since <= drain) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (const std::uint64_t now_seen = counters_.received.load(std::memory_order_relaxed); now_seen != seen) {
      seen = now_seen;
      quiet_since = Clock::now();
    }
  }
}

Result<LoopbackReport> Loopback::finish(std::chrono::milliseconds drain) {
  if (worker_ == nullptr) {
    return Error::invalid("finish loopback", "it is not running");
  }
  if (options_.frames == 0) {
    stop();
  }
  wait_quiet(drain);
  stop();
  Result<void> detached = rx_.detach();
  if (auto r = tx_.detach(); !r && detached) {
    detached = r;
  }
  worker_ = nullptr;
  VFE_TRY(detached);
  // Detach synchronised with the worker: its writes are visible, and the NICs are this thread's.
  // Frames that came after the last look are taken now, so the rings' counts match the devices'.
  std::array<Packet*, kMaxBatch> frames{};
  while (const std::size_t n = rx_.rx_batch(frames)) {
    on_receive(rx_, std::span<Packet* const>(frames.data(), n));
  }
  return report();
}

LoopbackReport Loopback::report() const {
  LoopbackReport rep;
  const auto& k = counters_;
  rep.sent = k.sent.load();
  rep.sent_bytes = k.sent_bytes.load();
  rep.received = k.received.load();
  rep.received_bytes = k.received_bytes.load();
  rep.lost = rep.sent - rep.received;
  rep.untracked_gaps = order_.untracked();
  rep.duplicates = k.duplicates.load();
  rep.reordered = k.reordered.load();
  rep.corrupt = k.corrupt.load();
  rep.foreign = k.foreign.load();
  rep.backpressure = k.backpressure.load();
  rep.tx_errors = k.tx_errors.load();
  rep.seconds = static_cast<double>(last_rx_ns_.load()) / 1e9;
  rep.ring_tx_frames = tx_.tx_stats().frames - tx_ring_at_start_.frames;
  rep.ring_tx_bytes = tx_.tx_stats().bytes - tx_ring_at_start_.bytes;
  rep.ring_rx_frames = rx_.rx_stats().frames - rx_ring_at_start_.frames;
  rep.ring_rx_bytes = rx_.rx_stats().bytes - rx_ring_at_start_.bytes;
  const DeviceCounters tx_now = tx_.device_counters();
  const DeviceCounters rx_now = rx_.device_counters();
  rep.device_tx_frames = tx_now.tx_good_frames - tx_at_start_.tx_good_frames;
  rep.device_tx_bytes = tx_now.tx_good_bytes - tx_at_start_.tx_good_bytes;
  rep.device_rx_frames = rx_now.rx_good_frames - rx_at_start_.rx_good_frames;
  rep.device_rx_bytes = rx_now.rx_good_bytes - rx_at_start_.rx_good_bytes;
  return rep;
}

Result<std::pair<std::uint32_t, std::uint32_t>> parse_frame_lengths(std::string_view text) {
  const auto number = [](std::string_view t, std::uint32_t& out) {
    const auto r = std::from_chars(t.data(), t.data() + t.size(), out);
    return !t.empty() && r.ec == std::errc() && r.ptr == t.data() + t.size();
  };
  const std::size_t dash = text.find('-');
  std::uint32_t min = 0, max = 0;
  const bool parsed = dash == std::string_view::npos
                          ? number(text, min) && number(text, max)
                          : number(text.substr(0, dash), min) && number(text.substr(dash + 1), max);
  if (!parsed || min < kMinFrame || max > kMaxFrame || min > max) {
    return Error::invalid("frame lengths", fmt::format("'{}': give N or MIN-MAX, bytes without FCS within {}..{}",
                                                       text, kMinFrame, kMaxFrame));
  }
  return std::pair{min, max};
}

bool device_bytes_match(std::uint64_t device, std::uint64_t bytes, std::uint64_t frames) noexcept {
  return device == bytes + kFcsBytes * frames || device == bytes;
}

bool LoopbackReport::counters_agree() const noexcept {
  return device_tx_frames == ring_tx_frames && device_rx_frames == ring_rx_frames &&
         device_bytes_match(device_tx_bytes, ring_tx_bytes, ring_tx_frames) &&
         device_bytes_match(device_rx_bytes, ring_rx_bytes, ring_rx_frames);
}

}  // namespace vfe::e1000e
