#pragma once
/// \file
/// `Control`: the ublk control device (/dev/ublk-control) and its commands, each run to its end
/// on a small io_uring of its own (128-byte SQEs, which control commands need).

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <mutex>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "frontends/ublk/uapi.hpp"

namespace vfe::ublk {

/// Setup-path calls, any thread (a mutex serialises them). Each blocks until the kernel answers:
/// START_DEV until every queue has fetched every tag (so the queues' workers must be serving),
/// DEL_DEV until nothing holds the device (6.1 holds a global ublk lock meanwhile).
class Control {
 public:
  /// Opens /dev/ublk-control. ENOENT says which kernel option is missing; EPERM that it needs
  /// root (CAP_SYS_ADMIN).
  [[nodiscard]] static Result<std::unique_ptr<Control>> open();
  ~Control();
  Control(const Control&) = delete;
  Control& operator=(const Control&) = delete;

  /// ADD_DEV: `wanted` with dev_id -1 for any free id. Returns what the kernel made of it (it
  /// clamps the queue count to the CPUs and rounds the buffer size down to a page), and from
  /// its flags learns whether commands are ioctl-encoded (6.4+) or legacy (6.1).
  [[nodiscard]] Result<abi::DevInfo> add(abi::DevInfo wanted);
  /// GET_DEV_INFO of a device this Control did not add (one left by a server that died), which
  /// also learns its command encoding: ioctl first, then legacy (6.1 refuses the ioctl form of a
  /// known command on a device that exists with EOPNOTSUPP). ENODEV: no such device.
  [[nodiscard]] Result<abi::DevInfo> attach(std::uint32_t dev_id);
  [[nodiscard]] Result<void> set_params(std::uint32_t dev_id, abi::Params params);
  [[nodiscard]] Result<abi::Params> params(std::uint32_t dev_id);
  [[nodiscard]] Result<void> start(std::uint32_t dev_id, std::int32_t pid);
  [[nodiscard]] Result<void> stop(std::uint32_t dev_id);
  [[nodiscard]] Result<void> remove(std::uint32_t dev_id);
  [[nodiscard]] Result<abi::DevInfo> info(std::uint32_t dev_id);
  /// START_USER_RECOVERY: EBUSY while the dead server's /dev/ublkcN is still open or the kernel
  /// has not quiesced the device yet.
  [[nodiscard]] Result<void> start_recovery(std::uint32_t dev_id);
  /// END_USER_RECOVERY: like `start`, waits until every queue fetched every tag, then the held
  /// requests go to the new server.
  [[nodiscard]] Result<void> end_recovery(std::uint32_t dev_id, std::int32_t pid);

  /// Whether I/O commands too are ioctl-encoded (known after `add`).
  [[nodiscard]] bool ioctl_encoding() const noexcept { return ioctl_; }

 private:
  explicit Control(Fd fd) noexcept : fd_(std::move(fd)) {}
  // Runs one command with the encoding `ioctl` says; the CQE's result (negative errno on error).
  [[nodiscard]] int run(abi::CtrlOp op, const abi::CtrlCmd& cmd, bool ioctl);
  [[nodiscard]] Result<void> simple(abi::CtrlOp op, std::uint32_t dev_id, std::uint64_t data, const char* what);
  // A command that fills `len` bytes at `buf` (GET_DEV_INFO, GET_PARAMS); the CQE's result.
  [[nodiscard]] int get(abi::CtrlOp op, std::uint32_t dev_id, void* buf, std::uint16_t len, bool ioctl);

  Fd fd_;
  io_uring ring_{};  // set up in place by open(): liburing's ring is not to be copied
  bool ring_up_ = false;
  std::mutex mu_;
  bool ioctl_ = false;
  std::uint64_t commands_ = 0;  // user_data of the last command sent
};

}  // namespace vfe::ublk
