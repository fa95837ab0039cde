#include "frontends/ublk/device.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <bit>
#include <cstdlib>
#include <chrono>
#include <thread>

#include "base/log.hpp"
#include "base/scope_guard.hpp"

namespace vfe::ublk {
namespace {

using std::chrono::milliseconds;

// 1 GiB a discard where the target names no limit: a controller may limit a range (NVMe 2.0
// DMRSL, Identify CNS 06h) without saying so to a driver that cannot ask; QEMU's is just under
// 2 GiB, and it skips a longer range silently.
constexpr std::uint32_t kDefaultDiscardSectors = 1U << 21;

std::uint32_t discard_sectors(const BlockGeometry& g) {
  if (!g.discard) {
    return 0;  // the kernel never sends one
  }
  if (g.max_discard_bytes == 0) {
    return kDefaultDiscardSectors;
  }
  const std::uint64_t sectors = g.max_discard_bytes / g.block_size * g.block_size >> 9;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(sectors, ~0U));
}

// /dev/ublkcN appears once udev or devtmpfs made it, shortly after ADD_DEV.
Result<Fd> open_char_device(std::uint32_t id) {
  const std::string path = "/dev/ublkc" + std::to_string(id);
  for (int i = 0;; ++i) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (fd || errno != ENOENT || i == 100) {
      if (!fd) {
        return Error::from_errno(errno, "open", path);
      }
      return fd;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
}

// Whether process `pid` exists (a zombie too; EPERM: it exists but is not ours to signal).
bool process_exists(std::int32_t pid) noexcept { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

const char* state_name(std::uint16_t state) noexcept {
  switch (state) {
    case abi::kStateDead:
      return "stopped";
    case abi::kStateLive:
      return "live";
    case abi::kStateQuiesced:
      return "waiting for a new server";
    default:
      return "in an unknown state";
  }
}

}  // namespace

Result<abi::Params> params_for(const BlockGeometry& g, std::uint32_t max_io_buf_bytes) {
  if (g.block_size < 512 || g.block_size > 4096 || !std::has_single_bit(g.block_size)) {
    return Error::invalid("ublk parameters", fmt::format("a block size of {} bytes; ublk takes 512 to 4096, a power "
                                                         "of two", g.block_size));
  }
  if (g.blocks == 0 || max_io_buf_bytes < g.block_size) {
    return Error::invalid("ublk parameters", fmt::format("{} blocks, requests of at most {} bytes", g.blocks,
                                                         max_io_buf_bytes));
  }
  abi::Params p{};
  p.types = abi::kParamBasic;
  const auto shift = static_cast<std::uint8_t>(std::countr_zero(g.block_size));
  p.basic.attrs = g.volatile_cache ? abi::kAttrVolatileCache | abi::kAttrFua : 0;
  p.basic.logical_bs_shift = shift;
  p.basic.physical_bs_shift = shift;
  p.basic.io_min_shift = shift;
  p.basic.io_opt_shift = shift;
  p.basic.max_sectors = max_io_buf_bytes >> 9;
  p.basic.dev_sectors = g.blocks * g.block_size >> 9;
  if (g.write_zeroes || g.discard) {
    // A limit of 0 means the kernel never sends that operation. A discard is one range (ublk
    // takes no other segment count); larger ones the kernel splits.
    p.types |= abi::kParamDiscard;
    p.discard.discard_granularity = g.block_size;
    p.discard.max_write_zeroes_sectors = g.write_zeroes ? p.basic.max_sectors : 0;
    p.discard.max_discard_sectors = discard_sectors(g);
    p.discard.max_discard_segments = 1;
  }
  return p;
}

Result<std::unique_ptr<Device>> Device::create(const DeviceOptions& options, const BlockGeometry& geometry,
                                               const std::vector<QueueSpec>& queues) {
  if (queues.empty() || queues.size() > 4096 || options.depth == 0 || options.depth > abi::kMaxQueueDepth) {
    return Error::invalid("create ublk device", fmt::format("{} queue(s) of depth {}: 1 to 4096 each", queues.size(),
                                                            options.depth));
  }
  VFE_TRY(params_for(geometry, geometry.max_io_bytes));  // refused before the kernel is asked
  VFE_TRY_ASSIGN(auto control, Control::open());
  abi::DevInfo wanted{};
  wanted.nr_hw_queues = static_cast<std::uint16_t>(queues.size());
  wanted.queue_depth = options.depth;
  wanted.max_io_buf_bytes = geometry.max_io_bytes;
  wanted.dev_id = options.id < 0 ? ~0U : static_cast<std::uint32_t>(options.id);
  wanted.flags = options.recovery ? abi::kFlagUserRecovery | abi::kFlagUserRecoveryReissue : 0;
  VFE_TRY_ASSIGN(const abi::DevInfo info, control->add(wanted));
  std::unique_ptr<Device> dev(new Device(std::move(control), info));  // from here ~Device deletes it
  if (info.nr_hw_queues != queues.size() || info.queue_depth != options.depth) {
    return Error::invalid("create ublk device", fmt::format("the kernel allows {} queue(s) of depth {} (one queue "
                                                            "per CPU at most); {} of depth {} asked for",
                                                            info.nr_hw_queues, info.queue_depth, queues.size(),
                                                            options.depth));
  }
  VFE_TRY_ASSIGN(const abi::Params params, params_for(geometry, info.max_io_buf_bytes));
  VFE_TRY(dev->control_->set_params(info.dev_id, params));
  VFE_TRY_ASSIGN(dev->cdev_, open_char_device(info.dev_id));
  VFE_TRY(dev->open_queues(queues));
  return dev;
}

Result<std::unique_ptr<Device>> Device::recover(std::uint32_t id, std::uint16_t depth, const BlockGeometry& geometry,
                                                const std::vector<QueueSpec>& queues) {
  VFE_TRY_ASSIGN(auto control, Control::open());
  VFE_TRY_ASSIGN(const abi::DevInfo info, control->attach(id));
  VFE_TRY(check_takeover(info));
  std::unique_ptr<Device> dev(new Device(std::move(control), info));
  dev->owned_ = false;  // not ours to stop or delete until the takeover is done
  dev->recovering_ = true;
  VFE_TRY(dev->check_match(depth, geometry, queues.size()));
  VFE_TRY(dev->start_recovery());
  VFE_TRY_ASSIGN(dev->cdev_, open_char_device(id));
  VFE_TRY(dev->open_queues(queues));
  return dev;
}

Result<void> Device::check_takeover(const abi::DevInfo& info) {
  if ((info.flags & abi::kFlagUserRecovery) == 0) {
    return Error::invalid("recover ublk device",
                          fmt::format("device {} was made without recovery; remove it (vfe-ublk --remove {}) and "
                                      "make it again", info.dev_id, info.dev_id));
  }
  if (info.state == abi::kStateDead) {
    return Error::invalid("recover ublk device",
                          fmt::format("device {} was stopped, so it cannot be taken over; remove it (vfe-ublk "
                                      "--remove {}) and make it again", info.dev_id, info.dev_id));
  }
  return ok();
}

// The new server must offer what the device was made with: the kernel keeps its parameters.
Result<void> Device::check_match(std::uint16_t depth, const BlockGeometry& geometry, std::size_t queues) {
  const char* what = "recover ublk device";
  const std::uint32_t id = info_.dev_id;
  if (info_.nr_hw_queues != queues || info_.queue_depth != depth) {
    return Error::invalid(what, fmt::format("device {} has {} queue(s) of depth {}; {} of depth {} asked for", id,
                                            info_.nr_hw_queues, info_.queue_depth, queues, depth));
  }
  VFE_TRY_ASSIGN(const abi::Params had, control_->params(id));
  VFE_TRY_ASSIGN(const abi::Params want, params_for(geometry, geometry.max_io_bytes));
  const auto offers = [](const abi::Params& p) {
    return fmt::format("{} sectors in {}-byte blocks, requests up to {} bytes, attributes {:#x}, discard {}, write "
                       "zeroes {}", p.basic.dev_sectors, 1U << p.basic.logical_bs_shift,
                       std::uint64_t{p.basic.max_sectors} << 9, p.basic.attrs, p.discard.max_discard_sectors != 0,
                       p.discard.max_write_zeroes_sectors != 0);
  };
  const bool same = had.basic.dev_sectors == want.basic.dev_sectors &&
                    had.basic.logical_bs_shift == want.basic.logical_bs_shift &&
                    (std::uint64_t{had.basic.max_sectors} << 9) <= geometry.max_io_bytes &&
                    had.basic.attrs == want.basic.attrs &&
                    (had.discard.max_discard_sectors != 0) == (want.discard.max_discard_sectors != 0) &&
                    (had.discard.max_write_zeroes_sectors != 0) == (want.discard.max_write_zeroes_sectors != 0);
  if (!same) {
    return Error::invalid(what, fmt::format("device {} has {}; this server offers {}", id, offers(had), offers(want)));
  }
  return ok();
}

// START_USER_RECOVERY. EBUSY until the old server's /dev/ublkcN is closed (the kernel tears its
// rings down after the process is gone) and the kernel has taken its requests back.
Result<void> Device::start_recovery() {
  const std::uint32_t id = info_.dev_id;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto r = control_->start_recovery(id);
  while (!r && r.error().is(EBUSY) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(milliseconds(50));
    r = control_->start_recovery(id);
  }
  if (r) {
    return r;
  }
  if (r.error().is(EINVAL)) {
    return Error::invalid("recover ublk device",
                          fmt::format("the kernel refuses to start another takeover of device {}: an earlier server "
                                      "or takeover stopped before every queue was ready, which Linux cannot "
                                      "recover from; "
                                      "`vfe-ublk --remove {}` fails the I/O it holds and removes it", id, id));
  }
  if (!r.error().is(EBUSY)) {
    return r;
  }
  VFE_TRY_ASSIGN(const abi::DevInfo now, control_->info(id));
  return Error::from_errno(EBUSY, "recover ublk device",
                           fmt::format("after 10 s device {} is still {}, served by process {}{}", id,
                                       state_name(now.state), now.ublksrv_pid,
                                       process_exists(now.ublksrv_pid) ? "" : " (gone)"));
}

Result<std::optional<abi::DevInfo>> Device::find(std::uint32_t id) {
  VFE_TRY_ASSIGN(auto control, Control::open());
  auto info = control->attach(id);
  if (!info && info.error().is(ENODEV)) {
    return std::optional<abi::DevInfo>{};
  }
  if (!info) {
    return std::move(info).error();
  }
  return std::optional<abi::DevInfo>{*info};
}

Result<void> Device::remove_abandoned(std::uint32_t id) {
  VFE_TRY_ASSIGN(auto control, Control::open());
  VFE_TRY_ASSIGN(const abi::DevInfo info, control->attach(id));
  if (info.state == abi::kStateLive && process_exists(info.ublksrv_pid)) {
    return Error::from_errno(EBUSY, "remove ublk device",
                             fmt::format("device {} is {}, served by process {}: stop that one (SIGINT) instead", id,
                                         state_name(info.state), info.ublksrv_pid));
  }
  VFE_TRY(control->stop(id));  // fails what a recoverable device holds, removes the block device
  return control->remove(id);
}

Result<void> Device::open_queues(const std::vector<QueueSpec>& queues) {
  for (std::size_t q = 0; q < queues.size(); ++q) {
    VFE_TRY_ASSIGN(auto queue, Queue::open(cdev_.get(), static_cast<std::uint16_t>(q), info_.queue_depth,
                                           control_->ioctl_encoding(), *queues[q].target, *queues[q].worker));
    queues_.push_back(std::move(queue));
  }
  return ok();
}

Result<void> Device::start() {
  if (started_) {
    return Error::from_errno(EALREADY, "start ublk device", block_path() + " is started already");
  }
  // From the first fetch on, tags are live: stop() must bring them back, whatever happens next
  // (STOP_DEV on a device never started still aborts the fetches).
  started_ = true;
  for (auto& q : queues_) {
    VFE_TRY(q->start());
  }
  const auto pid = static_cast<std::int32_t>(::getpid());
  if (!recovering_) {
    return control_->start(info_.dev_id, pid);
  }
  VFE_TRY(control_->end_recovery(info_.dev_id, pid));
  owned_ = true;  // the device is this server's now: teardown stops and deletes it
  return ok();
}

Result<void> Device::stop() {
  if (!started_) {
    return ok();
  }
  if (!owned_) {
    return Error::from_errno(EBUSY, "stop ublk device",
                             fmt::format("{}: its takeover did not finish, and STOP_DEV would fail the I/O it holds; "
                                         "end the process instead, and the device waits for the next server",
                                         block_path()));
  }
  if (!stop_sent_) {
    VFE_TRY(control_->stop(info_.dev_id));
    stop_sent_ = true;
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (auto& q : queues_) {
    while (q->tags_live() != 0) {
      if (std::chrono::steady_clock::now() > end) {
        return Error::from_errno(ETIMEDOUT, "stop ublk device",
                                 fmt::format("{}: {} tag(s) did not come back within 30 s", block_path(),
                                             q->tags_live()));
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
  }
  return ok();
}

std::uint64_t Device::served() const noexcept {
  std::uint64_t n = 0;
  for (const auto& q : queues_) {
    n += q->served();
  }
  return n;
}

Device::~Device() {
  if (auto r = stop(); !r) {
    // A queue with live tags must not go: the kernel would complete their commands into freed
    // memory. Nothing safe is left to do in this process.
    log_error("ublk device {}: {}; the kernel still holds commands that name this process's memory", info_.dev_id,
              r.error().message());
    std::abort();
  }
  queues_.clear();
  cdev_.reset();  // DEL_DEV waits until nothing holds the device
  if (!owned_) {
    return;
  }
  if (auto r = control_->remove(info_.dev_id); !r) {
    log_error("ublk device {}: {}", info_.dev_id, r.error().message());
  }
}

}  // namespace vfe::ublk
