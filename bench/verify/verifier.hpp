#pragma once
/// \file
/// `vfio-bench nvme --verify`: the data pattern its writes carry, and `Verifier`, which checks
/// what its reads bring back on a TBB task arena whose threads sit on the device's NUMA node, so
/// that an I/O worker hands a check over and goes on.

#include <oneapi/tbb/task_arena.h>

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
  Verifier(std::vector<int> cpus, unsigned threads);
  void run(const Check& c) noexcept;
  void pin_this_thread() const noexcept;

  // TBB shares its threads among arenas: a thread pins itself to these CPUs on its first check
  // for this Verifier (`id_`, unique in the process, tells it whose CPUs it has). A
  // task_scheduler_observer would do it on entry, but TBB frees its proxy after the process's
  // leak check.
  std::vector<int> cpus_;
  std::uint64_t id_;
  tbb::task_arena arena_;
  std::atomic<std::uint64_t> pending_{0};
  std::atomic<std::uint64_t> blocks_{0};
};

}  // namespace vfe::bench
