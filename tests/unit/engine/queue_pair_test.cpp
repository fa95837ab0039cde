// QueuePair against a software device: a thread that takes "descriptors" from a submission
// ring, completes them through a completion ring, and signals an eventfd as an interrupt would.
// Many application threads submit; every request must complete exactly once, on the worker, in
// every worker mode and both completion modes.
#include "engine/queue_pair.hpp"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "engine/spsc_ring.hpp"

namespace vfe::engine {
namespace {
using namespace std::chrono_literals;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kPerThread = 5'000;
#else
constexpr int kPerThread = 50'000;
#endif

struct TestRequest : Request {
  std::atomic<int> completions{0};
  bool on_worker = true;
};

// The device side lives on its own thread; the queue side (the driver hooks) on the worker.
class SoftQueue final : public QueuePair {
 public:
  SoftQueue() : QueuePair(256), sq_(64), cq_(64), irq_(::eventfd(0, EFD_CLOEXEC)) {
    device_ = std::thread([this] { run_device(); });
  }
  ~SoftQueue() override {
    static_cast<void>(detach());
    stop_ = true;
    device_.join();
    ::close(irq_);
  }
  int irq_fd() const { return irq_; }
  std::atomic<std::uint64_t> doorbells{0};
  // The interrupt mask, harsher than MSI-X's: an interrupt that comes while masked is lost, not
  // held pending, so only the worker's last look after unmasking can find its completions.
  std::atomic<unsigned> masked{0};
  std::atomic<std::uint64_t> mask_calls{0};
  std::atomic<std::uint64_t> lost_interrupts{0};

 private:
  std::size_t submit_to_device(std::span<Request*> reqs) noexcept override {
    const std::size_t n = sq_.push_bulk(std::span<Request* const>(reqs.data(), reqs.size()));
    if (n != 0) {
      doorbells.fetch_add(1, std::memory_order_relaxed);  // one doorbell per batch
    }
    return n;
  }
  // Read-modify-writes on both sides (see run_device).
  void mask_interrupt(bool m) noexcept override {
    masked.exchange(m ? 1U : 0U, std::memory_order_acq_rel);
    mask_calls.fetch_add(1, std::memory_order_relaxed);
  }
  std::size_t reap_completions() noexcept override {
    Request* done[32];
    std::size_t total = 0;
    for (std::size_t n; (n = cq_.pop_bulk(std::span<Request*>(done))) != 0; total += n) {
      for (std::size_t i = 0; i < n; ++i) {
        done[i]->on_complete(done[i], 0);
      }
    }
    return total;
  }
  void run_device() {
    Request* batch[16];
    while (!stop_.load(std::memory_order_relaxed)) {
      const std::size_t n = sq_.pop_bulk(std::span<Request*>(batch));
      if (n == 0) {
        std::this_thread::yield();
        continue;
      }
      std::size_t posted = 0;
      while (posted < n && !stop_.load(std::memory_order_relaxed)) {
        posted += cq_.push_bulk(std::span<Request* const>(batch + posted, n - posted));
      }
      // A read-modify-write of the mask word, as the worker's unmask is one: the two are
      // ordered, so either this comes first (and the worker's last look, after its unmask,
      // finds these completions) or the unmask does and this sees it.
      if (masked.fetch_or(0U, std::memory_order_acq_rel) != 0) {
        lost_interrupts.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      const std::uint64_t one = 1;
      static_cast<void>(::write(irq_, &one, sizeof(one)));  // the "MSI-X vector"
    }
  }

  SpscRing<Request*> sq_;  // worker -> device
  SpscRing<Request*> cq_;  // device -> worker
  int irq_;
  std::atomic<bool> stop_{false};
  std::thread device_;
};

struct Case {
  WorkerMode worker;
  CompletionMode completion;
};

class QueuePairModes : public ::testing::TestWithParam<Case> {};

TEST_P(QueuePairModes, EveryRequestCompletesOnceOnTheWorker) {
  WorkerOptions o;
  o.mode = GetParam().worker;
  o.idle_before_sleep = 20us;
  auto worker = Worker::start(std::move(o));
  ASSERT_TRUE(worker) << worker.error().message();
  SoftQueue queue;
  ASSERT_TRUE(queue.attach(**worker, GetParam().completion, queue.irq_fd()));

  constexpr int kThreads = 2;
  std::vector<TestRequest> reqs(kThreads * kPerThread);
  Worker* w = worker->get();
  for (auto& r : reqs) {
    r.user = w;
    r.on_complete = [](Request* base, int status) noexcept {
      auto* req = static_cast<TestRequest*>(base);
      req->on_worker = req->on_worker && static_cast<Worker*>(req->user)->on_worker_thread() && status == 0;
      req->completions.fetch_add(1, std::memory_order_relaxed);
    };
  }
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Request* r = &reqs[static_cast<std::size_t>(t * kPerThread + i)];
        while (!queue.try_submit(r)) {
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& s : submitters) {
    s.join();
  }
  auto all_done = [&] {
    for (const auto& r : reqs) {
      if (r.completions.load(std::memory_order_relaxed) == 0) {
        return false;
      }
    }
    return true;
  };
  for (int i = 0; i < 10'000 && !all_done(); ++i) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(queue.detach());
  EXPECT_EQ(queue.masked.load(), 0U) << "the worker leaves the vector unmasked when the queue goes";
  if (GetParam().worker == WorkerMode::adaptive && GetParam().completion == CompletionMode::adaptive) {
    EXPECT_GT(queue.mask_calls.load(), 0U) << "an adaptive queue is masked while its worker polls";
  } else {
    EXPECT_EQ(queue.mask_calls.load(), 0U) << "only adaptive queues on adaptive workers are masked";
  }
  int once = 0;
  for (const auto& r : reqs) {
    EXPECT_TRUE(r.on_worker);
    once += r.completions.load() == 1 ? 1 : 0;
  }
  EXPECT_EQ(once, kThreads * kPerThread);
  EXPECT_LT(queue.doorbells.load(), static_cast<std::uint64_t>(kThreads * kPerThread))
      << "submissions should be batched under load";
}

INSTANTIATE_TEST_SUITE_P(
    AllModes, QueuePairModes,
    ::testing::Values(Case{WorkerMode::polling, CompletionMode::polling},
                      Case{WorkerMode::polling, CompletionMode::interrupt},
                      Case{WorkerMode::interrupt, CompletionMode::interrupt},
                      Case{WorkerMode::adaptive, CompletionMode::interrupt},
                      Case{WorkerMode::adaptive, CompletionMode::polling},
                      Case{WorkerMode::adaptive, CompletionMode::adaptive},
                      Case{WorkerMode::interrupt, CompletionMode::adaptive}),
    [](const auto& test) {
      return std::string(to_string(test.param.worker)) + "_" + to_string(test.param.completion);
    });

TEST(QueuePair, InterruptModeNeedsAnEventfdAndAttachesOnce) {
  auto worker = Worker::start({});
  ASSERT_TRUE(worker);
  SoftQueue queue;
  EXPECT_FALSE(queue.attach(**worker, CompletionMode::interrupt, -1));
  ASSERT_TRUE(queue.attach(**worker, CompletionMode::polling));
  EXPECT_FALSE(queue.attach(**worker, CompletionMode::polling));
  ASSERT_TRUE(queue.detach());
  EXPECT_FALSE(queue.detach());
}

// A queue pair that outlives its worker would call into freed memory: the worker refuses to go.
TEST(QueuePairDeathTest, DestroyingAWorkerWithAQueueAttachedDiesSayingWhy) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto worker = Worker::start({});
        auto* queue = new SoftQueue();  // never freed: it must outlive the worker
        if (!worker || !queue->attach(**worker, CompletionMode::polling)) {
          std::_Exit(0);  // not the death expected: the test fails
        }
        worker->reset();
      },
      "worker destroyed with 1 queue pair\\(s\\) still attached");
}

TEST(CompletionMode, ParsesTheCommandLineWordsAndPicksAMatchingWorker) {
  EXPECT_EQ(parse_completion_mode("polling"), CompletionMode::polling);
  EXPECT_EQ(parse_completion_mode("poll"), CompletionMode::polling);
  EXPECT_EQ(parse_completion_mode("interrupt"), CompletionMode::interrupt);
  EXPECT_EQ(parse_completion_mode("irq"), CompletionMode::interrupt);
  EXPECT_EQ(parse_completion_mode("adaptive"), CompletionMode::adaptive);
  for (const char* bad : {"", "Polling", "intr", "adaptive ", "pol"}) {
    EXPECT_FALSE(parse_completion_mode(bad).has_value()) << "'" << bad << "'";
  }
  EXPECT_EQ(worker_mode_for(CompletionMode::polling), WorkerMode::polling);
  EXPECT_EQ(worker_mode_for(CompletionMode::interrupt), WorkerMode::interrupt);
  EXPECT_EQ(worker_mode_for(CompletionMode::adaptive), WorkerMode::adaptive);
}

}  // namespace
}  // namespace vfe::engine
