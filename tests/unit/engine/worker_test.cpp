// Worker: interrupt eventfds delivered through io_uring, tasks posted from other threads,
// wakeups, and shutdown, in every mode. Real eventfds and a real io_uring; runs under TSan in
// the tsan preset.
#include "engine/worker.hpp"

#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tests/unit/support/assert_ok.hpp"

namespace vfe::engine {
namespace {
using namespace std::chrono_literals;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t kEvents = 100'000;  // sanitizers slow each write(2) down a lot
#else
constexpr std::uint64_t kEvents = 1'000'000;
#endif

Result<std::unique_ptr<Worker>> start(WorkerMode mode) {
  WorkerOptions o;
  o.mode = mode;
  o.idle_before_sleep = 20us;
  o.name = std::string("test-") + to_string(mode);
  return Worker::start(std::move(o));
}

class WorkerModes : public ::testing::TestWithParam<WorkerMode> {};

// Another thread writes the eventfd kEvents times; the handler must see exactly kEvents in
// total (a lost event would make less, a duplicated one more), all on the worker thread.
TEST_P(WorkerModes, DeliversEveryEventOnceOnTheWorker) {
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start(GetParam()));
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::atomic<std::uint64_t> seen{0};
  std::atomic<bool> off_thread{false};
  ASSERT_TRUE(worker->watch(fd, [&](std::uint64_t count) {
    if (!worker->on_worker_thread()) {
      off_thread = true;
    }
    seen.fetch_add(count, std::memory_order_relaxed);
  }));
  std::thread writer([fd] {
    const std::uint64_t one = 1;
    for (std::uint64_t i = 0; i < kEvents; ++i) {
      ASSERT_EQ(::write(fd, &one, sizeof(one)), 8);
    }
  });
  writer.join();
  for (int i = 0; i < 5000 && seen.load() < kEvents; ++i) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(seen.load(), kEvents);
  EXPECT_FALSE(off_thread.load());
  ASSERT_TRUE(worker->unwatch(fd));
  const std::uint64_t after = seen.load();
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(fd, &one, sizeof(one)), 8);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(seen.load(), after) << "a handler ran after unwatch returned";
  worker.reset();
  ::close(fd);
}

// A pollable that finds work on every loop (a polled queue under load) must not keep the worker
// from its watched eventfds: their completions appear only when it enters the ring.
class AlwaysBusy final : public Pollable {
 public:
  std::size_t poll() noexcept override { return 1; }
};

TEST_P(WorkerModes, ABusyPollableDoesNotStarveInterrupts) {
  AlwaysBusy busy;  // before the worker: outlives it even when an ASSERT below returns early
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start(GetParam()));
  ASSERT_TRUE(worker->add(busy));
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::atomic<std::uint64_t> seen{0};
  ASSERT_TRUE(worker->watch(fd, [&](std::uint64_t count) { seen.fetch_add(count, std::memory_order_relaxed); }));
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(fd, &one, sizeof(one)), 8);
  for (int i = 0; i < 2000 && seen.load() == 0; ++i) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(seen.load(), 1U) << "the interrupt never reached its handler";
  ASSERT_TRUE(worker->unwatch(fd));
  ASSERT_TRUE(worker->remove(busy));
  worker.reset();
  ::close(fd);
}

// Tasks from several threads all run, once, and a sleeping worker is always woken.
TEST_P(WorkerModes, PostedTasksAllRunWithoutLostWakeups) {
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start(GetParam()));
  constexpr int kThreads = 3;
  constexpr int kPerThread = 20'000;
  std::atomic<int> ran{0};
  auto bump = [](void* p) { static_cast<std::atomic<int>*>(p)->fetch_add(1, std::memory_order_relaxed); };
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        while (!worker->try_post(bump, &ran)) {
          std::this_thread::yield();
        }
        if (i % 1000 == 0) {
          std::this_thread::sleep_for(50us);  // let an interrupt-mode worker fall asleep
        }
      }
    });
  }
  for (auto& t : posters) {
    t.join();
  }
  for (int i = 0; i < 5000 && ran.load() < kThreads * kPerThread; ++i) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(ran.load(), kThreads * kPerThread);
  if (GetParam() == WorkerMode::polling) {
    EXPECT_EQ(worker->stats().sleeps.load(), 0U) << "a polling worker never sleeps";
  }
}

// Destroying a worker while an eventfd keeps firing returns promptly and leaks nothing (ASan
// checks the leak part).
TEST_P(WorkerModes, ShutdownWithEventsInFlight) {
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start(GetParam()));
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);  // O_NONBLOCK: the poll-then-read path
  ASSERT_GE(fd, 0);
  std::atomic<std::uint64_t> seen{0};
  ASSERT_TRUE(worker->watch(fd, [&](std::uint64_t c) { seen.fetch_add(c); }));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    const std::uint64_t one = 1;
    while (!stop.load()) {
      static_cast<void>(::write(fd, &one, sizeof(one)));
    }
  });
  std::this_thread::sleep_for(20ms);
  const auto t0 = std::chrono::steady_clock::now();
  worker.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  stop = true;
  writer.join();
  EXPECT_GT(seen.load(), 0U);
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(AllModes, WorkerModes,
                         ::testing::Values(WorkerMode::polling, WorkerMode::interrupt,
                                           WorkerMode::adaptive),
                         [](const auto& test) { return std::string(to_string(test.param)); });

// A read that fails once does not end a watch. The fd here is a UDP socket with an error pending
// (an ICMP port unreachable for a datagram it sent): its first read fails with ECONNREFUSED, and
// the next datagram must still reach the handler.
// A ring op (what a ublk queue keeps on the worker's ring): a read of a pipe that another
// thread fills later completes on the worker, once, with the CQE's result, in every mode (an
// interrupt-mode worker asleep in io_uring wakes for it).
TEST_P(WorkerModes, ARingOpCompletesOnTheWorker) {
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start(GetParam()));
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  struct Op : RingOp {
    Worker* worker = nullptr;
    char byte = 0;
    std::atomic<int> completions{0};
    std::atomic<int> res{0};
    std::atomic<bool> on_worker{false};
  } op;
  op.worker = worker.get();
  op.complete = [](RingOp* o, int res) noexcept {
    auto& self = *static_cast<Op*>(o);
    self.on_worker = self.worker->on_worker_thread();
    self.res = res;
    self.completions.fetch_add(1);
  };
  bool submitted = false;
  ASSERT_TRUE(worker->run_sync([&] {
    io_uring_sqe sqe{};
    io_uring_prep_read(&sqe, fds[0], &op.byte, 1, 0);
    submitted = worker->ring_submit(op, sqe);
  }));
  ASSERT_TRUE(submitted);
  std::this_thread::sleep_for(20ms);  // long enough for an interrupt-mode worker to sleep
  EXPECT_EQ(op.completions.load(), 0);
  ASSERT_EQ(::write(fds[1], "x", 1), 1);
  for (int i = 0; i < 5000 && op.completions.load() == 0; ++i) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(op.completions.load(), 1);
  EXPECT_EQ(op.res.load(), 1);
  EXPECT_EQ(op.byte, 'x');
  EXPECT_TRUE(op.on_worker.load());
  std::size_t in_flight = 1;
  ASSERT_TRUE(worker->run_sync([&] { in_flight = worker->ring_ops_in_flight(); }));
  EXPECT_EQ(in_flight, 0U);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(Worker, AWatchOutlivesAFailedRead) {
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, Worker::start({}));
  const auto loopback = [](std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  };
  const auto port_of = [](int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    return ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 ? ntohs(a.sin_port) : 0;
  };
  // A port nobody listens on: taken, then given back.
  Fd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in any = loopback(0);
  ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
  const std::uint16_t dead = port_of(probe.get());
  probe.reset();
  const Fd rx(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(rx.get(), reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
  sockaddr_in to = loopback(dead);
  ASSERT_EQ(::connect(rx.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0);
  ASSERT_EQ(::send(rx.get(), "x", 1, 0), 1);
  pollfd p{rx.get(), 0, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no ICMP error came back";
  ASSERT_NE(p.revents & POLLERR, 0);
  std::atomic<std::uint64_t> seen{0};
  ASSERT_TRUE(worker->watch(rx.get(), [&](std::uint64_t v) { seen.store(v); }));
  std::this_thread::sleep_for(50ms);  // the first read fails in the meantime
  // Now from the port rx is connected to, so that it takes the datagram.
  const Fd tx(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(tx.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0);
  const std::uint64_t value = 0x1234'5678'9abc'def0ULL;
  sockaddr_in rx_addr = loopback(port_of(rx.get()));
  ASSERT_EQ(::sendto(tx.get(), &value, sizeof(value), 0, reinterpret_cast<sockaddr*>(&rx_addr), sizeof(rx_addr)),
            static_cast<ssize_t>(sizeof(value)));
  for (int i = 0; i < 500 && seen.load() == 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(seen.load(), value) << "the watch ended with the failed read";
  ASSERT_TRUE(worker->unwatch(rx.get()));
}

TEST(Worker, UsesTheBestIoUringFlagsTheKernelHas) {
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start(WorkerMode::interrupt));
  // Every kernel this runs on (Debian 12's 6.1 and newer) takes SINGLE_ISSUER|DEFER_TASKRUN.
  EXPECT_NE(worker->ring_flags() & (1U << 13), 0U) << std::hex << worker->ring_flags();
}

TEST(Worker, RefusesBadArguments) {
  VFE_ASSERT_OK_AND_ASSIGN(auto worker, start(WorkerMode::interrupt));
  EXPECT_FALSE(worker->watch(-1, [](std::uint64_t) {}));
  EXPECT_FALSE(worker->unwatch(12345));
  WorkerOptions bad;
  bad.cpus = {100000};
  EXPECT_FALSE(Worker::start(std::move(bad)));
}

TEST(Worker, PinsToTheCpusAsked) {
  WorkerOptions o;
  o.mode = WorkerMode::interrupt;
  o.cpus = {0};
  auto worker = Worker::start(std::move(o));
  ASSERT_TRUE(worker) << worker.error().message();
  int cpu = -1;
  ASSERT_TRUE((*worker)->run_sync([&] { cpu = sched_getcpu(); }));
  EXPECT_EQ(cpu, 0);
}

}  // namespace
}  // namespace vfe::engine
