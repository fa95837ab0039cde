// vfio-bench's --verify: the pattern, and Verifier's checks on its TBB arena. Built in the TSan
// preset too: several threads hand checks over at once, as I/O workers do.
#include "bench/verify/verifier.hpp"

#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <set>
#include <mutex>
#include <thread>
#include <vector>

namespace vfe::bench {
namespace {

TEST(VerifyPattern, EveryWordOfEveryBlockDiffersAndAWrongPlaceIsCaught) {
  std::vector<std::uint8_t> a(4096), b(4096);
  fill_pattern(a, 1000, 512, 7);
  EXPECT_EQ(first_mismatch(a, 1000, 512, 7), kNoMismatch);
  EXPECT_EQ(first_mismatch(a, 1001, 512, 7), 1001U) << "the same data one block on";
  EXPECT_EQ(first_mismatch(a, 1000, 512, 8), 1000U) << "another seed";
  fill_pattern(b, 1000, 4096, 7);
  // The block size is part of the layout: read as 512-byte blocks, the first block of a 4 KiB
  // one holds the right words, the second does not.
  EXPECT_EQ(first_mismatch(b, 1000, 512, 7), 1001U);
  std::set<std::uint64_t> words;
  for (std::uint64_t lba = 0; lba < 64; ++lba) {
    for (std::uint64_t w = 0; w < 64; ++w) {
      words.insert(verify_word(7, lba, w));
    }
  }
  EXPECT_EQ(words.size(), 64U * 64U);
  a[3 * 512 + 100] ^= 1;  // one bit in block 1003
  EXPECT_EQ(first_mismatch(a, 1000, 512, 7), 1003U);
}

// What a test's "worker" learns back from the arena.
struct Results {
  std::mutex mu;
  std::vector<std::uint64_t> bad;
  std::atomic<std::uint64_t> done{0};
  std::atomic<bool> on_caller{false};
  std::vector<std::thread::id> callers;  // the threads that hand checks over (under mu)
};

void record(void* ctx, std::uint64_t bad_lba) noexcept {
  auto* r = static_cast<Results*>(ctx);
  std::lock_guard lock(r->mu);
  for (const auto& id : r->callers) {
    if (std::this_thread::get_id() == id) {
      r->on_caller = true;
    }
  }
  if (bad_lba != kNoMismatch) {
    r->bad.push_back(bad_lba);
  }
  r->done.fetch_add(1, std::memory_order_release);
}

TEST(Verifier, ChecksFromSeveralThreadsEachCompleteOnceOffTheCaller) {
  auto v = Verifier::create({}, 2);
  ASSERT_TRUE(v) << v.error().message();
  constexpr std::size_t kBuffers = 64, kBytes = 8192, kRounds = 20;
  std::vector<std::vector<std::uint8_t>> bufs(kBuffers, std::vector<std::uint8_t>(kBytes));
  for (std::size_t i = 0; i < kBuffers; ++i) {
    fill_pattern(bufs[i], i * 16, 512, 3);
  }
  bufs[10][5 * 512] ^= 0xff;  // LBA 165
  bufs[40][0] ^= 0xff;        // LBA 640
  Results results;
  std::vector<std::thread> submitters;
  for (int t = 0; t < 2; ++t) {
    submitters.emplace_back([&, t] {
      {
        std::lock_guard lock(results.mu);
        results.callers.push_back(std::this_thread::get_id());
      }
      for (std::size_t round = 0; round < kRounds; ++round) {
        for (std::size_t i = static_cast<std::size_t>(t); i < kBuffers; i += 2) {
          (*v)->check({bufs[i].data(), kBytes, i * 16, 512, 3, record, &results});
        }
      }
    });
  }
  for (auto& s : submitters) {
    s.join();
  }
  (*v)->wait_idle();
  EXPECT_EQ(results.done.load(std::memory_order_acquire), kBuffers * kRounds);
  EXPECT_EQ((*v)->blocks_checked(), kBuffers * kRounds * kBytes / 512);
  std::lock_guard lock(results.mu);
  ASSERT_EQ(results.callers.size(), 2U);
  EXPECT_EQ(results.bad.size(), 2 * kRounds);
  EXPECT_EQ(std::set<std::uint64_t>(results.bad.begin(), results.bad.end()), (std::set<std::uint64_t>{165, 640}));
  EXPECT_FALSE(results.on_caller.load()) << "checks run on the arena's threads, never on the thread that hands them over";
}

// The CPUs the checks ran on (sched_getcpu in the callback, which runs on the checking thread).
struct Cpus {
  std::mutex mu;
  std::set<int> seen;
  std::atomic<std::uint64_t> done{0};
};

void record_cpu(void* ctx, std::uint64_t) noexcept {
  auto* c = static_cast<Cpus*>(ctx);
  {
    std::lock_guard lock(c->mu);
    c->seen.insert(::sched_getcpu());
  }
  c->done.fetch_add(1, std::memory_order_release);
}

// Pinned to CPU 0, then (where there is one) CPU 1: TBB shares its threads among arenas, so the
// second Verifier's checks run on the CPU it names only if its threads re-pin themselves.
TEST(Verifier, DestroyingWaitsForChecksInFlightOnThePinnedCpu) {
  std::vector<std::uint8_t> buf(1 << 20);
  fill_pattern(buf, 0, 512, 1);
  const int last = std::thread::hardware_concurrency() > 1 ? 1 : 0;
  for (int cpu = 0; cpu <= last; ++cpu) {
    Cpus cpus;
    {
      auto v = Verifier::create({cpu}, 1);
      ASSERT_TRUE(v) << v.error().message();
      for (int i = 0; i < 32; ++i) {
        (*v)->check({buf.data(), buf.size(), 0, 512, 1, record_cpu, &cpus});
      }
    }  // destroyed: every check has reported
    EXPECT_EQ(cpus.done.load(std::memory_order_acquire), 32U);
    std::lock_guard lock(cpus.mu);
    EXPECT_EQ(cpus.seen, std::set<int>{cpu}) << "every check ran on CPU " << cpu;
  }
}

}  // namespace
}  // namespace vfe::bench
