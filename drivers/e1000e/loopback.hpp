#pragma once
/// \file
/// `Loopback`: sequenced test traffic from one e1000e to another on the same wire, checked
/// frame by frame. Used by examples/nic_loopback, `vfio-bench nic` and the VM tests.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <utility>

#include "base/result.hpp"
#include "drivers/e1000e/loopback_frame.hpp"
#include "drivers/e1000e/nic.hpp"
#include "drivers/e1000e/sequence_tracker.hpp"
#include "engine/queue_pair.hpp"
#include "engine/worker.hpp"

namespace vfe::e1000e {

struct LoopbackOptions {
  /// Frames to send; 0: until `stop`.
  std::uint64_t frames = 10'000;
  /// Frame lengths without FCS, within kMinFrame..kMaxFrame: fixed when equal, else each frame's
  /// length is a hash of its sequence number in [min_length, max_length].
  std::uint32_t min_length = 60;
  std::uint32_t max_length = 1514;
  /// Frames sent and not yet received, at most; capped at the receive ring's size, so the
  /// receiver's ring never overflows and a lost frame means the path lost it.
  std::uint32_t window = 256;
  /// Frames built and handed to `tx_batch` at once (1..64).
  std::uint32_t batch = 32;
  /// Tells this run's frames from any earlier run's still on the wire (0: from the clock).
  std::uint64_t run_id = 0;
  /// Called on the worker for each intact frame with its one-way time (sender clock to receiver
  /// clock, both `steady_clock`); may be null.
  void (*on_latency)(void* ctx, std::uint64_t ns) noexcept = nullptr;
  void* latency_ctx = nullptr;
};

/// What a run saw. Counters are written on the worker only; read them from another thread
/// (relaxed) for progress, exactly after `finish`.
struct LoopbackCounters {
  std::atomic<std::uint64_t> sent{0};          ///< frames the transmit ring took
  std::atomic<std::uint64_t> sent_bytes{0};
  std::atomic<std::uint64_t> received{0};      ///< intact frames of this run, first copies
  std::atomic<std::uint64_t> received_bytes{0};
  std::atomic<std::uint64_t> duplicates{0};    ///< intact frames seen before
  std::atomic<std::uint64_t> reordered{0};     ///< intact frames that came after a later one
  std::atomic<std::uint64_t> corrupt{0};       ///< frames of this run with a bad length or checksum
  std::atomic<std::uint64_t> foreign{0};       ///< frames not of this run (on either NIC)
  std::atomic<std::uint64_t> backpressure{0};  ///< batches the full transmit ring cut short
  std::atomic<std::uint64_t> tx_errors{0};     ///< frames tx_batch refused (stops the run)
};

/// The outcome once the run is over.
struct LoopbackReport {
  std::uint64_t sent = 0, sent_bytes = 0, received = 0, received_bytes = 0;
  std::uint64_t lost = 0;  ///< sent, never received intact (after the drain; corrupt ones too)
  std::uint64_t untracked_gaps = 0;  ///< skipped numbers too many to remember (see SequenceTracker)
  std::uint64_t duplicates = 0, reordered = 0, corrupt = 0, foreign = 0, backpressure = 0, tx_errors = 0;
  double seconds = 0;  ///< from start to the last frame received

  /// Over the run, as the sender's and the receiver's rings counted (every frame put on the
  /// transmit ring; every good frame taken from the receive ring, foreign ones included)...
  std::uint64_t ring_tx_frames = 0, ring_tx_bytes = 0, ring_rx_frames = 0, ring_rx_bytes = 0;
  /// ...and as the devices counted (GPTC/GOTC of the sender, GPRC/GORC of the receiver).
  std::uint64_t device_tx_frames = 0, device_tx_bytes = 0, device_rx_frames = 0, device_rx_bytes = 0;

  /// No frame lost, duplicated, reordered, corrupted or refused. Foreign frames (others' traffic
  /// on the wire) do not count against it.
  [[nodiscard]] bool clean() const noexcept {
    return lost == 0 && duplicates == 0 && reordered == 0 && corrupt == 0 && tx_errors == 0 && untracked_gaps == 0;
  }
  /// The devices' frame and byte counts match the rings' (see `device_bytes_match`). Traffic from
  /// elsewhere that arrives while the run starts or ends can make them differ on a shared wire.
  [[nodiscard]] bool counters_agree() const noexcept;
};

/// True when a device's octet count `device` matches `frames` frames of `bytes` bytes without
/// FCS. The 82574 counts from the destination address through the FCS (4 bytes per frame);
/// QEMU 7.2's model leaves the FCS out of GOTC; either is accepted.
[[nodiscard]] bool device_bytes_match(std::uint64_t device, std::uint64_t bytes, std::uint64_t frames) noexcept;

/// Frame lengths for a run from text: "N" or "MIN-MAX", bytes without FCS within
/// kMinFrame..kMaxFrame (for command lines).
[[nodiscard]] Result<std::pair<std::uint32_t, std::uint32_t>> parse_frame_lengths(std::string_view text);

/// Sends frames from `tx` to `rx` (which must see each other's frames: one wire, a switch, a
/// QEMU hub) and checks each on arrival. Both NICs are attached to one worker by `start`, in the
/// given completion mode, and detached by `finish`; all frame work runs on that worker. One run
/// per object; setup calls (`start`, `finish`) from one thread.
class Loopback final : private NicHandler {
 public:
  Loopback(Nic& tx, Nic& rx, const LoopbackOptions& options);
  Loopback(const Loopback&) = delete;
  Loopback& operator=(const Loopback&) = delete;
  ~Loopback() override;

  /// Drops what waits on the receiver's ring (an earlier run's frames), attaches both NICs to
  /// `worker` and starts sending. Once per object. Setup path.
  [[nodiscard]] Result<void> start(engine::Worker& worker, engine::CompletionMode mode);
  /// Sends no more frames (ends a run without a frame count; cuts one with a count short). Any
  /// thread.
  void stop() noexcept { stopping_.store(true, std::memory_order_relaxed); }
  /// True when every frame to send was sent and received (or the run was stopped and everything
  /// sent arrived). Any thread.
  [[nodiscard]] bool done() const noexcept;
  /// Waits until `done`, or until nothing arrived for `drain` (a run without a frame count is
  /// stopped first); then detaches both NICs, takes what still arrived, and reports. The frames
  /// still missing count as lost.
  [[nodiscard]] Result<LoopbackReport> finish(std::chrono::milliseconds drain = std::chrono::milliseconds(2000));

  /// The live counts (for progress lines; exact once `finish` returned).
  [[nodiscard]] const LoopbackCounters& counters() const noexcept { return counters_; }
  /// The ID this run's frames carry.
  [[nodiscard]] std::uint64_t run_id() const noexcept { return options_.run_id; }

 private:
  void on_receive(Nic& nic, std::span<Packet* const> frames) noexcept override;
  void on_transmitted(Nic& nic, std::size_t count) noexcept override;
  void pump() noexcept;
  [[nodiscard]] std::size_t send_batch(std::size_t want) noexcept;
  void accept(const FrameCheck& check, std::uint32_t length) noexcept;
  void drop_waiting_frames() noexcept;
  void wait_quiet(std::chrono::milliseconds drain) const;
  [[nodiscard]] LoopbackReport report() const;
  static void start_task(void* self) noexcept;
  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);  // single writer
  }

  Nic& tx_;
  Nic& rx_;
  LoopbackOptions options_;
  engine::Worker* worker_ = nullptr;
  bool started_once_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> halted_{false};  // a refused frame ended the run
  std::chrono::steady_clock::time_point started_;
  DeviceCounters tx_at_start_, rx_at_start_;
  TxRingStats tx_ring_at_start_;
  RxRingStats rx_ring_at_start_;
  std::atomic<std::int64_t> last_rx_ns_{0};  // since started_, for the report's duration
  // Worker only:
  std::uint64_t next_seq_ = 0;  // the next sequence number to send
  SequenceTracker order_;
  LoopbackCounters counters_;
};

}  // namespace vfe::e1000e
