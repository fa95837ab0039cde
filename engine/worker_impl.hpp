#pragma once
/// \file
/// The worker's thread-side state (`Worker::Impl`), shared by worker.cpp (what other threads
/// call) and worker_thread.cpp (what runs on the worker). Internal: installed with the other
/// headers, but no public header includes it.

#include <liburing.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/worker.hpp"

namespace vfe::engine {
namespace detail {

// A watched eventfd. Its address is the io_uring user_data of the read (or poll) armed on it.
struct Watch {
  int fd;
  IrqHandler handler;
  std::uint64_t count = 0;  // the read lands here
  bool removed = false;     // unwatched: drop the completion, free when nothing is in flight
  bool in_flight = false;
  unsigned failed_reads = 0;  // in a row
};

// Failed reads in a row after which a watch ends (a read error that never clears).
inline constexpr unsigned kMaxFailedReads = 8;

// user_data of the wake eventfd's read; watches use their own address.
inline constexpr std::uint64_t kWakeTag = 1;
// Low bit set on a watch's user_data: the SQE in flight is a poll, not a read (see arm_read).
inline constexpr std::uint64_t kPollBit = 1ULL << 0;
// Bit 1 set: the user_data is a RingOp (ring_submit), not a watch.
inline constexpr std::uint64_t kOpBit = 1ULL << 1;
static_assert(alignof(RingOp) >= 4 && alignof(Watch) >= 4, "the low two bits of their addresses tag user_data");

// The io_uring setup flags to try, best first. SINGLE_ISSUER (6.0) and DEFER_TASKRUN (6.1) let
// the kernel skip locking and run completion work only when the worker enters the ring;
// COOP_TASKRUN (5.19) avoids IPIs. Debian 12's 6.1 kernel takes the first set, the rig's 6.12
// guest too; older kernels fall back.
inline constexpr unsigned kFlagSets[] = {
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_COOP_TASKRUN,
    0,
};

}  // namespace detail

struct Worker::Impl {
  io_uring ring{};
  std::vector<Pollable*> pollables;
  std::vector<std::unique_ptr<detail::Watch>> watches;
  std::uint64_t wake_count = 0;
  bool wake_armed = false;
  bool must_poll = false;  // some pollable needs_polling(): never sleep
  bool interrupts_off = false;  // adaptive: every pollable was told set_interrupts(false)
  std::size_t ops_in_flight = 0;  // ring_submit()s whose completion has not run
  bool dropping_ops = false;      // shutting down: their owners may be gone

  void update_must_poll() noexcept {
    must_poll = std::any_of(pollables.begin(), pollables.end(),
                            [](const Pollable* p) { return p->needs_polling(); });
  }

  // Adaptive mode: interrupts off while the worker polls, on before it sleeps.
  void set_interrupts(bool on) noexcept {
    if (interrupts_off == !on) {
      return;
    }
    interrupts_off = !on;
    for (Pollable* p : pollables) {
      p->set_interrupts(on);
    }
  }

  ~Impl() { io_uring_queue_exit(&ring); }

  io_uring_sqe* sqe() noexcept {
    io_uring_sqe* s = io_uring_get_sqe(&ring);
    if (s == nullptr) {  // the submission queue is full: hand it to the kernel, then retry
      io_uring_submit(&ring);
      s = io_uring_get_sqe(&ring);
    }
    return s;
  }
  void arm_read(detail::Watch& w) noexcept {
    io_uring_sqe* s = sqe();
    io_uring_prep_read(s, w.fd, &w.count, sizeof(w.count), 0);
    io_uring_sqe_set_data64(s, reinterpret_cast<std::uintptr_t>(&w));
    w.in_flight = true;
  }
  // An O_NONBLOCK eventfd makes io_uring answer -EAGAIN instead of waiting: wait with a poll
  // first, then read.
  void arm_poll(detail::Watch& w) noexcept {
    io_uring_sqe* s = sqe();
    io_uring_prep_poll_add(s, w.fd, POLLIN);
    io_uring_sqe_set_data64(s, reinterpret_cast<std::uintptr_t>(&w) | detail::kPollBit);
    w.in_flight = true;
  }
  void arm_wake(int fd) noexcept {
    io_uring_sqe* s = sqe();
    io_uring_prep_read(s, fd, &wake_count, sizeof(wake_count), 0);
    io_uring_sqe_set_data64(s, detail::kWakeTag);
    wake_armed = true;
  }
};

}  // namespace vfe::engine
