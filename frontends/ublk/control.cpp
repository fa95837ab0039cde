#include "frontends/ublk/control.hpp"

#include <fcntl.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace vfe::ublk {
namespace {

constexpr const char* kControlPath = "/dev/ublk-control";

Error command_error(int res, const char* what, std::uint32_t dev_id) {
  if (res == -EPERM || res == -EACCES) {
    return Error::from_errno(-res, what, "ublk control commands need root (CAP_SYS_ADMIN)");
  }
  return Error::from_errno(-res, what, fmt::format("ublk device {}", dev_id));
}

}  // namespace

Result<std::unique_ptr<Control>> Control::open() {
  Fd fd(::open(kControlPath, O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) {
      return Error::from_errno(err, "open /dev/ublk-control",
                               "this kernel has no ublk: it needs CONFIG_BLK_DEV_UBLK (Linux 6.0+; try `modprobe "
                               "ublk_drv`)");
    }
    return Error::from_errno(err, "open /dev/ublk-control",
                             err == EACCES || err == EPERM ? "ublk needs root (CAP_SYS_ADMIN)" : "");
  }
  std::unique_ptr<Control> c(new Control(std::move(fd)));
  if (const int rc = io_uring_queue_init(4, &c->ring_, IORING_SETUP_SQE128); rc != 0) {
    return Error::from_errno(-rc, "io_uring_queue_init", "128-byte SQEs for ublk control commands (Linux 5.19+)");
  }
  c->ring_up_ = true;
  return c;
}

Control::~Control() {
  if (ring_up_) {
    io_uring_queue_exit(&ring_);
  }
}

int Control::run(abi::CtrlOp op, const abi::CtrlCmd& cmd, bool ioctl) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    return -EBUSY;  // one command at a time under mu_: the ring is never full
  }
  std::memset(static_cast<void*>(sqe), 0, 2 * sizeof(io_uring_sqe));  // a 128-byte entry
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fd_.get();
  sqe->cmd_op = ioctl ? abi::ctrl_ioctl(op) : op;
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
  const std::uint64_t tag = ++commands_;  // a late answer to an earlier command is not this one's
  io_uring_sqe_set_data64(sqe, tag);
  if (const int rc = io_uring_submit(&ring_); rc < 0) {
    return rc;
  }
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    if (const int rc = io_uring_wait_cqe(&ring_, &cqe); rc < 0) {
      return rc;
    }
    const bool mine = cqe->user_data == tag;
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (mine) {
      return res;
    }
  }
}

Result<abi::DevInfo> Control::add(abi::DevInfo wanted) {
  const std::lock_guard lock(mu_);
  abi::DevInfo info = wanted;
  abi::CtrlCmd cmd{.dev_id = wanted.dev_id, .queue_id = 0xffff, .len = sizeof(info),
                   .addr = reinterpret_cast<std::uintptr_t>(&info), .data0 = 0, .data1 = 0};
  // 6.4+ knows the ioctl encoding; 6.1 takes it for a command on device dev_id (ENODEV) or one
  // it does not know (EOPNOTSUPP): then the legacy number. A kernel without the legacy numbers
  // refuses those with EOPNOTSUPP, and the first answer is the one that counts.
  int res = run(abi::kAddDev, cmd, true);
  if (res == -ENODEV || res == -EOPNOTSUPP) {
    info = wanted;
    const int legacy = run(abi::kAddDev, cmd, false);
    res = legacy == -EOPNOTSUPP ? res : legacy;
  }
  if (res < 0) {
    return command_error(res, "ublk ADD_DEV", wanted.dev_id);
  }
  ioctl_ = (info.flags & abi::kFlagCmdIoctlEncode) != 0;
  return info;
}

Result<void> Control::set_params(std::uint32_t dev_id, abi::Params params) {
  const std::lock_guard lock(mu_);
  params.len = sizeof(params);
  const abi::CtrlCmd cmd{.dev_id = dev_id, .queue_id = 0xffff, .len = sizeof(params),
                         .addr = reinterpret_cast<std::uintptr_t>(&params), .data0 = 0, .data1 = 0};
  if (const int res = run(abi::kSetParams, cmd, ioctl_); res < 0) {
    return command_error(res, "ublk SET_PARAMS", dev_id);
  }
  return ok();
}

Result<void> Control::simple(abi::CtrlOp op, std::uint32_t dev_id, std::uint64_t data, const char* what) {
  const std::lock_guard lock(mu_);
  const abi::CtrlCmd cmd{.dev_id = dev_id, .queue_id = 0xffff, .len = 0, .addr = 0, .data0 = data, .data1 = 0};
  if (const int res = run(op, cmd, ioctl_); res < 0) {
    return command_error(res, what, dev_id);
  }
  return ok();
}

Result<void> Control::start(std::uint32_t dev_id, std::int32_t pid) {
  return simple(abi::kStartDev, dev_id, static_cast<std::uint64_t>(pid), "ublk START_DEV");
}
Result<void> Control::stop(std::uint32_t dev_id) { return simple(abi::kStopDev, dev_id, 0, "ublk STOP_DEV"); }
Result<void> Control::remove(std::uint32_t dev_id) { return simple(abi::kDelDev, dev_id, 0, "ublk DEL_DEV"); }

int Control::get(abi::CtrlOp op, std::uint32_t dev_id, void* buf, std::uint16_t len, bool ioctl) {
  const abi::CtrlCmd cmd{.dev_id = dev_id, .queue_id = 0xffff, .len = len,
                         .addr = reinterpret_cast<std::uintptr_t>(buf), .data0 = 0, .data1 = 0};
  return run(op, cmd, ioctl);
}

Result<abi::DevInfo> Control::info(std::uint32_t dev_id) {
  const std::lock_guard lock(mu_);
  abi::DevInfo info{};
  if (const int res = get(abi::kGetDevInfo, dev_id, &info, sizeof(info), ioctl_); res < 0) {
    return command_error(res, "ublk GET_DEV_INFO", dev_id);
  }
  return info;
}

Result<abi::DevInfo> Control::attach(std::uint32_t dev_id) {
  const std::lock_guard lock(mu_);
  abi::DevInfo info{};
  int res = get(abi::kGetDevInfo, dev_id, &info, sizeof(info), true);
  if (res == -EOPNOTSUPP) {
    res = get(abi::kGetDevInfo, dev_id, &info, sizeof(info), false);
  }
  if (res == -ENODEV) {
    return Error::from_errno(ENODEV, "ublk GET_DEV_INFO", fmt::format("there is no ublk device {}", dev_id));
  }
  if (res < 0) {
    return command_error(res, "ublk GET_DEV_INFO", dev_id);
  }
  ioctl_ = (info.flags & abi::kFlagCmdIoctlEncode) != 0;
  return info;
}

Result<abi::Params> Control::params(std::uint32_t dev_id) {
  const std::lock_guard lock(mu_);
  abi::Params params{};
  params.len = sizeof(params);  // the kernel copies at most this much
  if (const int res = get(abi::kGetParams, dev_id, &params, sizeof(params), ioctl_); res < 0) {
    return command_error(res, "ublk GET_PARAMS", dev_id);
  }
  return params;
}

Result<void> Control::start_recovery(std::uint32_t dev_id) {
  return simple(abi::kStartUserRecovery, dev_id, 0, "ublk START_USER_RECOVERY");
}
Result<void> Control::end_recovery(std::uint32_t dev_id, std::int32_t pid) {
  return simple(abi::kEndUserRecovery, dev_id, static_cast<std::uint64_t>(pid), "ublk END_USER_RECOVERY");
}

}  // namespace vfe::ublk
