#include "drivers/nvme/controller.hpp"

#include <fmt/format.h>
#include <linux/vfio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/scope_guard.hpp"
#include "drivers/nvme/io_queue.hpp"
#include "drivers/nvme/status.hpp"
#include "mmio/config_space.hpp"

namespace vfe::nvme {
namespace {

using std::chrono::milliseconds;

constexpr std::uint16_t kAdminEntries = 32;
constexpr std::uint32_t kPageShift = 12;         // the driver's memory page: 4 KiB
constexpr std::uint32_t kNvmeClassCode = 0x010802;  // mass storage / NVM / NVM Express (PCI code)
constexpr std::uint64_t kAdminSqOffset = 0, kAdminCqOffset = 4096, kIdentifyOffset = 8192;

}  // namespace

Result<std::unique_ptr<Controller>> Controller::create(std::string_view bdf, const ControllerOptions& options) {
  std::unique_ptr<Controller> c(new Controller());
  VFE_TRY(c->open(bdf, options));
  c->watchdog_ = std::thread([p = c.get()] { p->watchdog(); });
  return c;
}

Result<void> Controller::open(std::string_view bdf, const ControllerOptions& options) {
  options_ = options;
  VFE_TRY_ASSIGN(auto dev, vfio::Device::open(bdf, {.mode = options.mode, .sys = nullptr}));
  device_ = std::make_unique<vfio::Device>(std::move(dev));
  VFE_TRY_ASSIGN(auto config, mmio::ConfigSpace::open(*device_));
  VFE_TRY_ASSIGN(const std::uint32_t class_rev, config.read32(0x08));
  if ((class_rev >> 8) != kNvmeClassCode) {
    return Error::invalid("open NVMe controller",
                          fmt::format("{} has PCI class code {:06x}, not {:06x} (NVM Express)", bdf,
                                      class_rev >> 8, kNvmeClassCode));
  }
  VFE_TRY(config.enable_bus_master());  // vfio-pci enables memory decoding only
  VFE_TRY_ASSIGN(auto bar, mmio::Bar::open(*device_, VFIO_PCI_BAR0_REGION_INDEX));
  bar_.emplace(std::move(bar));
  cap_ = Cap{bar_->read64(reg::kCap)};
  version_ = bar_->read32(reg::kVs);
  if (cap_.raw == ~0ULL) {
    return Error::from_errno(ENODEV, "open NVMe controller",
                             fmt::format("{}: BAR0 reads all ones; the device is gone or in reset", bdf));
  }
  if (!cap_.nvm_command_set()) {
    return Error::not_supported("open NVMe controller", "CAP.CSS: the controller lacks the NVM command set");
  }
  if (kPageShift < cap_.mps_min() || kPageShift > cap_.mps_max()) {
    return Error::not_supported("open NVMe controller",
                                fmt::format("memory page sizes 2^{}..2^{} exclude the 4 KiB this driver uses",
                                            cap_.mps_min(), cap_.mps_max()));
  }
  page_shift_ = kPageShift;
  VFE_TRY_ASSIGN(space_, dma::DmaSpace::create(device_->shared_backend()));
  VFE_TRY(enable_vectors(options.io_queues));
  watch_device_requests();
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, 3 * 4096));
  admin_mem_.emplace(std::move(mem));
  admin_.emplace(*bar_, cap_.doorbell_stride(), admin_mem_->as<Sqe>(),
                 reinterpret_cast<Cqe*>(admin_mem_->as<std::uint8_t>() + kAdminCqOffset), kAdminEntries);
  VFE_TRY(bring_up());
  // From here the controller may DMA to the admin memory: a failure must stop it first.
  auto stop = ScopeGuard([this]() noexcept { stop_dma(); });
  VFE_TRY(identify());
  VFE_TRY(set_queue_count(options.io_queues));
  stop.dismiss();
  up_ = true;
  return ok();
}

Result<void> Controller::enable_vectors(std::uint32_t wanted_queues) {
  VFE_TRY_ASSIGN(const auto info, device_->irq_info(VFIO_PCI_MSIX_IRQ_INDEX));
  if (info.count == 0) {
    return ok();  // no MSI-X: polled queues only (create_io_queue says so for the others)
  }
  const std::uint32_t wanted = wanted_queues != 0 ? wanted_queues : std::max(1U, std::thread::hardware_concurrency());
  const std::uint32_t vectors = std::min(info.count, wanted + 1);  // + vector 0 for the admin queue
  VFE_TRY_ASSIGN(auto irqs, irq::IrqSet::enable(*device_, irq::IrqIndex::msix, vectors));
  irqs_.emplace(std::move(irqs));
  return ok();
}

// NVMe 1.4 §7.6.1 controller initialisation: reset, admin queue, enable.
Result<void> Controller::bring_up() {
  VFE_TRY(disable());
  admin_->reset();
  bar_->write32(reg::kAqa, (static_cast<std::uint32_t>(kAdminEntries - 1) << 16) | (kAdminEntries - 1U));
  bar_->write64(reg::kAsq, dma::to_u64(admin_mem_->iova_at(kAdminSqOffset)));
  bar_->write64(reg::kAcq, dma::to_u64(admin_mem_->iova_at(kAdminCqOffset)));
  // §3.1.5: NVM command set (CSS 0), round robin (AMS 0), 4 KiB pages, 64/16-byte entries.
  bar_->write32(reg::kCc, cc::iocqes(kCqeShift) | cc::iosqes(kSqeShift) | cc::mps(page_shift_) | cc::kEnable);
  return wait_ready(true, "enable the controller");
}

Result<void> Controller::disable() {
  const std::uint32_t cc_now = bar_->read32(reg::kCc);
  if ((cc_now & cc::kEnable) == 0 && (bar_->read32(reg::kCsts) & csts::kReady) == 0) {
    return ok();
  }
  // §3.1.6: CC.EN must not change while CSTS.RDY still follows an earlier change of it; a
  // controller in fatal status never gets ready, and clearing EN is how it is reset.
  if ((cc_now & cc::kEnable) != 0 && (bar_->read32(reg::kCsts) & csts::kFatal) == 0) {
    VFE_TRY(wait_ready(true, "wait for the controller to finish enabling"));
  }
  bar_->write32(reg::kCc, cc_now & ~cc::kEnable);
  return wait_ready(false, "disable the controller");
}

Result<void> Controller::wait_ready(bool ready, const char* what) {
  const auto limit = milliseconds(std::max(500U, cap_.timeout_ms()));
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const std::uint32_t csts = bar_->read32(reg::kCsts);
    if (csts == ~0U) {
      return Error::from_errno(ENODEV, what, "CSTS reads all ones: the device is gone");
    }
    if ((csts & csts::kFatal) != 0 && ready) {
      return Error::from_errno(EIO, what, "the controller reports a fatal status (CSTS.CFS)");
    }
    if (((csts & csts::kReady) != 0) == ready) {
      return ok();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Error::from_errno(ETIMEDOUT, what,
                               fmt::format("CSTS.RDY did not become {} within CAP.TO ({} ms)", ready ? 1 : 0,
                                           limit.count()));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

Result<Cqe> Controller::admin(const Sqe& cmd, const char* what) {
  if (released()) {
    return device_->released_error(what);
  }
  return admin_->execute(cmd, milliseconds(std::max(5000U, cap_.timeout_ms())), what);
}

Result<void> Controller::identify_page(std::uint32_t cns_value, std::uint32_t nsid, const char* what) {
  Sqe cmd{};
  cmd.opcode = admin::kIdentify;
  cmd.nsid = nsid;
  cmd.prp1 = dma::to_u64(admin_mem_->iova_at(kIdentifyOffset));
  cmd.cdw10 = cns_value;
  std::memset(admin_mem_->as<std::uint8_t>() + kIdentifyOffset, 0, kIdentifySize);
  VFE_TRY(admin(cmd, what));
  return ok();
}

// §5.15: the controller, its active namespaces, and each of them.
Result<void> Controller::identify() {
  const std::span<const std::uint8_t> page(admin_mem_->as<std::uint8_t>() + kIdentifyOffset, kIdentifySize);
  VFE_TRY(identify_page(cns::kController, 0, "identify controller"));
  VFE_TRY_ASSIGN(identity_, parse_identify_controller(page));
  max_transfer_ = identity_.max_transfer_bytes(cap_.mps_min());
  const std::uint64_t one_list = (page_size() / sizeof(std::uint64_t)) * page_size();  // unchained PRP list
  max_transfer_ = max_transfer_ == 0 ? one_list : std::min(max_transfer_, one_list);
  VFE_TRY(identify_page(cns::kActiveNamespaces, 0, "identify active namespaces"));
  VFE_TRY_ASSIGN(const auto ids, parse_active_namespace_list(page));
  namespaces_.clear();
  for (const std::uint32_t nsid : ids) {
    VFE_TRY(identify_page(cns::kNamespace, nsid, "identify namespace"));
    VFE_TRY_ASSIGN(auto ns, parse_identify_namespace(nsid, page));
    namespaces_.push_back(std::move(ns));
  }
  return ok();
}

// §5.21.1.7 Number of Queues: ask for `wanted` pairs; the answer says how many exist.
Result<void> Controller::set_queue_count(std::uint32_t wanted) {
  if (wanted == 0) {
    wanted = std::max(1U, std::thread::hardware_concurrency());
  }
  wanted = std::min(wanted, 65535U);
  Sqe cmd{};
  cmd.opcode = admin::kSetFeatures;
  cmd.cdw10 = feature::kNumberOfQueues;
  cmd.cdw11 = ((wanted - 1) << 16) | (wanted - 1);  // NCQR, NSQR: 0's based
  VFE_TRY_ASSIGN(const Cqe cqe, admin(cmd, "set features: number of queues"));
  const std::uint32_t granted = std::min((cqe.dw0 & 0xffff) + 1, (cqe.dw0 >> 16) + 1);
  io_queue_limit_ = std::min(granted, wanted);
  std::lock_guard lock(queues_mu_);
  qid_used_.assign(io_queue_limit_ + 1, false);
  qid_used_[0] = true;  // the admin queue
  return ok();
}

const NamespaceInfo* Controller::find_namespace(std::uint32_t nsid) const noexcept {
  for (const auto& ns : namespaces_) {
    if (ns.nsid == nsid) {
      return &ns;
    }
  }
  return nullptr;
}

std::string Controller::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

void Controller::fail(int err, const std::string& why) {
  // Held to the end: a queue being retired, or a second caller, waits here until DMA stopped.
  std::lock_guard failing(fail_mu_);
  if (!mark_failed(err, why)) {
    return;
  }
  // Stop the controller's DMA before anyone is told that their buffers are free again.
  stop_dma();
  fail_queues(err);
}

bool Controller::mark_failed(int err, const std::string& why) {
  {
    std::lock_guard lock(mu_);
    if (state() != ControllerState::running) {
      return false;
    }
    failure_ = why;
    fail_errno_.store(err, std::memory_order_release);
    state_.store(ControllerState::failed, std::memory_order_release);
  }
  log_error("nvme {}: {}; failing every outstanding request", device_->bdf().to_string(), why);
  return true;
}

void Controller::fail_queues(int err) noexcept {
  std::lock_guard lock(queues_mu_);
  for (IoQueue* q : queues_) {
    if (auto r = q->worker()->run_sync([q, err] { q->fail_in_flight(-err); }); !r) {
      log_error("nvme: failing queue {}: {}", q->qid(), r.error().message());
    }
  }
}

// §3.1.5: clearing CC.EN resets the controller, which stops processing commands; when it does
// not get there within CAP.TO, a function level reset stops it.
void Controller::stop_dma() noexcept {
  if (bar_->read32(reg::kCsts) == ~0U) {
    return;  // gone: nothing left to stop
  }
  if (auto r = disable(); !r) {
    log_error("nvme {}: {}; resetting the function", device_->bdf().to_string(), r.error().message());
    if (auto reset = device_->reset(); !reset) {
      log_error("nvme {}: {}", device_->bdf().to_string(), reset.error().message());
    }
  }
}

void Controller::watchdog() noexcept {
  std::unique_lock lock(mu_);
  while (!stop_watchdog_) {
    watchdog_cv_.wait_for(lock, options_.watchdog_period);
    if (stop_watchdog_) {
      break;
    }
    lock.unlock();
    epoch_.fetch_add(1, std::memory_order_relaxed);
    if (device_requested()) {
      on_device_request();
    }
    check_health();
    lock.lock();
  }
}

void Controller::check_health() noexcept {
  if (state() != ControllerState::running) {
    return;
  }
  const std::uint32_t csts = bar_->read32(reg::kCsts);
  if (csts == ~0U) {
    return fail(ENODEV, "the controller no longer answers (CSTS reads all ones): surprise removal or a dead link");
  }
  if ((csts & csts::kFatal) != 0) {
    return fail(EIO, "the controller reports a fatal status (CSTS.CFS)");
  }
  if ((csts & csts::kReady) == 0) {
    return fail(EIO, "the controller was reset behind the driver's back (CSTS.RDY is 0: an FLR, or another user)");
  }
  const std::uint32_t max_age = static_cast<std::uint32_t>(options_.io_timeout / options_.watchdog_period) + 1;
  int late_qid = -1;
  {
    std::lock_guard lock(queues_mu_);
    for (IoQueue* q : queues_) {
      if (q->timed_out()) {
        late_qid = q->qid();
        break;
      }
      q->post_age_check(max_age);
    }
  }
  if (late_qid >= 0) {
    fail(ETIMEDOUT, fmt::format("a command on I/O queue {} did not complete within {} ms", late_qid,
                                options_.io_timeout.count()));
  }
}

Result<void> Controller::shutdown() {
  {
    std::lock_guard lock(queues_mu_);
    if (!queues_.empty()) {
      return Error::from_errno(EBUSY, "shut down NVMe controller",
                               fmt::format("{} I/O queue(s) still exist; destroy them first", queues_.size()));
    }
  }
  std::lock_guard failing(fail_mu_);
  const ControllerState was = state_.exchange(ControllerState::shut_down, std::memory_order_acq_rel);
  if (was != ControllerState::running) {
    return ok();  // failed controllers are disabled already
  }
  if (auto r = normal_shutdown(); !r) {
    stop_dma();
    return r;
  }
  return ok();
}

// §7.6.2: a normal shutdown, so the controller commits its volatile data to the medium.
Result<void> Controller::normal_shutdown() {
  bar_->write32(reg::kCc, (bar_->read32(reg::kCc) & ~cc::kShnMask) | cc::kShnNormal);
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(std::max(5000U, cap_.timeout_ms()));
  for (;;) {
    const std::uint32_t csts = bar_->read32(reg::kCsts);
    if (csts == ~0U) {
      return Error::from_errno(ENODEV, "shut down NVMe controller", "CSTS reads all ones: the device is gone");
    }
    if ((csts & csts::kShstMask) == csts::kShstComplete) {
      return ok();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Error::from_errno(ETIMEDOUT, "shut down NVMe controller", "CSTS.SHST did not report completion");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

Controller::~Controller() {
  if (watchdog_.joinable()) {
    {
      std::lock_guard lock(mu_);
      stop_watchdog_ = true;
    }
    watchdog_cv_.notify_all();
    watchdog_.join();
  }
  if (!queues_.empty()) {
    log_error("nvme: controller destroyed with {} I/O queue(s) alive; destroy queues first", queues_.size());
  }
  if (up_) {
    if (auto r = shutdown(); !r) {
      log_error("nvme: {}", r.error().message());
    }
  }
}

}  // namespace vfe::nvme

namespace vfe::nvme {

Result<std::uint16_t> Controller::claim_qid(bool needs_vector) {
  std::lock_guard lock(queues_mu_);
  for (std::size_t qid = 1; qid < qid_used_.size(); ++qid) {
    if (!qid_used_[qid]) {
      if (needs_vector && (!irqs_ || qid >= irqs_->count())) {
        break;
      }
      qid_used_[qid] = true;
      return static_cast<std::uint16_t>(qid);
    }
  }
  if (needs_vector && !irqs_) {
    return Error::not_supported("create I/O queue", "the controller has no MSI-X; use polling completion");
  }
  return Error::from_errno(EBUSY, "create I/O queue",
                           fmt::format("all {} I/O queues the controller granted{} are in use", io_queue_limit_,
                                       needs_vector ? " (with an MSI-X vector)" : ""));
}

// §5.3 Create I/O Completion Queue, then §5.4 Create I/O Submission Queue bound to it.
Result<void> Controller::create_device_queues(const IoQueue& q, bool interrupts) {
  const std::uint32_t size_and_id = ((q.entries() - 1) << 16) | q.qid();
  Sqe cq{};
  cq.opcode = admin::kCreateCq;
  cq.prp1 = dma::to_u64(q.memory_.iova_at(q.cq_offset_));
  cq.cdw10 = size_and_id;
  // Physically contiguous (PC); with interrupts enabled (IEN) on vector IV = the queue ID.
  cq.cdw11 = 1U | (interrupts ? (2U | (static_cast<std::uint32_t>(q.qid()) << 16)) : 0U);
  VFE_TRY(admin(cq, "create I/O completion queue"));
  Sqe sq{};
  sq.opcode = admin::kCreateSq;
  sq.prp1 = dma::to_u64(q.memory_.iova());
  sq.cdw10 = size_and_id;
  sq.cdw11 = 1U | (static_cast<std::uint32_t>(q.qid()) << 16);  // PC, CQID
  if (auto r = admin(sq, "create I/O submission queue"); !r) {
    Sqe del{};
    del.opcode = admin::kDeleteCq;
    del.cdw10 = q.qid();
    static_cast<void>(admin(del, "delete I/O completion queue"));
    return std::move(r).error();
  }
  return ok();
}

// §5.6 Delete I/O Submission Queue (the controller aborts its commands), then §5.5 the CQ.
Result<void> Controller::delete_device_queues(std::uint16_t qid) {
  Sqe sq{};
  sq.opcode = admin::kDeleteSq;
  sq.cdw10 = qid;
  VFE_TRY(admin(sq, "delete I/O submission queue"));
  Sqe cq{};
  cq.opcode = admin::kDeleteCq;
  cq.cdw10 = qid;
  VFE_TRY(admin(cq, "delete I/O completion queue"));
  return ok();
}

Result<std::unique_ptr<IoQueue>> Controller::create_io_queue(engine::Worker& worker, const IoQueueOptions& options) {
  if (state() != ControllerState::running) {
    return Error::from_errno(ENODEV, "create I/O queue", "the controller is not running: " + failure());
  }
  const std::uint32_t max_entries = std::min<std::uint32_t>(cap_.mqes(), 65536);
  if (options.entries < 2 || options.entries > max_entries) {
    return Error::invalid("create I/O queue",
                          fmt::format("{} entries is outside what the controller allows (2 to {}, CAP.MQES)",
                                      options.entries, max_entries));
  }
  const bool interrupts = options.completion != engine::CompletionMode::polling;
  VFE_TRY_ASSIGN(const std::uint16_t qid, claim_qid(interrupts));
  auto release = ScopeGuard([&]() noexcept { release_qid(qid); });
  const std::uint64_t sq_bytes = align_up(options.entries * sizeof(Sqe), page_size());
  const std::uint64_t cq_bytes = align_up(options.entries * sizeof(Cqe), page_size());
  const std::uint64_t prp_bytes = std::uint64_t{options.entries - 1} * page_size();
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, sq_bytes + cq_bytes + prp_bytes,
                                                    {.hugepages = true, .numa_node = options.numa_node}));
  std::memset(mem.data(), 0, sq_bytes + cq_bytes);  // the CQ's phase tags start at 0
  std::unique_ptr<IoQueue> q(new IoQueue(*this, qid, options, std::move(mem), sq_bytes, cq_bytes));
  if (auto r = create_device_queues(*q, interrupts); !r) {
    if (admin_->broken()) {
      // The controller did not answer: it may still use the queue memory, which goes next.
      fail(EIO, "creating I/O queue " + std::to_string(qid) + ": " + r.error().message());
    }
    return std::move(r).error();
  }
  auto remove = ScopeGuard([&]() noexcept { retire(qid); });
  VFE_TRY(q->attach(worker, options.completion, interrupts ? irqs_->eventfd(qid) : -1));
  {
    std::lock_guard lock(queues_mu_);
    queues_.push_back(q.get());
  }
  remove.dismiss();
  release.dismiss();
  q->registered_ = true;
  return q;
}

void Controller::unregister(IoQueue& q) noexcept {
  std::lock_guard lock(queues_mu_);
  queues_.erase(std::remove(queues_.begin(), queues_.end(), &q), queues_.end());
}

void Controller::retire(std::uint16_t qid) noexcept {
  {
    // A fail() or shutdown() under way finishes (and the controller has stopped) before we look.
    std::lock_guard failing(fail_mu_);
  }
  if (state() == ControllerState::running) {
    if (auto r = delete_device_queues(qid); !r) {
      // The controller may still write the queue's memory: stop it before that memory goes.
      fail(EIO, r.error().message());
    }
  }
}

void Controller::release_qid(std::uint16_t qid) noexcept {
  std::lock_guard lock(queues_mu_);
  qid_used_[qid] = false;
}

}  // namespace vfe::nvme
