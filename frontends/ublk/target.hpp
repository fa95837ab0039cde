#pragma once
/// \file
/// `BlockTarget`: what a ublk queue needs of the block device behind it. It knows nothing of
/// NVMe; vfe-ublk's NVMe target implements it on an `nvme::IoQueue`.

#include <cstdint>

namespace vfe::ublk {

/// The block device as the kernel is told of it (ublk's basic and discard parameters).
struct BlockGeometry {
  std::uint32_t block_size = 512;  ///< logical block size: 512 to 4096, a power of two
  std::uint64_t blocks = 0;        ///< capacity in logical blocks
  std::uint32_t max_io_bytes = 0;  ///< largest request (each tag's buffer has this size)
  bool volatile_cache = false;     ///< acknowledged writes need a flush (or FUA) to be durable
  bool write_zeroes = false;       ///< the target can write zeroes without a data buffer
  bool discard = false;            ///< the target can deallocate blocks (one range a request)
  /// The longest range one discard may name, in bytes (whole blocks); 0: 1 GiB.
  std::uint64_t max_discard_bytes = 0;
};

enum class BlockOp : std::uint8_t { read, write, flush, write_zeroes, discard };

/// One request, as the kernel handed it over on a tag.
struct BlockIo {
  BlockOp op = BlockOp::read;
  std::uint16_t tag = 0;
  std::uint64_t offset = 0;  ///< bytes from the start of the device (a multiple of block_size)
  std::uint32_t bytes = 0;   ///< 0 for flush
  bool fua = false;          ///< write: on the medium before it completes
};

/// The device behind one ublk queue. Every call runs on that queue's worker.
class BlockTarget {
 public:
  /// Called once per started request, on the worker: 0, or a negative errno.
  using Done = void (*)(void* ctx, std::uint16_t tag, int result) noexcept;

  virtual ~BlockTarget() = default;
  BlockTarget(const BlockTarget&) = delete;
  BlockTarget& operator=(const BlockTarget&) = delete;

  /// Where `tag`'s data lives: max_io_bytes of memory the kernel copies request data to and
  /// from (writes: before the request is handed over; reads: when it is committed). Fixed for
  /// the target's lifetime.
  [[nodiscard]] virtual void* buffer(std::uint16_t tag) noexcept = 0;
  /// Starts `io`; `done` runs later on this worker. Returns 0 when started, -EAGAIN to be asked
  /// again on a later poll (the target is busy or recovering), or another -errno (the request
  /// fails; `done` does not run).
  [[nodiscard]] virtual int submit(const BlockIo& io) noexcept = 0;
  /// Where completions go (set once, before the first submit).
  void set_done(Done done, void* ctx) noexcept {
    done_ = done;
    ctx_ = ctx;
  }

 protected:
  BlockTarget() = default;
  void finish(std::uint16_t tag, int result) noexcept { done_(ctx_, tag, result); }

 private:
  Done done_ = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace vfe::ublk
