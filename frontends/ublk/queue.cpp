#include "frontends/ublk/queue.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "base/log.hpp"
#include "base/units.hpp"

namespace vfe::ublk {
namespace {

constexpr std::uint8_t kOpMask = 0xff;

// The BlockIo of a request descriptor; false for an operation the target is not asked to do.
bool to_block_io(const abi::IoDesc& d, std::uint16_t tag, BlockIo& io) noexcept {
  io.tag = tag;
  io.offset = d.start_sector << 9;  // ublk counts 512-byte sectors whatever the block size
  io.bytes = d.nr_sectors << 9;
  io.fua = (d.op_flags & abi::kIoFlagFua) != 0;
  switch (static_cast<std::uint8_t>(d.op_flags & kOpMask)) {
    case abi::kOpRead:
      io.op = BlockOp::read;
      return true;
    case abi::kOpWrite:
      io.op = BlockOp::write;
      return true;
    case abi::kOpFlush:
      io.op = BlockOp::flush;
      io.bytes = 0;
      return true;
    case abi::kOpWriteZeroes:
      io.op = BlockOp::write_zeroes;
      return true;
    case abi::kOpDiscard:
      io.op = BlockOp::discard;
      return true;
    default:
      return false;  // no other operation is sent (zoned ones only to zoned devices)
  }
}

}  // namespace

Queue::Queue(int cdev_fd, std::uint16_t qid, bool ioctl_ops, BlockTarget& target, engine::Worker& worker) noexcept
    : cdev_fd_(cdev_fd), qid_(qid), ioctl_ops_(ioctl_ops), target_(&target), worker_(&worker) {}

Result<std::unique_ptr<Queue>> Queue::open(int cdev_fd, std::uint16_t qid, std::uint16_t depth, bool ioctl_ops,
                                           BlockTarget& target, engine::Worker& worker) {
  if (depth == 0 || depth > abi::kMaxQueueDepth) {
    return Error::invalid("open ublk queue", "a depth of 1 to 4096");
  }
  std::unique_ptr<Queue> q(new Queue(cdev_fd, qid, ioctl_ops, target, worker));
  q->map_bytes_ = align_up(std::uint64_t{depth} * sizeof(abi::IoDesc), 4096);
  void* p = ::mmap(nullptr, q->map_bytes_, PROT_READ, MAP_SHARED | MAP_POPULATE, cdev_fd,
                   static_cast<off_t>(abi::kCmdBufOffset + qid * abi::kDescStride));
  if (p == MAP_FAILED) {
    return Error::from_errno(errno, "mmap ublk descriptors", "queue " + std::to_string(qid));
  }
  q->descs_ = static_cast<const abi::IoDesc*>(p);
  q->tags_.resize(depth);
  for (std::uint16_t i = 0; i < depth; ++i) {
    q->tags_[i].complete = &Queue::on_cqe;
    q->tags_[i].queue = q.get();
    q->tags_[i].tag = i;
    q->tags_[i].dead = true;  // until start() fetches it
  }
  q->deferred_.reserve(depth);
  q->unsent_.reserve(depth);
  q->scratch_.reserve(depth);
  target.set_done(&Queue::on_target_done, q.get());
  VFE_TRY(worker.add(*q));
  q->added_ = true;
  return q;
}

Queue::~Queue() {
  if (live_.load(std::memory_order_acquire) != 0) {
    // The kernel would complete those commands into freed memory.
    log_error("ublk queue {}: destroyed with {} tag(s) still live; stop the device first", qid_, live_.load());
    std::abort();
  }
  if (added_) {
    if (auto r = worker_->remove(*this); !r) {
      log_error("ublk queue {}: {}", qid_, r.error().message());
    }
  }
  if (descs_ != nullptr) {
    ::munmap(const_cast<abi::IoDesc*>(descs_), map_bytes_);
  }
}

Result<void> Queue::start() {
  return worker_->run_sync([this] {
    for (Tag& t : tags_) {
      t.dead = false;
      t.result = 0;
      live_.fetch_add(1, std::memory_order_relaxed);
      if (!send(t, abi::kFetchReq)) {
        unsent_.push_back(t.tag);
      }
    }
  });
}

bool Queue::send(Tag& t, abi::IoOp op) noexcept {
  t.pending = op;
  io_uring_sqe sqe{};
  sqe.opcode = IORING_OP_URING_CMD;
  sqe.fd = cdev_fd_;
  sqe.cmd_op = ioctl_ops_ ? abi::io_ioctl(op) : op;
  const abi::IoCmd cmd{.q_id = qid_, .tag = t.tag, .result = op == abi::kFetchReq ? 0 : t.result,
                       .addr = reinterpret_cast<std::uintptr_t>(target_->buffer(t.tag))};
  static_assert(offsetof(io_uring_sqe, addr3) + sizeof(cmd) <= sizeof(io_uring_sqe));
  std::memcpy(reinterpret_cast<std::byte*>(&sqe) + offsetof(io_uring_sqe, addr3), &cmd, sizeof(cmd));
  return worker_->ring_submit(t, sqe);
}

void Queue::on_cqe(engine::RingOp* op, int res) noexcept {
  auto& t = *static_cast<Tag*>(op);
  Queue& q = *t.queue;
  if (res == abi::kIoResOk) {
    q.begin(t);
    return;
  }
  if (res != abi::kIoResAbort) {
    // A refused COMMIT leaves its block request unfinished, so removing the device will wait for it.
    log_error("ublk queue {} tag {}: the kernel refused a {} command ({}); the tag is out of service", q.qid_, t.tag,
              t.pending == abi::kFetchReq ? "FETCH" : "COMMIT_AND_FETCH",
              res < 0 ? std::strerror(-res) : "an unexpected result");
  }
  q.kill(t);
}

void Queue::begin(Tag& t) noexcept {
  BlockIo io;
  if (!to_block_io(descs_[t.tag], t.tag, io)) {
    commit(t, -EOPNOTSUPP);
    return;
  }
  // Reads and writes report the bytes done (a write short of them would be sent again); the rest 0.
  t.success = io.op == BlockOp::read || io.op == BlockOp::write ? static_cast<std::int32_t>(io.bytes) : 0;
  const int rc = target_->submit(io);
  if (rc == -EAGAIN) {
    deferred_.push_back(t.tag);
  } else if (rc != 0) {
    commit(t, rc);
  }
}

void Queue::on_target_done(void* self, std::uint16_t tag, int result) noexcept {
  auto& q = *static_cast<Queue*>(self);
  Tag& t = q.tags_[tag];
  q.commit(t, result < 0 ? result : t.success);
}

void Queue::commit(Tag& t, int result) noexcept {
  t.result = result;
  served_.fetch_add(1, std::memory_order_relaxed);
  if (!send(t, abi::kCommitAndFetchReq)) {
    unsent_.push_back(t.tag);
  }
}

void Queue::kill(Tag& t) noexcept {
  if (!t.dead) {
    t.dead = true;
    live_.fetch_sub(1, std::memory_order_release);
  }
}

std::size_t Queue::poll() noexcept {
  if (unsent_.empty() && deferred_.empty()) {
    return 0;
  }
  // Each tag is tried once per poll; what goes back on a list (the SQ still full, the target
  // still busy) is not progress, so a worker does not spin on it.
  std::size_t work = 0;
  scratch_.swap(unsent_);
  for (const std::uint16_t tag : scratch_) {
    Tag& t = tags_[tag];
    if (send(t, t.pending)) {
      ++work;
    } else {
      unsent_.push_back(tag);
    }
  }
  scratch_.clear();
  scratch_.swap(deferred_);
  for (const std::uint16_t tag : scratch_) {
    begin(tags_[tag]);
  }
  work += scratch_.size() - std::min(scratch_.size(), deferred_.size());
  scratch_.clear();
  return work;
}

}  // namespace vfe::ublk
