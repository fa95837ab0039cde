#pragma once
/// \file
/// `Device`: one ublk block device (/dev/ublkbN) whose queues are served on engine workers, each
/// by its own `BlockTarget`.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "engine/worker.hpp"
#include "frontends/ublk/control.hpp"
#include "frontends/ublk/queue.hpp"
#include "frontends/ublk/target.hpp"

namespace vfe::ublk {

struct DeviceOptions {
  std::int32_t id = -1;      ///< the N of /dev/ublkbN; -1: the kernel picks a free one
  std::uint16_t depth = 64;  ///< requests in flight per queue (tags), 1 to 4096
  /// UBLK_F_USER_RECOVERY and _REISSUE: when this process dies, the kernel keeps the block
  /// device and holds its requests (those this process had under way too) until a new server
  /// takes over with `Device::recover`. Without it, they fail and the block device goes.
  bool recovery = false;
};

/// One ublk queue: the worker that serves it and the target its requests go to. Both must
/// outlive the Device.
struct QueueSpec {
  engine::Worker* worker = nullptr;
  BlockTarget* target = nullptr;
};

/// Lifecycle: `create` adds the device (ADD_DEV, SET_PARAMS) and maps its queues; `start` has
/// every queue fetch every tag and makes the block device appear; `stop` removes the block
/// device (requests the kernel still holds fail, those with a target finish first) and waits
/// until every tag came back; the destructor stops and deletes the device (DEL_DEV).
/// Setup-path calls, one thread at a time.
class Device {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Device>> create(const DeviceOptions& options,
                                                              const BlockGeometry& geometry,
                                                              const std::vector<QueueSpec>& queues);
  /// Takes over device `id`, made with `recovery`, whose server died: checks that `depth`,
  /// `queues` and `geometry` are what the device was made with (`find` tells the first two),
  /// waits up to 10 s for the kernel to let go of the old server (START_USER_RECOVERY), then
  /// maps the queues; `start` hands the held requests to them. A takeover refused by the checks
  /// changes nothing. One that fails after START_USER_RECOVERY, before every queue fetched its
  /// tags, leaves the device unrecoverable on Linux 6.12 (the kernel starts a recovery only once
  /// every queue was ready): only `remove_abandoned` frees it then, failing its held I/O.
  [[nodiscard]] static Result<std::unique_ptr<Device>> recover(std::uint32_t id, std::uint16_t depth,
                                                               const BlockGeometry& geometry,
                                                               const std::vector<QueueSpec>& queues);
  /// Whether a new server may take device `info` over: made with `recovery`, and not stopped.
  [[nodiscard]] static Result<void> check_takeover(const abi::DevInfo& info);
  /// Device `id` (live, or left by a server that died); nullopt when there is none.
  [[nodiscard]] static Result<std::optional<abi::DevInfo>> find(std::uint32_t id);
  /// Removes device `id` whose server is gone: the requests it holds fail, the block device and
  /// /dev/ublkcN go, and the id is free again. EBUSY while it is live and its server's process
  /// exists.
  [[nodiscard]] static Result<void> remove_abandoned(std::uint32_t id);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  /// Blocks until the kernel has added the block device (which reads its partition table, served
  /// by the workers meanwhile); after `recover`, until the held requests go to the queues.
  [[nodiscard]] Result<void> start();
  /// Idempotent. Waits up to 30 s for the tags to come back (ETIMEDOUT; calling it again waits
  /// again). The destructor stops too, and aborts the process when that fails: the kernel would
  /// complete the commands it still holds into freed memory. A takeover whose `start` failed
  /// after its queues fetched is not stopped (EBUSY): STOP_DEV would fail the I/O the device
  /// holds for a server. End the process instead (`_exit`): the kernel takes the commands back
  /// and the device waits for the next server.
  [[nodiscard]] Result<void> stop();
  /// False while a takeover (`recover`) has not finished `start`: the device is not this
  /// Device's to stop or delete.
  [[nodiscard]] bool owned() const noexcept { return owned_; }

  [[nodiscard]] std::uint32_t id() const noexcept { return info_.dev_id; }
  [[nodiscard]] std::string block_path() const { return "/dev/ublkb" + std::to_string(info_.dev_id); }
  [[nodiscard]] const abi::DevInfo& info() const noexcept { return info_; }
  /// Requests served by all queues so far.
  [[nodiscard]] std::uint64_t served() const noexcept;

 private:
  Device(std::unique_ptr<Control> control, const abi::DevInfo& info) noexcept
      : control_(std::move(control)), info_(info) {}
  [[nodiscard]] Result<void> open_queues(const std::vector<QueueSpec>& queues);
  [[nodiscard]] Result<void> check_match(std::uint16_t depth, const BlockGeometry& geometry, std::size_t queues);
  [[nodiscard]] Result<void> start_recovery();

  // Teardown order (reverse of declaration): queues (unmapped, off their workers), then the
  // char device, then the control device that deletes the device.
  std::unique_ptr<Control> control_;
  abi::DevInfo info_;
  Fd cdev_;
  std::vector<std::unique_ptr<Queue>> queues_;
  bool started_ = false;    // tags were fetched: stop() must bring them back
  bool stop_sent_ = false;  // STOP_DEV went out (stop() then only waits for the tags)
  bool recovering_ = false; // made by recover(): start() ends the recovery
  bool owned_ = true;       // the destructor deletes the device (after recover(): once started)
};

/// The parameters the kernel is told for `geometry` (exposed for unit tests).
[[nodiscard]] Result<abi::Params> params_for(const BlockGeometry& geometry, std::uint32_t max_io_buf_bytes);

}  // namespace vfe::ublk
