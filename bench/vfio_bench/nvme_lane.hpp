#pragma once
/// \file
/// One lane of `vfio-bench nvme`: a worker, its I/O queue, its buffer and `--qd` requests that
/// go round and round. A request that completes is timed, counted and sent again from its
/// completion callback, on the worker, without leaving it; under `--rate` a request the limiter
/// holds back waits in the lane until `release_held` lets it go.
///
/// Threads: everything but the atomics belongs to the lane's worker while the run lasts. The
/// run's thread reaches the rest only through `Worker::run_sync` and `Worker::try_post`.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
  nvme::DataSegment segment;
};

struct Lane {
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
  std::uint64_t irq_events0 = 0;            // the worker's irq_events when counting began
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
  /// Worker only, after --ramp-time: forget what was counted, start counting.
  void begin_measuring(std::uint64_t io_limit) noexcept;
  /// True until the first failure (whose message alone is kept: the others are not formatted).
  [[nodiscard]] bool first_failure() const noexcept { return errors.load(std::memory_order_relaxed) == 0; }
  /// Counts a failure, keeps `why` if it is the first, and parks its request.
  void park_failed(std::string why) noexcept;

 private:
  void aim(BenchIo& io) noexcept;
  void send(BenchIo& io) noexcept;
};

/// The completion callback of every BenchIo.
void on_bench_io_complete(engine::Request* r, int status) noexcept;

}  // namespace vfe::bench
