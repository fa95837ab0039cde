#pragma once
/// \file
/// `Worker`: a pinned thread with its own io_uring that runs queue pairs and turns interrupt
/// eventfds into completions.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "base/units.hpp"
#include "engine/mpsc_ring.hpp"

struct io_uring_sqe;

namespace vfe::engine {

/// How a worker waits for work.
enum class WorkerMode {
  polling,    ///< spin on its pollables; never sleeps (lowest latency, a whole core)
  interrupt,  ///< sleep in io_uring until a vector fires or work is posted
  adaptive,   ///< poll while busy; after `idle_before_sleep` without work, sleep as `interrupt`
};

[[nodiscard]] const char* to_string(WorkerMode mode) noexcept;

struct WorkerOptions {
  WorkerMode mode = WorkerMode::adaptive;
  /// CPUs to pin the thread to (OS indexes); empty: not pinned.
  std::vector<int> cpus;
  /// How long `adaptive` polls without finding work before it sleeps.
  std::chrono::microseconds idle_before_sleep{50};
  /// Capacity of the ring other threads post tasks through.
  std::size_t task_capacity = 1024;
  /// Name for logs and the thread name (at most 15 characters are kept).
  std::string name = "vfe-worker";
};

/// Something a worker polls in its loop: a driver's queue pair, typically. `poll` runs on the
/// worker thread only, must not block, and returns how much work it did (0 means idle).
class Pollable {
 public:
  virtual ~Pollable() = default;
  virtual std::size_t poll() noexcept = 0;
  /// True when this pollable learns of its work only by being polled (a queue whose
  /// completions are polled): a worker that has one never sleeps, whatever its mode.
  [[nodiscard]] virtual bool needs_polling() const noexcept { return false; }
  /// Adaptive workers only: called with false when the worker starts polling after a sleep (or
  /// when it is added while the worker polls), and with true before the worker sleeps (then it
  /// polls everything once more, so work that came meanwhile is found) and when it is removed
  /// while off. A pollable whose device can hold its interrupt back while it is polled anyway (a
  /// masked MSI-X vector stays pending and is raised on unmask) does so; the default does
  /// nothing, which is correct, only costlier. Worker thread; must not block.
  virtual void set_interrupts(bool enabled) noexcept { static_cast<void>(enabled); }

 protected:
  Pollable() = default;
  Pollable(const Pollable&) = default;
  Pollable& operator=(const Pollable&) = default;
};

/// An operation a component keeps on a worker's own io_uring (a ublk URING_CMD, say): when it
/// completes, `complete(op, res)` runs on the worker with the CQE's result. The op must stay alive
/// (and its owner too) until then; a worker destroyed with ops in flight drops their completions.
struct RingOp {
  void (*complete)(RingOp* op, int res) noexcept = nullptr;
};

/// Runs on the worker when a watched eventfd fired; `count` is the eventfd's counter (how many
/// interrupts since the last time).
using IrqHandler = std::function<void(std::uint64_t count)>;

/// Counters a worker keeps; read from any thread (relaxed: for reporting, not for sync).
struct WorkerStats {
  std::atomic<std::uint64_t> loops{0};
  std::atomic<std::uint64_t> sleeps{0};
  std::atomic<std::uint64_t> wakeups_sent{0};  ///< eventfd writes by posters that found it asleep
  std::atomic<std::uint64_t> irq_events{0};    ///< interrupt counts delivered to handlers
  std::atomic<std::uint64_t> tasks{0};
};

/// One thread, one io_uring (IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN where the kernel has
/// them: 6.1+; COOP_TASKRUN on 5.19+; plain otherwise). Everything submitted to the ring is
/// submitted from the worker thread itself. Other threads talk to it only through `post`
/// (a bounded MPSC ring) and the wake eventfd, so a worker is never locked.
///
/// Interrupts: `watch(fd, handler)` keeps one 8-byte IORING_OP_READ armed on the eventfd; its
/// completion carries the count, the handler runs on the worker, the read is re-armed. No
/// syscall per interrupt beyond the io_uring enter the worker makes anyway when it sleeps.
///
/// Wakeups without a lost one: a poster publishes its work, then does a read-modify-write on
/// `wake_state_`; the worker sets the sleeping bit with a read-modify-write, then looks for work
/// once more before it sleeps. One of the two always sees the other (no fences: ThreadSanitizer
/// checks this protocol as it is).
class Worker {
 public:
  /// Starts the thread, pins it, creates its ring on it, and returns once it runs.
  [[nodiscard]] static Result<std::unique_ptr<Worker>> start(WorkerOptions options);
  /// Stops the loop (work already posted runs first), disarms everything, joins the thread.
  /// Queue pairs must be detached (destroyed) first: with one still attached, it logs why and
  /// aborts, rather than leave the queue pair pointing at a freed worker.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Runs `fn(arg)` on the worker soon. Any thread; noexcept, no allocation, no lock. False when
  /// the task ring is full (back off and retry) or the worker is stopping.
  [[nodiscard]] bool try_post(void (*fn)(void*), void* arg) noexcept;

  /// Wakes the worker if it sleeps, for work it finds on its own (a queue pair's submission
  /// ring). Call after publishing the work. Any thread, noexcept; a syscall only when the worker
  /// actually sleeps.
  void notify() noexcept {
    // An RMW on the word the worker sets before it sleeps (see loop()): both sides' RMWs are
    // ordered, so either this one comes later and sees the sleeping bit, or the worker's comes
    // later, synchronises with this one and finds the work published before it.
    if ((wake_state_.fetch_add(kWakeSeq, std::memory_order_acq_rel) & kSleeping) != 0) {
      wake();
    }
  }

  /// Runs `fn` on the worker and waits for it (setup path: allocates, blocks).
  [[nodiscard]] Result<void> run_sync(std::function<void()> fn);

  /// Watches `eventfd` (which the caller keeps open until `unwatch` returns): each time it
  /// fires, `handler(count)` runs on the worker. Blocks until armed. A read that fails is logged
  /// and the watch goes on; only a bad fd, or 8 failed reads in a row, end it (logged).
  [[nodiscard]] Result<void> watch(int eventfd, IrqHandler handler);
  /// Stops watching; when it returns the handler will not run again.
  [[nodiscard]] Result<void> unwatch(int eventfd);

  /// Worker thread only: puts a copy of `sqe` on this worker's ring, its user_data naming `op`,
  /// and hands it to the kernel before the worker next looks for completions. False when the
  /// submission queue stays full. While ops are in flight the worker enters the ring on every
  /// loop round: the kernel delivers such completions as task work, which runs only then.
  [[nodiscard]] bool ring_submit(RingOp& op, const io_uring_sqe& sqe) noexcept;
  /// Ring ops whose completion has not run yet (worker thread only).
  [[nodiscard]] std::size_t ring_ops_in_flight() const noexcept;

  /// Adds / removes a pollable (it must outlive its registration). Blocks until done.
  [[nodiscard]] Result<void> add(Pollable& p);
  [[nodiscard]] Result<void> remove(Pollable& p);

  [[nodiscard]] const WorkerOptions& options() const noexcept { return options_; }
  [[nodiscard]] const WorkerStats& stats() const noexcept { return stats_; }
  /// io_uring setup flags the kernel accepted (for logs and tests).
  [[nodiscard]] unsigned ring_flags() const noexcept { return ring_flags_.load(std::memory_order_acquire); }
  /// True when called on this worker's thread.
  [[nodiscard]] bool on_worker_thread() const noexcept {
    return std::this_thread::get_id() == thread_.get_id();
  }

  struct Impl;  // the ring and the watch table; lives on the worker thread

 private:
  struct Task {
    void (*fn)(void*);
    void* arg;
  };
  explicit Worker(WorkerOptions options);
  void run(std::promise<Result<void>>* started) noexcept;
  void loop(Impl& impl) noexcept;
  std::size_t drain_tasks() noexcept;
  std::size_t run_once(Impl& impl) noexcept;  // tasks, pollables, completions: work done
  std::size_t reap(Impl& impl) noexcept;
  void complete(Impl& impl, std::uint64_t data, int res) noexcept;
  void shutdown(Impl& impl) noexcept;
  void wake() noexcept;

  // Three groups, each on cache lines of its own, so that no thread's frequent stores take a
  // line another thread reads on every call: what everyone reads and (almost) nobody writes;
  // what the worker writes on every loop; and the word every cross-thread notify() writes.
  // The destructor joins the thread in its body, so the order of teardown does not hang on
  // thread_'s place here.
  WorkerOptions options_;
  // Made on the worker thread once it is pinned, so its memory is on the worker's node
  // (first touch); never reset while the thread runs.
  std::unique_ptr<MpscRing<Task>> tasks_;
  Fd wake_fd_;
  std::thread thread_;  // read by on_worker_thread() on every cross-thread submit
  std::atomic<bool> stopping_{false};
  std::atomic<unsigned> ring_flags_{0};

  // loops: stored on every loop round (wakeups_sent is the notifiers', but only when the worker
  // sleeps, so it does not contend with the loop)
  alignas(kCacheLine) WorkerStats stats_;
  Impl* impl_ = nullptr;  // owned by the worker thread's stack; touched only on that thread
  std::size_t attached_at_exit_ = 0;  // pollables still added when the thread ended (join publishes it)

  // Bit 0: the worker is (about to be) asleep. Above it: a count of notify() calls, only there so
  // that every notify is a real read-modify-write. Last: the class's alignment pads the rest of
  // its line, so nothing shares it.
  static constexpr std::uint64_t kSleeping = 1;
  static constexpr std::uint64_t kWakeSeq = 2;
  alignas(kCacheLine) std::atomic<std::uint64_t> wake_state_{0};
};

}  // namespace vfe::engine
