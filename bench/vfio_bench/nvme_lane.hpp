#pragma once
/// \file
/// One lane of `vfio-bench nvme`: a worker, its I/O queue, its buffer and `--qd` requests that
/// go round and round. A request that completes is timed, counted and sent again from its
/// completion callback, on the worker, without leaving it; under `--rate` a request the limiter
/// holds back waits in the lane until `release_held` lets it go.
///
/// Threads: while the run lasts everything but the atomics belongs to the lane's worker, which
/// the run's thread reaches through `Worker::run_sync` and `Worker::try_post`. Before the lanes
/// start and after every request is parked (an acquire of `parked`) the run's thread reads and
/// writes the rest directly.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/verify/verifier.hpp"
#include "bench/vfio_bench/access_pattern.hpp"
#include "bench/vfio_bench/histogram.hpp"
#include "dma/dma_buffer.hpp"
#include "drivers/nvme/io_queue.hpp"
#include "engine/worker.hpp"

namespace vfe::bench {

struct Lane;

struct BenchIo : nvme::IoRequest {
  Lane* lane = nullptr;
  std::uint64_t started = 0;
  std::uint64_t bytes = 0;        // what the I/O counts as moved (a trim: the blocks it covers)
  nvme::DataSegment segment;      // the data: --bs bytes of the lane's buffer
  nvme::DsmRange* range = nullptr;  // trim: the one range, at the start of the same bytes
  nvme::DataSegment range_segment;  // ... and where the controller reads it
  std::uint8_t* host = nullptr;     // the data's address in this process (--verify)
  std::uint64_t bad_lba = 0;        // --verify: what the check found (kNoMismatch: nothing)
};

/// What a lane's requests do: reads and writes by --rw and --rwmixread, or one other command.
enum class LaneOp { read_write, trim, write_zeroes, flush };

struct Lane {
  LaneOp op = LaneOp::read_write;
  bool random = false;
  unsigned read_percent = 100;
  std::uint64_t first_block = 0, blocks = 0, bs_blocks = 0, next_seq = 0;
  std::uint64_t limit = ~0ULL, issued = 0;  // I/Os to start in all (with --ios), started so far
  std::optional<SlotPicker> picker;         // where random I/Os go; its generator also picks reads
  std::optional<RateLimiter> rate;          // --rate: this lane's share
  bool measuring = true;                    // false during --ramp-time: completions are not counted
  std::atomic<bool>* stop = nullptr;
  Histogram latency;
  std::atomic<std::uint64_t> done{0}, bytes{0}, errors{0};
  std::atomic<unsigned> parked{0};          // requests that will not be sent again
  std::string first_error;
  std::vector<BenchIo*> held;               // completed, waiting for the rate limiter (reserved: qd)
  std::atomic<bool> release_posted{false};  // a release_held task is posted and has not run
  std::atomic<bool> holding{false};         // held is not empty: the pacer posts release_held
  // --verify: writes carry the pattern of `verify_seed`, reads are checked on `verifier`'s arena
  // (null: no verifying). The first mismatching LBAs are kept (reserved: no allocation).
  Verifier* verifier = nullptr;
  std::uint64_t verify_seed = 0;
  std::uint32_t block_size = 512;
  std::atomic<std::uint64_t> mismatches{0};
  std::vector<std::uint64_t> bad_lbas;
  static constexpr std::size_t kBadLbasKept = 16;
  std::uint64_t irq_events0 = 0;            // the worker's irq_events when counting began
  double cpu0 = 0;                          // its thread's CPU time then
  std::unique_ptr<engine::Worker> worker;  // declared before the queue and buffers: goes last
  std::optional<dma::DmaBuffer> buffer;
  std::vector<std::unique_ptr<BenchIo>> ios;
  std::unique_ptr<nvme::IoQueue> queue;

  /// Chooses the next I/O of `io` (read or write, and where) and sends it, or holds it when the
  /// rate limiter says not yet; parks it (and counts an error) when the queue refuses it.
  void start(BenchIo& io) noexcept;
  /// Sends what the rate limiter lets through now; parks everything held once the run stops.
  /// Worker only (post it with post_release).
  void release_held() noexcept;
  /// From any thread: asks the worker to run release_held soon (at most one such task waits).
  void post_release() noexcept;
  /// Worker only, when counting starts (at once, or after --ramp-time): forget what was counted,
  /// note the thread's CPU time and the worker's interrupts, and count from here. Errors and
  /// --verify mismatches found while warming up stay counted: they are failures all the same.
  void begin_measuring(std::uint64_t io_limit) noexcept;
  /// True until the first failure (whose message alone is kept: the others are not formatted).
  [[nodiscard]] bool first_failure() const noexcept { return errors.load(std::memory_order_relaxed) == 0; }
  /// Counts a failure, keeps `why` if it is the first, and parks its request.
  void park_failed(std::string why) noexcept;
  /// Worker only: a read's check came back (`io.bad_lba`); counts a mismatch as a failure (the
  /// request goes on: a mismatch is the medium's, not the request's).
  void checked(BenchIo& io) noexcept;

 private:
  void aim(BenchIo& io) noexcept;
  void send(BenchIo& io) noexcept;
};

/// The completion callback of every BenchIo.
void on_bench_io_complete(engine::Request* r, int status) noexcept;

}  // namespace vfe::bench
