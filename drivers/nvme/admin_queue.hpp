#pragma once
/// \file
/// `AdminQueue`: the controller's admin submission/completion queue pair (NVMe 1.4 §4.1.1), used
/// synchronously on setup paths, plus the Asynchronous Event Requests that wait in it.

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

#include "base/result.hpp"
#include "drivers/nvme/spec.hpp"
#include "mmio/region.hpp"

namespace vfe::nvme {

/// Runs one admin command at a time: writes it to the next submission slot, rings the SQ 0
/// doorbell, and polls the completion queue's phase tag for the answer (the admin queue's
/// interrupt, vector 0, is not used). Thread-safe: a mutex serialises callers (setup paths and
/// the controller's watchdog only; never the data path).
///
/// Besides, up to kMaxPosted commands may wait in the controller without anyone waiting for them
/// (`post`: Asynchronous Event Requests, which complete when something happens). Their
/// completions are put aside when they arrive during `execute`, and handed out by `take_posted`.
///
/// The memory belongs to the controller: `sq` holds `entries` 64-byte entries and `cq` as many
/// 16-byte ones, both zeroed by `reset()`, which must run before the controller is enabled.
class AdminQueue {
 public:
  AdminQueue(mmio::Bar& bar, std::uint32_t doorbell_stride, Sqe* sq, Cqe* cq, std::uint16_t entries) noexcept
      : bar_(&bar), stride_(doorbell_stride), sq_(sq), cq_(cq), entries_(entries) {}

  /// Empties both queues (as after a controller reset: §3.1.24 the doorbells are 0 again). The
  /// posted commands still outstanding are gone; completions of posted commands that arrived
  /// before and were not handed out yet stay for `take_posted`.
  void reset() noexcept;

  /// Submits `cmd` (its command id is chosen here) and waits up to `timeout` for its completion.
  /// Returns the completion when its status is success; an Error naming `what` and the decoded
  /// status otherwise. After a timeout the queue is unusable until `reset()`: the late
  /// completion would be mistaken for the next command's.
  [[nodiscard]] Result<Cqe> execute(Sqe cmd, std::chrono::milliseconds timeout, const char* what);

  /// Most posted commands outstanding at once (§5.2: Linux keeps one AER; AERL allows more).
  static constexpr std::size_t kMaxPosted = 4;
  /// Submits `cmd` (its command id is chosen here) without waiting for it. EBUSY with
  /// kMaxPosted outstanding; EIO once the queue is broken.
  [[nodiscard]] Result<void> post(Sqe cmd, const char* what);
  /// The completions of posted commands that arrived since the last call (those found now
  /// included), in arrival order. Each posted command is no longer outstanding once handed out.
  /// Returns nothing at once while another thread runs a command: ask again later.
  [[nodiscard]] std::vector<Cqe> take_posted();
  /// Posted commands not completed yet.
  [[nodiscard]] std::size_t posted() {
    std::lock_guard lock(mu_);
    return posted_count_;
  }

  [[nodiscard]] std::uint16_t entries() const noexcept { return entries_; }
  /// True after a command timed out or got a foreign completion: until `reset()`, the
  /// controller may be working on something nobody waits for.
  [[nodiscard]] bool broken() {
    std::lock_guard lock(mu_);
    return broken_;
  }
  /// The same, for the watchdog: false while another thread runs a command (which may take up to
  /// CAP.TO); the next tick asks again.
  [[nodiscard]] bool broken_now() {
    std::unique_lock lock(mu_, std::try_to_lock);
    return lock.owns_lock() && broken_;
  }

 private:
  [[nodiscard]] bool completion_ready() const noexcept;
  // mu_ held, for the helpers below.
  [[nodiscard]] bool reap_one(Cqe& out) noexcept;
  [[nodiscard]] bool take_if_posted(const Cqe& c);
  [[nodiscard]] std::uint16_t next_cid() noexcept;
  void push(Sqe& cmd) noexcept;

  mmio::Bar* bar_;
  std::uint32_t stride_;
  Sqe* sq_;
  Cqe* cq_;
  std::uint16_t entries_;
  std::mutex mu_;  // guards everything below
  std::uint16_t sq_tail_ = 0;
  std::uint16_t cq_head_ = 0;
  std::uint16_t phase_ = 1;
  std::uint16_t next_cid_ = 0;
  bool broken_ = false;
  std::array<std::uint16_t, kMaxPosted> posted_cids_{};  // the first posted_count_ are outstanding
  std::size_t posted_count_ = 0;
  std::vector<Cqe> posted_done_;  // completions of posted commands, not handed out yet
  // Room reserved in posted_done_: those kept across a reset and those posted after it, so
  // take_if_posted does not allocate (only resets in a row with no take_posted between could
  // make it: the watchdog's path, never the data path).
  static constexpr std::size_t kKeptMax = 2 * kMaxPosted;
};

}  // namespace vfe::nvme
