// Interrupt delivery: how many eventfd signals per second one consumer core takes in, and how
// long a wake-up takes, for vfio-engine's io_uring path (Worker::watch) against its peers in
// the same run: epoll_wait + read(2), and one blocking read(2) per eventfd on its own thread.
// A producer thread (standing in for the device and the kernel's MSI-X path) writes the
// eventfds. See bench/README.md for the command and the results.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "engine/worker.hpp"

namespace {
using Clock = std::chrono::steady_clock;

void pin(int cpu) {
  if (std::thread::hardware_concurrency() < 2) {
    return;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<unsigned>(cpu), &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

std::vector<int> make_eventfds(int n) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    fds.push_back(::eventfd(0, EFD_CLOEXEC));
  }
  return fds;
}

void close_all(const std::vector<int>& fds) {
  for (const int fd : fds) {
    ::close(fd);
  }
}

// The producer: `writes` eventfd writes, round-robin over `fds`, from CPU 1.
std::thread produce(const std::vector<int>& fds, std::uint64_t writes) {
  return std::thread([&fds, writes] {
    pin(1);
    const std::uint64_t one = 1;
    for (std::uint64_t i = 0; i < writes; ++i) {
      static_cast<void>(::write(fds[i % fds.size()], &one, sizeof(one)));
    }
  });
}

constexpr std::uint64_t kWrites = 200'000;

// Throughput: the consumer counts every signal (the eventfd counters add up to kWrites).
void BM_Irq_IoUring(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  vfe::engine::WorkerOptions o;
  o.mode = vfe::engine::WorkerMode::interrupt;
  o.cpus = {0};
  auto worker = vfe::engine::Worker::start(std::move(o)).value();
  for (auto _ : state) {
    const auto fds = make_eventfds(n);
    std::atomic<std::uint64_t> seen{0};
    for (const int fd : fds) {
      static_cast<void>(worker->watch(fd, [&](std::uint64_t c) { seen.fetch_add(c, std::memory_order_relaxed); }));
    }
    auto producer = produce(fds, kWrites);
    while (seen.load(std::memory_order_relaxed) < kWrites) {
      std::this_thread::yield();
    }
    producer.join();
    for (const int fd : fds) {
      static_cast<void>(worker->unwatch(fd));
    }
    close_all(fds);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kWrites));
}

void BM_Irq_Epoll(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    const auto fds = make_eventfds(n);
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    for (const int fd : fds) {
      epoll_event ev{EPOLLIN, {.fd = fd}};
      ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    std::uint64_t seen = 0;
    std::thread consumer([&] {
      pin(0);
      epoll_event ready[64];
      while (seen < kWrites) {
        const int k = ::epoll_wait(ep, ready, 64, 100);
        for (int i = 0; i < k; ++i) {
          std::uint64_t c = 0;
          if (::read(ready[i].data.fd, &c, sizeof(c)) == sizeof(c)) {
            seen += c;
          }
        }
      }
    });
    auto producer = produce(fds, kWrites);
    producer.join();
    consumer.join();
    ::close(ep);
    close_all(fds);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kWrites));
}

// One thread per eventfd, each blocked in read(2): how a naive driver waits per vector.
void BM_Irq_BlockingRead(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    const auto fds = make_eventfds(n);
    std::atomic<std::uint64_t> seen{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> readers;
    for (const int fd : fds) {
      readers.emplace_back([&, fd] {
        pin(0);
        std::uint64_t c = 0;
        while (!done.load(std::memory_order_relaxed) && ::read(fd, &c, sizeof(c)) == sizeof(c)) {
          if (seen.fetch_add(c, std::memory_order_relaxed) + c >= kWrites) {
            done = true;
          }
        }
      });
    }
    auto producer = produce(fds, kWrites);
    producer.join();
    while (seen.load() < kWrites) {
      std::this_thread::yield();
    }
    done = true;
    const std::uint64_t one = 1;
    for (const int fd : fds) {
      static_cast<void>(::write(fd, &one, sizeof(one)));  // release readers still blocked
    }
    for (auto& t : readers) {
      t.join();
    }
    close_all(fds);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kWrites));
}

// Wake-up latency: ping-pong on one eventfd. The producer stamps the time, signals, and waits
// for the consumer's acknowledgement; the p50 of (ack - stamp) over the run is reported.
template <class StartConsumer>
void latency(benchmark::State& state, StartConsumer start) {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  std::atomic<std::int64_t> acked{0};
  auto stop = start(fd, acked);
  pin(1);
  std::vector<double> samples;
  for (auto _ : state) {
    const auto t0 = Clock::now().time_since_epoch().count();
    acked.store(0, std::memory_order_relaxed);
    const std::uint64_t one = 1;
    static_cast<void>(::write(fd, &one, sizeof(one)));
    std::int64_t t1 = 0;
    while ((t1 = acked.load(std::memory_order_acquire)) == 0) {
    }
    samples.push_back(static_cast<double>(t1 - t0));
  }
  stop();
  ::close(fd);
  std::sort(samples.begin(), samples.end());
  state.counters["p50_ns"] = samples.empty() ? 0 : samples[samples.size() / 2];
  state.counters["p99_ns"] = samples.empty() ? 0 : samples[samples.size() * 99 / 100];
}

void BM_WakeLatency_IoUring(benchmark::State& state) {
  std::unique_ptr<vfe::engine::Worker> worker;
  latency(state, [&](int fd, std::atomic<std::int64_t>& acked) {
    vfe::engine::WorkerOptions o;
    o.mode = vfe::engine::WorkerMode::interrupt;
    o.cpus = {0};
    worker = vfe::engine::Worker::start(std::move(o)).value();
    static_cast<void>(worker->watch(fd, [&acked](std::uint64_t) {
      acked.store(Clock::now().time_since_epoch().count(), std::memory_order_release);
    }));
    return [&worker, fd] {
      static_cast<void>(worker->unwatch(fd));
      worker.reset();
    };
  });
}

void BM_WakeLatency_Epoll(benchmark::State& state) {
  std::thread consumer;
  std::atomic<bool> stop{false};
  int ep = -1;
  latency(state, [&](int fd, std::atomic<std::int64_t>& acked) {
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{EPOLLIN, {.fd = fd}};
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    consumer = std::thread([&, fd] {
      pin(0);
      epoll_event ready[1];
      while (!stop.load(std::memory_order_relaxed)) {
        if (::epoll_wait(ep, ready, 1, 50) == 1) {
          std::uint64_t c = 0;
          static_cast<void>(::read(fd, &c, sizeof(c)));
          acked.store(Clock::now().time_since_epoch().count(), std::memory_order_release);
        }
      }
    });
    return [&] {
      stop = true;
      consumer.join();
      ::close(ep);
    };
  });
}

}  // namespace

BENCHMARK(BM_Irq_IoUring)->Arg(1)->Arg(8)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Irq_Epoll)->Arg(1)->Arg(8)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Irq_BlockingRead)->Arg(1)->Arg(8)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WakeLatency_IoUring)->Iterations(20000)->UseRealTime();
BENCHMARK(BM_WakeLatency_Epoll)->Iterations(20000)->UseRealTime();
BENCHMARK_MAIN();
