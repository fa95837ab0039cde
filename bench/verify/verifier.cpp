#include "bench/verify/verifier.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/log.hpp"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace vfe::bench {
namespace {

// libtbb is not built with ThreadSanitizer, so the hand-over inside it (the enqueuing thread
// writes a task, an arena thread runs it) is invisible to TSan. These mark it on the task object
// itself: released once built, acquired before it runs, and released again once it ran, for the
// next task TBB builds in the same memory.
inline void tsan_release([[maybe_unused]] void* addr) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(addr);
#endif
}
inline void tsan_acquire([[maybe_unused]] void* addr) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(addr);
#endif
}

std::uint64_t next_id() noexcept {
  static std::atomic<std::uint64_t> last{0};
  return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

}  // namespace

#if defined(__SANITIZE_THREAD__)
// What the annotations cannot mark: TBB's own bookkeeping of a task's memory, which it hands from
// the arena thread that frees a task (after it ran) to the thread that builds the next task in the
// same memory (small_object_allocator::new_object), inside libtbb. Only races with a stack through
// that header are suppressed; the checks the tasks run are ordered by the annotations.
extern "C" const char* __tsan_default_suppressions() { return "race:_small_object_pool.h\n"; }
#endif

void fill_pattern(std::span<std::uint8_t> data, std::uint64_t lba, std::uint32_t block_size, std::uint64_t seed) noexcept {
  const std::uint64_t words_per_block = block_size / 8;
  for (std::uint64_t i = 0; i < data.size() / 8; ++i) {
    const std::uint64_t w = verify_word(seed, lba + i / words_per_block, i % words_per_block);
    std::memcpy(data.data() + i * 8, &w, 8);
  }
}

std::uint64_t first_mismatch(std::span<const std::uint8_t> data, std::uint64_t lba, std::uint32_t block_size,
                             std::uint64_t seed) noexcept {
  const std::uint64_t words_per_block = block_size / 8;
  for (std::uint64_t i = 0; i < data.size() / 8; ++i) {
    std::uint64_t got = 0;
    std::memcpy(&got, data.data() + i * 8, 8);
    if (got != verify_word(seed, lba + i / words_per_block, i % words_per_block)) {
      return lba + i / words_per_block;
    }
  }
  return kNoMismatch;
}

void Verifier::pin_this_thread() const noexcept {
  thread_local std::uint64_t pinned_for = 0;  // the id_ whose CPUs this thread has
  if (pinned_for == id_ || cpus_.empty()) {
    return;
  }
  pinned_for = id_;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int c : cpus_) {
    if (c >= 0 && c < CPU_SETSIZE) {
      CPU_SET(static_cast<unsigned>(c), &set);
    }
  }
  if (const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set); rc != 0) {
    log_warn("verify: cannot pin a checking thread to its CPUs: {}", std::strerror(rc));
  }
}

Verifier::Verifier(std::vector<int> cpus, unsigned threads)
    : cpus_(std::move(cpus)),
      id_(next_id()),
      // No slot for the thread that enqueues: it never joins the arena (enqueue only), so every
      // check runs on one of TBB's threads.
      arena_(static_cast<int>(std::max(threads, 1U)), 0) {
  arena_.initialize();
}

Result<std::unique_ptr<Verifier>> Verifier::create(std::vector<int> cpus, unsigned threads) {
  return std::unique_ptr<Verifier>(new Verifier(std::move(cpus), threads));
}

Verifier::~Verifier() {
  wait_idle();
  arena_.terminate();
}

void Verifier::run(const Check& c) noexcept {
  pin_this_thread();
  const std::uint64_t bad = first_mismatch({c.data, c.bytes}, c.lba, c.block_size, c.seed);
  blocks_.fetch_add(c.bytes / c.block_size, std::memory_order_relaxed);
  c.done(c.ctx, bad);
  pending_.fetch_sub(1, std::memory_order_acq_rel);  // wait_idle: everything done() did comes first
}

void Verifier::check(const Check& c) noexcept {
  pending_.fetch_add(1, std::memory_order_relaxed);
  // The task: a copy of the check. The fields are assigned in the constructors' bodies, after the
  // acquire, because TBB may build this task in memory an earlier task ran in (see tsan_release).
  struct Task {
    Verifier* self;  // no initialisers: nothing is written before the acquire
    Check check;
    Task(Verifier* s, const Check& c) noexcept {
      self = s;
      check = c;
      tsan_release(this);
    }
    Task(Task&& o) noexcept {
      tsan_acquire(&o);
      tsan_acquire(this);
      self = o.self;
      check = o.check;
      tsan_release(this);
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    Task& operator=(Task&&) = delete;
    ~Task() = default;
    void operator()() const noexcept {
      tsan_acquire(const_cast<Task*>(this));
      self->run(check);
      tsan_release(const_cast<Task*>(this));
    }
  };
  arena_.enqueue(Task(this, c));
}

void Verifier::wait_idle() noexcept {
  while (pending_.load(std::memory_order_acquire) != 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace vfe::bench
