#include "engine/worker.hpp"

#include <fmt/format.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "engine/worker_impl.hpp"

namespace vfe::engine {

using detail::Watch;
using detail::kFlagSets;
using detail::kOpBit;
using detail::kPollBit;
using detail::kWakeTag;
using detail::kMaxFailedReads;

std::size_t Worker::drain_tasks() noexcept {
  Task batch[32];
  std::size_t done = 0;
  for (std::size_t n; (n = tasks_->pop_bulk(std::span<Task>(batch))) != 0;) {
    for (std::size_t i = 0; i < n; ++i) {
      batch[i].fn(batch[i].arg);
    }
    done += n;
  }
  if (done != 0) {
    stats_.tasks.store(stats_.tasks.load(std::memory_order_relaxed) + done, std::memory_order_relaxed);
  }
  return done;
}

namespace {

// Pins the calling thread; the error names the CPUs.
Result<void> pin_to(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int c : cpus) {
    if (c < 0 || c >= CPU_SETSIZE) {
      return Error::invalid("pin worker", fmt::format("CPU {} does not exist", c));
    }
    CPU_SET(static_cast<unsigned>(c), &set);
  }
  if (const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set); rc != 0) {
    return Error::from_errno(rc, "pthread_setaffinity_np",
                             fmt::format("CPUs {} (offline, or outside this process's cpuset?)",
                                         fmt::join(cpus, ",")));
  }
  return ok();
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

void Worker::run(std::promise<Result<void>>* started) noexcept {
  pthread_setname_np(pthread_self(), options_.name.substr(0, 15).c_str());
  if (!options_.cpus.empty()) {
    if (auto r = pin_to(options_.cpus); !r) {
      started->set_value(std::move(r).error());
      return;
    }
  }
  // Pinned now: what is allocated and touched from here on lands on this CPU's node.
  tasks_ = std::make_unique<MpscRing<Task>>(std::max<std::size_t>(options_.task_capacity, 2));
  Impl impl;
  int rc = -EINVAL;
  for (const unsigned flags : kFlagSets) {
    rc = io_uring_queue_init(256, &impl.ring, flags);
    if (rc == 0) {
      ring_flags_.store(flags, std::memory_order_release);
      break;
    }
  }
  if (rc != 0) {
    started->set_value(Error::from_errno(-rc, "io_uring_queue_init",
                                         "the kernel needs CONFIG_IO_URING (5.1+), and "
                                         "io_uring must not be disabled (kernel.io_uring_disabled)"));
    return;
  }
  impl_ = &impl;
  impl.arm_wake(wake_fd_.get());
  io_uring_submit(&impl.ring);
  log_info("{}: {} mode, io_uring flags {:#x}, CPUs {}", options_.name, to_string(options_.mode),
           ring_flags(), options_.cpus.empty() ? "any" : fmt::format("{}", fmt::join(options_.cpus, ",")));
  started->set_value(ok());  // `started` belongs to start(), which returns now
  loop(impl);
  shutdown(impl);
  attached_at_exit_ = impl.pollables.size();  // read by the destructor after the join
  impl_ = nullptr;
}

void Worker::loop(Impl& impl) noexcept {
  using Clock = std::chrono::steady_clock;
  auto last_work = Clock::now();
  unsigned idle_loops = 0;
  unsigned busy_loops = 0;
  const bool adaptive = options_.mode == WorkerMode::adaptive;
  for (;;) {
    // The worker is the only writer of its counters: a load and a store, no locked instruction.
    stats_.loops.store(stats_.loops.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    const std::size_t work = run_once(impl);
    if (stopping_.load(std::memory_order_acquire) && tasks_->size_approx() == 0) {
      return;
    }
    if (work != 0) {
      if (adaptive) {
        last_work = Clock::now();  // only adaptive mode needs to know when work was last seen
        impl.set_interrupts(false);  // polling now: an interrupt would only cost
      }
      idle_loops = 0;
      // A pollable that always finds work must not starve the watched eventfds: with
      // DEFER_TASKRUN their completions appear only when the worker enters the ring.
      if (++busy_loops % 64 == 0 && !impl.watches.empty()) {
        io_uring_submit_and_get_events(&impl.ring);
      }
      continue;
    }
    const bool keep_polling = options_.mode == WorkerMode::polling || impl.must_poll ||
                              (adaptive && Clock::now() - last_work < options_.idle_before_sleep);
    if (keep_polling) {
      // With DEFER_TASKRUN, interrupt completions appear only when the worker enters the ring;
      // a polling worker does so now and then, not on every idle loop.
      if (++idle_loops % 64 == 0 && !impl.watches.empty()) {
        io_uring_submit_and_get_events(&impl.ring);
      }
      cpu_relax();
      continue;
    }
    // Sleep. Interrupts first (adaptive mode): what came while they were off is found by the
    // round below, or raised now. Pairs with notify(): work published before its RMW is found
    // by the round below; a notify after this RMW sees the sleeping bit and wakes us.
    impl.set_interrupts(true);
    wake_state_.fetch_or(kSleeping, std::memory_order_acq_rel);
    if (run_once(impl) != 0 || stopping_.load(std::memory_order_acquire)) {
      wake_state_.fetch_and(~kSleeping, std::memory_order_relaxed);
      continue;
    }
    stats_.sleeps.fetch_add(1, std::memory_order_relaxed);
    io_uring_submit_and_wait(&impl.ring, 1);
    wake_state_.fetch_and(~kSleeping, std::memory_order_relaxed);
    last_work = Clock::now();
  }
}

std::size_t Worker::run_once(Impl& impl) noexcept {
  std::size_t work = drain_tasks();
  for (Pollable* p : impl.pollables) {
    work += p->poll();
  }
  // Ring ops complete through task work, which DEFER_TASKRUN runs only inside io_uring_enter:
  // while any are in flight, enter on every round (and hand over what was queued meanwhile).
  if (impl.ops_in_flight != 0 || io_uring_sq_ready(&impl.ring) != 0) {
    io_uring_submit_and_get_events(&impl.ring);
  }
  return work + reap(impl);
}

bool Worker::ring_submit(RingOp& op, const io_uring_sqe& sqe) noexcept {
  io_uring_sqe* s = impl_->sqe();
  if (s == nullptr) {
    return false;
  }
  std::memcpy(static_cast<void*>(s), &sqe, sizeof(sqe));
  io_uring_sqe_set_data64(s, reinterpret_cast<std::uintptr_t>(&op) | kOpBit);
  ++impl_->ops_in_flight;
  return true;
}

std::size_t Worker::ring_ops_in_flight() const noexcept { return impl_ != nullptr ? impl_->ops_in_flight : 0; }

std::size_t Worker::reap(Impl& impl) noexcept {
  io_uring_cqe* cqe = nullptr;
  unsigned head = 0;
  unsigned n = 0;
  io_uring_for_each_cqe(&impl.ring, head, cqe) {
    complete(impl, cqe->user_data, cqe->res);
    ++n;
  }
  io_uring_cq_advance(&impl.ring, n);
  return n;
}

void Worker::complete(Impl& impl, std::uint64_t data, int res) noexcept {
  if (data == 0) {
    return;  // a cancel request's own completion
  }
  if (data == kWakeTag) {
    impl.wake_armed = false;
    if (!stopping_.load(std::memory_order_relaxed)) {
      impl.arm_wake(wake_fd_.get());
    }
    return;
  }
  if ((data & kOpBit) != 0) {
    --impl.ops_in_flight;
    if (!impl.dropping_ops) {
      auto* op = reinterpret_cast<RingOp*>(data & ~kOpBit);
      op->complete(op, res);
    }
    return;
  }
  auto* w = reinterpret_cast<Watch*>(data & ~kPollBit);
  w->in_flight = false;
  if (!w->removed) {
    if ((data & kPollBit) != 0) {
      impl.arm_read(*w);  // readable now: read the count
    } else if (res == static_cast<int>(sizeof(w->count))) {
      w->failed_reads = 0;
      stats_.irq_events.fetch_add(w->count, std::memory_order_relaxed);
      w->handler(w->count);
      if (!w->removed) {
        impl.arm_read(*w);
      }
    } else if (res == -EAGAIN) {
      impl.arm_poll(*w);  // an O_NONBLOCK eventfd
    } else if (res < 0 && res != -EBADF && res != -EINVAL && ++w->failed_reads < kMaxFailedReads) {
      // One failed read (a signal, an error the fd reported once) says nothing about the next:
      // the watch goes on, from when the fd is readable again.
      log_warn("{}: reading fd {} failed ({}); watching it still", options_.name, w->fd, std::strerror(-res));
      impl.arm_poll(*w);
    } else {
      log_error("{}: reading fd {} failed ({}); no longer watching it", options_.name, w->fd,
                res < 0 ? std::strerror(-res) : "a short read");
      w->removed = true;
    }
  }
  if (w->removed && !w->in_flight) {
    std::erase_if(impl.watches, [w](const auto& p) { return p.get() == w; });
  }
}

void Worker::shutdown(Impl& impl) noexcept {
  // Cancel every read still armed and wait for their completions, so no buffer is written
  // after it is freed.
  for (auto& w : impl.watches) {
    w->removed = true;
  }
  if (impl.ops_in_flight != 0) {
    log_error("{}: {} ring op(s) still in flight at shutdown; their completions are dropped", options_.name,
              impl.ops_in_flight);
    impl.dropping_ops = true;
  }
  io_uring_sqe* s = impl.sqe();
  io_uring_prep_cancel64(s, 0, IORING_ASYNC_CANCEL_ANY);
  io_uring_sqe_set_data64(s, 0);
  io_uring_submit(&impl.ring);
  const auto pending = [&] {
    return impl.wake_armed ||
           std::any_of(impl.watches.begin(), impl.watches.end(), [](const auto& w) { return w->in_flight; });
  };
  for (int i = 0; i < 1000 && pending(); ++i) {
    __kernel_timespec ts{0, 1'000'000};
    io_uring_cqe* cqe = nullptr;
    io_uring_submit_and_wait_timeout(&impl.ring, &cqe, 1, &ts, nullptr);
    reap(impl);
  }
  if (pending()) {
    log_error("{}: reads still in flight at shutdown", options_.name);
  }
}

}  // namespace vfe::engine
