#pragma once
/// \file
/// `Queue`: one ublk queue served on an engine worker: its FETCH and COMMIT_AND_FETCH commands go
/// on the worker's own io_uring, next to whatever else that worker serves (an NVMe queue's
/// interrupts), and each request goes to a `BlockTarget` on the same worker.

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/result.hpp"
#include "engine/worker.hpp"
#include "frontends/ublk/target.hpp"
#include "frontends/ublk/uapi.hpp"

namespace vfe::ublk {

/// A tag's life: the kernel holds its command (waiting for a request), the target serves the
/// request, or the device went away (its command came back with ABORT, or failed).
///
/// One worker thread issues every command of the queue (ublk requires it). The setup thread
/// calls `open`, `start`, `tags_live` and the destructor.
class Queue final : public engine::Pollable {
 public:
  /// Maps queue `qid`'s descriptor array of the open /dev/ublkcN `cdev_fd` and registers with
  /// `worker` (as a pollable). `ioctl_ops`: I/O commands ioctl-encoded (see Control).
  [[nodiscard]] static Result<std::unique_ptr<Queue>> open(int cdev_fd, std::uint16_t qid, std::uint16_t depth,
                                                           bool ioctl_ops, BlockTarget& target, engine::Worker& worker);
  /// Only once every tag is dead (`tags_live() == 0`, after STOP_DEV) or none was ever fetched:
  /// the kernel must hold no command that names this queue's memory.
  ~Queue() override;
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  /// Sends a FETCH for every tag, on the worker (blocks until they are submitted).
  [[nodiscard]] Result<void> start();
  /// Tags not dead yet: their command is with the kernel, or their request with the target.
  [[nodiscard]] std::size_t tags_live() const noexcept { return live_.load(std::memory_order_acquire); }
  /// Requests served (completed to the kernel) so far.
  [[nodiscard]] std::uint64_t served() const noexcept { return served_.load(std::memory_order_relaxed); }

  std::size_t poll() noexcept override;

 private:
  struct Tag : engine::RingOp {
    Queue* queue = nullptr;
    std::uint16_t tag = 0;
    std::int32_t success = 0;                  // what the request under way reports if it succeeds
    std::int32_t result = 0;                   // what the next COMMIT reports
    abi::IoOp pending = abi::kFetchReq;        // the command last sent (or to send again)
    bool dead = false;
  };
  Queue(int cdev_fd, std::uint16_t qid, bool ioctl_ops, BlockTarget& target,
        engine::Worker& worker) noexcept;

  static void on_cqe(engine::RingOp* op, int res) noexcept;
  static void on_target_done(void* self, std::uint16_t tag, int result) noexcept;
  void begin(Tag& t) noexcept;
  void commit(Tag& t, int result) noexcept;
  bool send(Tag& t, abi::IoOp op) noexcept;
  void kill(Tag& t) noexcept;

  int cdev_fd_;
  std::uint16_t qid_;
  bool ioctl_ops_;
  BlockTarget* target_;
  engine::Worker* worker_;
  const abi::IoDesc* descs_ = nullptr;  // read-only mapping of one descriptor a tag
  std::size_t map_bytes_ = 0;
  std::vector<Tag> tags_;
  std::vector<std::uint16_t> deferred_;  // the target said -EAGAIN: asked again in poll()
  std::vector<std::uint16_t> unsent_;    // the ring's SQ was full: sent again in poll()
  std::vector<std::uint16_t> scratch_;   // poll()'s copy of one of the lists (all three: a tag each reserved)
  bool added_ = false;                   // registered with the worker
  std::atomic<std::size_t> live_{0};
  std::atomic<std::uint64_t> served_{0};
};

}  // namespace vfe::ublk
