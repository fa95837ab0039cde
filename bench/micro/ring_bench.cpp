/// \file
/// Throughput of vfe::engine::SpscRing and MpscRing against peer queues, in the same run.
///
/// One benchmark = one queue at one batch size. The benchmark thread is the consumer: each
/// iteration pops kItemsPerIteration items; producer threads (started before the timed loop,
/// stopped after it) push without pause, so the time measures steady-state transfer. Every
/// queue gets the same capacity (kCapacity), item type (uint64_t), batch size, backoff and
/// pinning; a queue without a bulk call gets a loop of single calls. The consumer checks each
/// value (order per producer), so a broken queue fails the benchmark instead of looking fast.
///
/// Pinning: the consumer runs on the first CPU this process may use and the SPSC producer on
/// the second. MPSC: producer 0 on the second CPU, producer 1 on the third, which on a 2-CPU
/// machine is the first again, so there producer 1 shares a core with the consumer.
///
/// Run (many short interleaved repetitions; results and their reading in bench/README.md):
///   vfe_ring_bench --benchmark_min_time=0.05 --benchmark_repetitions=20
///                  --benchmark_enable_random_interleaving=true

#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <atomic_queue/atomic_queue.h>
#include <boost/lockfree/spsc_queue.hpp>
#include <concurrentqueue/concurrentqueue.h>
#include <oneapi/tbb/concurrent_queue.h>
#include <readerwriterqueue/readerwriterqueue.h>

#include "base/units.hpp"
#include "engine/mpsc_ring.hpp"
#include "engine/spsc_ring.hpp"

namespace {

using Item = std::uint64_t;
constexpr std::size_t kCapacity = 4096;
constexpr std::size_t kItemsPerIteration = std::size_t{1} << 16;
// MPSC items carry their producer in the top byte and a sequence number below it.
constexpr unsigned kProducerShift = 56;
constexpr Item kSeqMask = (Item{1} << kProducerShift) - 1;

// ---- the same pinning and backoff for every queue ----

/// The CPUs this process may run on, in order.
std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) {
        cpus.push_back(cpu);
      }
    }
  }
  return cpus;
}

/// Pins the calling thread to the `slot`-th allowed CPU (modulo their number); does nothing
/// on a machine with fewer than 2 CPUs.
void pin_self(std::size_t slot) {
  static const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2) {
    return;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpus[slot % cpus.size()], &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/// Spins briefly on a full or empty queue, then yields (the other side may share this core).
class Backoff {
 public:
  void wait() noexcept {
    if (++spins_ < 64) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
  void reset() noexcept { spins_ = 0; }

 private:
  unsigned spins_ = 0;
};

// ---- adapters: push(items, n) and pop(out, n) return how many moved (0: full / empty) ----

/// Producer or consumer end of a queue that keeps no per-thread state.
template <class Q>
struct Plain {
  Q* q;
  std::size_t push(const Item* items, std::size_t n) noexcept { return q->push(items, n); }
  std::size_t pop(Item* out, std::size_t n) noexcept { return q->pop(out, n); }
};

class VfeSpsc {
 public:
  explicit VfeSpsc(std::size_t capacity) : ring_(capacity) {}
  std::size_t push(const Item* items, std::size_t n) noexcept {
    return n == 1 ? (ring_.try_push(*items) ? 1 : 0) : ring_.push_bulk({items, n});
  }
  std::size_t pop(Item* out, std::size_t n) noexcept {
    return n == 1 ? (ring_.try_pop(*out) ? 1 : 0) : ring_.pop_bulk({out, n});
  }
  Plain<VfeSpsc> producer() { return {this}; }
  Plain<VfeSpsc> consumer() { return {this}; }

 private:
  vfe::engine::SpscRing<Item> ring_;
};

class VfeMpsc {
 public:
  explicit VfeMpsc(std::size_t capacity) : ring_(capacity) {}
  std::size_t push(const Item* items, std::size_t n) noexcept {
    return n == 1 ? (ring_.try_push(*items) ? 1 : 0) : ring_.push_bulk({items, n});
  }
  std::size_t pop(Item* out, std::size_t n) noexcept {
    return n == 1 ? (ring_.try_pop(*out) ? 1 : 0) : ring_.pop_bulk({out, n});
  }
  Plain<VfeMpsc> producer() { return {this}; }
  Plain<VfeMpsc> consumer() { return {this}; }

 private:
  vfe::engine::MpscRing<Item> ring_;
};

class BoostSpsc {
 public:
  explicit BoostSpsc(std::size_t capacity) : q_(capacity) {}
  std::size_t push(const Item* items, std::size_t n) noexcept {
    return n == 1 ? (q_.push(*items) ? 1 : 0) : q_.push(items, n);
  }
  std::size_t pop(Item* out, std::size_t n) noexcept {
    return n == 1 ? (q_.pop(*out) ? 1 : 0) : q_.pop(out, n);
  }
  Plain<BoostSpsc> producer() { return {this}; }
  Plain<BoostSpsc> consumer() { return {this}; }

 private:
  boost::lockfree::spsc_queue<Item> q_;
};

/// Loops of single calls for queues without a bulk API.
template <class Self>
struct SingleLoops {
  std::size_t push(const Item* items, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n && static_cast<Self*>(this)->push_one(items[i])) {
      ++i;
    }
    return i;
  }
  std::size_t pop(Item* out, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n && static_cast<Self*>(this)->pop_one(out[i])) {
      ++i;
    }
    return i;
  }
  Plain<Self> producer() { return {static_cast<Self*>(this)}; }
  Plain<Self> consumer() { return {static_cast<Self*>(this)}; }
};

class ReaderWriter : public SingleLoops<ReaderWriter> {
 public:
  explicit ReaderWriter(std::size_t capacity) : q_(capacity) {}
  bool push_one(Item v) noexcept { return q_.try_enqueue(v); }
  bool pop_one(Item& v) noexcept { return q_.try_dequeue(v); }

 private:
  moodycamel::ReaderWriterQueue<Item> q_;
};

/// atomic_queue's fixed-size queue in its SPSC mode (NIL = 0, so items start at 1).
class AtomicQueueSpsc : public SingleLoops<AtomicQueueSpsc> {
 public:
  explicit AtomicQueueSpsc(std::size_t /*capacity: kCapacity, fixed at compile time*/)
      : q_(std::make_unique<Queue>()) {}
  bool push_one(Item v) noexcept { return q_->try_push(v); }
  bool pop_one(Item& v) noexcept { return q_->try_pop(v); }

 private:
  //                                      size       NIL  minimise contention, max throughput,
  //                                                       total order, SPSC
  using Queue = atomic_queue::AtomicQueue<Item, kCapacity, Item{0}, true, true, false, true>;
  std::unique_ptr<Queue> q_;
};

class TbbBounded : public SingleLoops<TbbBounded> {
 public:
  explicit TbbBounded(std::size_t capacity) { q_.set_capacity(static_cast<std::ptrdiff_t>(capacity)); }
  bool push_one(Item v) noexcept { return q_.try_push(v); }
  bool pop_one(Item& v) noexcept { return q_.try_pop(v); }

 private:
  tbb::concurrent_bounded_queue<Item> q_;
};

/// moodycamel::ConcurrentQueue with tokens (its fastest mode), allocation-free try_* calls,
/// and a block index large enough that one producer can hold the whole capacity.
class Moodycamel {
  struct Traits : moodycamel::ConcurrentQueueDefaultTraits {
    static constexpr std::size_t EXPLICIT_INITIAL_INDEX_SIZE = kCapacity / BLOCK_SIZE;
  };
  using Queue = moodycamel::ConcurrentQueue<Item, Traits>;

 public:
  explicit Moodycamel(std::size_t capacity) : q_(capacity) {}

  struct Producer {
    explicit Producer(Queue& q) : q_(q), token_(q) {}
// g++ 12 at -O3 reports a false -Wstringop-overflow inside moodycamel's inlined bulk enqueue
// (an atomic load it believes writes 0 bytes); the peer's code is not ours to change.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
    std::size_t push(const Item* items, std::size_t n) noexcept {
      return n == 1 ? (q_.try_enqueue(token_, *items) ? 1 : 0)
                    : (q_.try_enqueue_bulk(token_, items, n) ? n : 0);  // all or nothing
    }
#pragma GCC diagnostic pop
    Queue& q_;
    moodycamel::ProducerToken token_;
  };
  struct Consumer {
    explicit Consumer(Queue& q) : q_(q), token_(q) {}
    std::size_t pop(Item* out, std::size_t n) noexcept {
      return n == 1 ? (q_.try_dequeue(token_, *out) ? 1 : 0) : q_.try_dequeue_bulk(token_, out, n);
    }
    Queue& q_;
    moodycamel::ConsumerToken token_;
  };
  Producer producer() { return Producer(q_); }
  Consumer consumer() { return Consumer(q_); }

 private:
  Queue q_;
};

// ---- the harness ----

/// Pushes tagged, increasing values (from 1: atomic_queue reserves 0) in batches of kBatch
/// until `stop`.
template <class Q, std::size_t kBatch>
void produce(Q& queue, const std::atomic<bool>& stop, std::size_t cpu_slot, Item tag) {
  pin_self(cpu_slot);
  auto producer = queue.producer();
  std::array<Item, kBatch> batch{};
  Item next = 1;
  Backoff backoff;
  while (!stop.load(std::memory_order_relaxed)) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      batch[i] = tag | (next + i);
    }
    for (std::size_t done = 0; done < kBatch;) {
      const std::size_t n = producer.push(batch.data() + done, kBatch - done);
      if (n == 0) {
        if (stop.load(std::memory_order_relaxed)) {
          return;
        }
        backoff.wait();
        continue;
      }
      done += n;
      backoff.reset();
    }
    next += kBatch;
  }
}

/// Checks that each producer's values arrive as 1, 2, 3, ...
template <std::size_t kProducers>
class OrderCheck {
 public:
  void see(const Item* items, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t p = (items[i] >> kProducerShift) % kProducers;
      errors_ += (items[i] & kSeqMask) != next_[p] ? 1 : 0;
      next_[p] = (items[i] & kSeqMask) + 1;
    }
  }
  [[nodiscard]] std::uint64_t errors() const noexcept { return errors_; }

 private:
  std::array<Item, kProducers> next_ = filled_with_one();
  std::uint64_t errors_ = 0;
  static constexpr std::array<Item, kProducers> filled_with_one() {
    std::array<Item, kProducers> a{};
    a.fill(1);
    return a;
  }
};

template <class Q, std::size_t kBatch, std::size_t kProducers>
void bm_transfer(benchmark::State& state) {
  pin_self(0);
  Q queue(kCapacity);
  alignas(vfe::kCacheLine) std::atomic<bool> stop{false};
  std::vector<std::thread> producers;
  for (std::size_t p = 0; p < kProducers; ++p) {
    producers.emplace_back(produce<Q, kBatch>, std::ref(queue), std::cref(stop), p + 1,
                           Item{p} << kProducerShift);
  }
  auto consumer = queue.consumer();
  std::array<Item, kBatch> out{};
  OrderCheck<kProducers> check;
  Backoff backoff;
  std::uint64_t total = 0;
  for (auto _ : state) {
    for (std::size_t got = 0; got < kItemsPerIteration;) {
      const std::size_t n = consumer.pop(out.data(), kBatch);
      if (n == 0) {
        backoff.wait();
        continue;
      }
      backoff.reset();
      check.see(out.data(), n);
      got += n;
      total += n;
    }
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& t : producers) {
    t.join();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(total));
  if (check.errors() != 0) {
    state.SkipWithError("items arrived out of order or were lost");
  }
}

template <class Q, std::size_t kBatch, std::size_t kProducers>
void add(const std::string& kind, const std::string& queue) {
  const std::string name = kind + "/batch:" + std::to_string(kBatch) + "/" + queue;
  benchmark::RegisterBenchmark(name.c_str(), bm_transfer<Q, kBatch, kProducers>)->UseRealTime();
}

template <std::size_t kBatch>
void add_all() {
  add<VfeSpsc, kBatch, 1>("spsc", "vfe::SpscRing");
  add<BoostSpsc, kBatch, 1>("spsc", "boost::lockfree::spsc_queue");
  add<ReaderWriter, kBatch, 1>("spsc", "moodycamel::ReaderWriterQueue");
  add<Moodycamel, kBatch, 1>("spsc", "moodycamel::ConcurrentQueue");
  add<AtomicQueueSpsc, kBatch, 1>("spsc", "atomic_queue::AtomicQueue(SPSC)");
  add<TbbBounded, kBatch, 1>("spsc", "tbb::concurrent_bounded_queue");
  add<VfeMpsc, kBatch, 2>("mpsc2", "vfe::MpscRing");
  add<Moodycamel, kBatch, 2>("mpsc2", "moodycamel::ConcurrentQueue");
}

}  // namespace

int main(int argc, char** argv) {
  add_all<1>();
  add_all<32>();
  benchmark::AddCustomContext("ring_capacity", std::to_string(kCapacity));
  benchmark::AddCustomContext("items_per_iteration", std::to_string(kItemsPerIteration));
  benchmark::AddCustomContext("allowed_cpus", std::to_string(allowed_cpus().size()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
