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
using detail::kPollBit;

const char* to_string(WorkerMode mode) noexcept {
  switch (mode) {
    case WorkerMode::polling:
      return "polling";
    case WorkerMode::interrupt:
      return "interrupt";
    case WorkerMode::adaptive:
      return "adaptive";
  }
  return "?";
}

Worker::Worker(WorkerOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<Worker>> Worker::start(WorkerOptions options) {
  std::unique_ptr<Worker> w(new Worker(std::move(options)));
  w->wake_fd_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!w->wake_fd_) {
    return Error::from_errno(errno, "eventfd", "worker wake-up");
  }
  std::promise<Result<void>> started;
  auto ready = started.get_future();
  w->thread_ = std::thread([self = w.get(), p = &started] { self->run(p); });
  Result<void> r = ready.get();
  if (!r) {
    w->thread_.join();
    return std::move(r).error();
  }
  return w;
}

Worker::~Worker() {
  if (thread_.joinable()) {
    stopping_.store(true, std::memory_order_seq_cst);
    wake();
    thread_.join();
  }
  // A queue pair still attached would call into this worker once it is freed (its detach, or a
  // submitter's notify): refuse.
  if (attached_at_exit_ != 0) {
    log_error("{}: worker destroyed with {} queue pair(s) still attached; destroy or detach them first", options_.name,
              attached_at_exit_);
    std::abort();
  }
}

void Worker::wake() noexcept {
  const std::uint64_t one = 1;
  if (::write(wake_fd_.get(), &one, sizeof(one)) == sizeof(one)) {
    stats_.wakeups_sent.fetch_add(1, std::memory_order_relaxed);
  }
}

bool Worker::try_post(void (*fn)(void*), void* arg) noexcept {
  if (stopping_.load(std::memory_order_relaxed) || !tasks_->try_push(Task{fn, arg})) {
    return false;
  }
  notify();
  return true;
}

Result<void> Worker::run_sync(std::function<void()> fn) {
  if (on_worker_thread()) {
    fn();
    return ok();
  }
  struct Call {
    std::function<void()> fn;
    std::promise<void> done;
  } call{std::move(fn), {}};
  auto done = call.done.get_future();
  auto trampoline = [](void* p) {
    auto* c = static_cast<Call*>(p);
    c->fn();
    c->done.set_value();
  };
  while (!try_post(trampoline, &call)) {
    if (stopping_.load(std::memory_order_relaxed)) {
      return Error::from_errno(ESHUTDOWN, "post to worker", options_.name + " is stopping");
    }
    std::this_thread::yield();  // the task ring is full: the worker is busy draining it
  }
  done.wait();
  return ok();
}

Result<void> Worker::watch(int eventfd, IrqHandler handler) {
  if (eventfd < 0 || !handler) {
    return Error::invalid("watch eventfd", "a valid eventfd and a handler are required");
  }
  return run_sync([this, eventfd, h = std::move(handler)]() mutable {
    auto w = std::make_unique<Watch>(Watch{eventfd, std::move(h)});
    impl_->arm_read(*w);
    impl_->watches.push_back(std::move(w));
    io_uring_submit(&impl_->ring);
  });
}

Result<void> Worker::unwatch(int eventfd) {
  bool found = false;
  VFE_TRY(run_sync([this, eventfd, &found] {
    for (auto& w : impl_->watches) {
      if (w->fd == eventfd && !w->removed) {
        w->removed = true;  // from here on its completions are dropped
        io_uring_sqe* s = impl_->sqe();
        io_uring_prep_cancel64(s, reinterpret_cast<std::uintptr_t>(w.get()), 0);
        io_uring_sqe_set_data64(s, 0);
        io_uring_sqe* p = impl_->sqe();
        io_uring_prep_cancel64(p, reinterpret_cast<std::uintptr_t>(w.get()) | kPollBit, 0);
        io_uring_sqe_set_data64(p, 0);
        io_uring_submit(&impl_->ring);
        found = true;
        return;
      }
    }
  }));
  if (!found) {
    return Error::invalid("unwatch eventfd", fmt::format("eventfd {} is not watched", eventfd));
  }
  return ok();
}

Result<void> Worker::add(Pollable& p) {
  return run_sync([this, &p] {
    impl_->pollables.push_back(&p);
    impl_->update_must_poll();
    if (impl_->interrupts_off) {
      p.set_interrupts(false);  // as the others: the worker polls
    }
  });
}

Result<void> Worker::remove(Pollable& p) {
  bool found = false;
  VFE_TRY(run_sync([this, &p, &found] {
    auto& v = impl_->pollables;
    const auto it = std::find(v.begin(), v.end(), &p);
    found = it != v.end();
    if (found) {
      if (impl_->interrupts_off) {
        p.set_interrupts(true);  // leave its device as it was found
      }
      v.erase(it);
      impl_->update_must_poll();
    }
  }));
  return found ? ok() : Error::invalid("remove pollable", "it was not added to this worker");
}

}  // namespace vfe::engine
