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
constexpr std::size_t kMaxGaps = 4096;

std::uint64_t now_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

}  // namespace

Loopback::Loopback(Nic& tx, Nic& rx, const LoopbackOptions& options) : tx_(tx), rx_(rx), options_(options) {
  options_.batch = std::clamp<std::uint32_t>(options_.batch, 1, kMaxBatch);
  options_.window = std::max<std::uint32_t>(options_.window, 1);
  if (options_.run_id == 0) {
    options_.run_id = now_ns() | 1;
  }
  gaps_.reserve(kMaxGaps);
}

Loopback::~Loopback() {
  if (worker_ != nullptr) {
    for (Nic* nic : {&tx_, &rx_}) {
      if (nic->worker() != nullptr) {
        static_cast<void>(nic->detach());
      }
    }
  }
}

Result<void> Loopback::start(engine::Worker& worker, engine::CompletionMode mode) {
  if (worker_ != nullptr) {
    return Error::invalid("start loopback", "it is already running");
  }
  // Shorter frames would arrive padded to kMinFrame and fail the length check.
  if (options_.min_length < kMinFrame || options_.max_length > kMaxFrame ||
      options_.min_length > options_.max_length) {
    return Error::invalid("start loopback",
                          fmt::format("frame lengths {}..{}: use {} to {} bytes", options_.min_length,
                                      options_.max_length, kMinFrame, kMaxFrame));
  }
  tx_at_start_ = tx_.device_counters();
  rx_at_start_ = rx_.device_counters();
  tx_ring_at_start_ = tx_.tx_stats();
  rx_ring_at_start_ = rx_.rx_stats();
  VFE_TRY(rx_.attach(worker, mode, *this));
  if (auto r = tx_.attach(worker, mode, *this); !r) {
    static_cast<void>(rx_.detach());
    return r;
  }
  worker_ = &worker;
  started_ = Clock::now();
  while (!worker.try_post(&Loopback::start_task, this)) {
    std::this_thread::yield();
  }
  return ok();
}

void Loopback::start_task(void* self) noexcept { static_cast<Loopback*>(self)->pump(); }

bool Loopback::done() const noexcept {
  const std::uint64_t sent = counters_.sent.load(std::memory_order_relaxed);
  const std::uint64_t received = counters_.received.load(std::memory_order_relaxed);
  const bool all_sent = halted_.load(std::memory_order_relaxed) ||
                        (options_.frames != 0 ? sent == options_.frames : stopping_.load(std::memory_order_relaxed));
  return all_sent && received == sent;
}

// Worker: sends while the window and the ring allow. Runs again when frames arrive (the window
// opens) or sent frames are reclaimed (the ring and the pool have room).
void Loopback::pump() noexcept {
  std::array<Packet*, kMaxBatch> batch{};
  while (!stopping_.load(std::memory_order_relaxed) && !halted_.load(std::memory_order_relaxed)) {
    if (options_.frames != 0 && next_seq_ == options_.frames) {
      return;
    }
    const std::uint64_t in_flight = next_seq_ - counters_.received.load(std::memory_order_relaxed);
    if (in_flight >= options_.window) {
      return;
    }
    std::uint64_t want = std::min<std::uint64_t>(options_.batch, options_.window - in_flight);
    if (options_.frames != 0) {
      want = std::min(want, options_.frames - next_seq_);
    }
    const std::size_t got = tx_.pool().alloc_bulk(std::span<Packet*>(batch.data(), want));
    if (got == 0) {
      return;  // every buffer is on the ring: on_transmitted brings them back
    }
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
      bump(counters_.backpressure);
      return;  // the ring is full: on_transmitted resumes
    }
    if (r.error != 0) {
      bump(counters_.tx_errors);
      halted_.store(true, std::memory_order_relaxed);
      log_error("loopback: tx_batch refused frame {}: error {}", next_seq_, r.error);
      return;
    }
  }
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

// Order bookkeeping: frames normally arrive as sent. A frame past the expected one leaves the
// skipped numbers in `gaps_`; a later frame is a late arrival (reordered) when it fills a gap
// and a duplicate otherwise.
void Loopback::accept(const FrameCheck& c, std::uint32_t length) noexcept {
  const bool fixed = options_.min_length == options_.max_length;
  if (c.seq >= next_seq_ || (!fixed && length != loopback_frame_length(c.seq, options_.min_length, options_.max_length))) {
    bump(counters_.corrupt);  // a number never sent, or a length its number does not have
    return;
  }
  if (options_.on_latency != nullptr) {
    const std::uint64_t t = now_ns();
    options_.on_latency(options_.latency_ctx, t > c.sent_ns ? t - c.sent_ns : 0);
  }
  if (c.seq >= expected_) {
    for (std::uint64_t s = expected_; s < c.seq; ++s) {
      if (gaps_.size() < kMaxGaps) {
        gaps_.push_back(s);
      } else {
        ++gaps_dropped_;
      }
    }
    expected_ = c.seq + 1;
  } else if (auto it = std::find(gaps_.begin(), gaps_.end(), c.seq); it != gaps_.end()) {
    *it = gaps_.back();
    gaps_.pop_back();
    bump(counters_.reordered);
  } else {
    bump(counters_.duplicates);
    return;
  }
  bump(counters_.received);
  bump(counters_.received_bytes, length);
  last_rx_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started_).count(),
                    std::memory_order_relaxed);
}

Result<LoopbackReport> Loopback::finish(std::chrono::milliseconds drain) {
  if (worker_ == nullptr) {
    return Error::invalid("finish loopback", "it was not started");
  }
  std::uint64_t seen = counters_.received.load(std::memory_order_relaxed);
  auto quiet_since = Clock::now();
  while (!done()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const std::uint64_t now_seen = counters_.received.load(std::memory_order_relaxed);
    if (now_seen != seen) {
      seen = now_seen;
      quiet_since = Clock::now();
    } else if (Clock::now() - quiet_since > drain) {
      break;
    }
  }
  stop();
  Result<void> detached = rx_.detach();
  if (auto r = tx_.detach(); !r && detached) {
    detached = r;
  }
  worker_ = nullptr;
  VFE_TRY(detached);
  // After detach no handler runs: the worker's writes are visible (detach synchronised with it).
  LoopbackReport rep;
  const auto& k = counters_;
  rep.sent = k.sent.load();
  rep.sent_bytes = k.sent_bytes.load();
  rep.received = k.received.load();
  rep.received_bytes = k.received_bytes.load();
  rep.lost = rep.sent - rep.received;
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
