#pragma once
/// \file
/// `vfio-bench nvme --verify`: the data pattern its writes carry, and `Verifier`, which checks
/// what its reads bring back on a TBB task arena whose threads sit on the device's NUMA node, so
/// that an I/O worker hands a check over and goes on.

#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_scheduler_observer.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/result.hpp"

namespace vfe::bench {

/// Word `word` (8 bytes each) of logical block `lba` under `seed`: every word of every block
/// differs, so a block read from the wrong LBA, a stale block or a torn one does not pass.
[[nodiscard]] constexpr std::uint64_t verify_word(std::uint64_t seed, std::uint64_t lba, std::uint64_t word) noexcept {
  std::uint64_t z = (seed + 1) * 0xd1b54a32d192ed03ULL + lba * 0x9e3779b97f4a7c15ULL + word;
  z = (z ^ (z >> 32)) * 0xd6e8feb86659fd93ULL;
  z = (z ^ (z >> 32)) * 0xd6e8feb86659fd93ULL;
  return z ^ (z >> 32);
}

/// Fills `blocks` logical blocks of `block_size` bytes (a multiple of 8) from `lba` with the pattern.
void fill_pattern(std::span<std::uint8_t> data, std::uint64_t lba, std::uint32_t block_size, std::uint64_t seed) noexcept;
/// The first block of `data` (blocks from `lba`) that differs from the pattern, or kNoMismatch.
inline constexpr std::uint64_t kNoMismatch = ~0ULL;
[[nodiscard]] std::uint64_t first_mismatch(std::span<const std::uint8_t> data, std::uint64_t lba,
                                           std::uint32_t block_size, std::uint64_t seed) noexcept;

/// Checks buffers against the pattern on a TBB task arena, off the caller's thread.
///
/// Threads: `check` from any thread (an I/O worker): it enqueues and returns, never waits; the
/// check and then `done(ctx, bad_lba)` run on one of the arena's threads, which are pinned to
/// the CPUs given (the device's node) as they join. `done` must not block for long; it usually
/// hands the request back to its worker. `wait_idle` and the destructor wait for every check
/// enqueued to have called `done`.
class Verifier {
 public:
  using Done = void (*)(void* ctx, std::uint64_t bad_lba) noexcept;
  struct Check {
    const std::uint8_t* data;   ///< valid and unchanged until `done` runs
    std::uint64_t bytes;
    std::uint64_t lba;
    std::uint32_t block_size;
    std::uint64_t seed;
    Done done;
    void* ctx;
  };

  /// An arena of `threads` threads (at least 1) pinned to `cpus` (empty: not pinned).
  [[nodiscard]] static Result<std::unique_ptr<Verifier>> create(std::vector<int> cpus, unsigned threads);
  ~Verifier();
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  void check(const Check& c) noexcept;
  void wait_idle() noexcept;
  /// Blocks checked so far (any thread, relaxed).
  [[nodiscard]] std::uint64_t blocks_checked() const noexcept { return blocks_.load(std::memory_order_relaxed); }

 private:
  // Pins each thread that joins the arena to the CPUs.
  class Pinner : public tbb::task_scheduler_observer {
   public:
    Pinner(tbb::task_arena& arena, std::vector<int> cpus);
    ~Pinner() override;
    Pinner(const Pinner&) = delete;
    Pinner& operator=(const Pinner&) = delete;
    void on_scheduler_entry(bool worker) override;

   private:
    std::vector<int> cpus_;
  };

  Verifier(std::vector<int> cpus, unsigned threads);
  void run(const Check& c) noexcept;

  tbb::task_arena arena_;
  std::unique_ptr<Pinner> pinner_;
  std::atomic<std::uint64_t> pending_{0};
  std::atomic<std::uint64_t> blocks_{0};
};

}  // namespace vfe::bench
