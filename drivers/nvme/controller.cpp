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
constexpr std::uint32_t kNvmeClassCode = 0x010802;
// The most one command carries when MDTS allows more or says no limit: each command slot of a
// queue keeps PRP list pages for this much (5 pages at 8 MiB).
constexpr std::uint64_t kMaxTransferBytes = 8ULL << 20;  // mass storage / NVM / NVM Express (PCI code)

// Options that would divide by zero or never stop retrying are refused before anything opens.
Result<void> check_options(const ControllerOptions& o) {
  if (o.watchdog_period.count() <= 0 || o.io_timeout.count() <= 0) {
    return Error::invalid("open NVMe controller",
                          fmt::format("watchdog_period ({} ms) and io_timeout ({} ms) must be positive",
                                      o.watchdog_period.count(), o.io_timeout.count()));
  }
  if (o.retries > kMaxRetries) {
    return Error::invalid("open NVMe controller",
                          fmt::format("retries = {}: at most {}", o.retries, kMaxRetries));
  }
  return ok();
}

}  // namespace

Result<std::unique_ptr<Controller>> Controller::create(std::string_view bdf, const ControllerOptions& options) {
  std::unique_ptr<Controller> c(new Controller());
  VFE_TRY(c->open(bdf, options));
  c->watchdog_ = std::thread([p = c.get()] { p->watchdog(); });
  return c;
}

Result<void> Controller::open(std::string_view bdf, const ControllerOptions& options) {
  VFE_TRY(check_options(options));
  options_ = options;
  reset_budget_ = ResetBudget(options.max_resets, options.reset_window);
  VFE_TRY_ASSIGN(auto dev, vfio::Device::open(bdf, {.mode = options.mode, .sys = options.sys}));
  device_ = std::make_unique<vfio::Device>(std::move(dev));
  VFE_TRY_ASSIGN(auto config, mmio::ConfigSpace::open(*device_));
  VFE_TRY_ASSIGN(const std::uint32_t class_rev, config.read32(0x08));
  if ((class_rev >> 8) != kNvmeClassCode) {
    return Error::invalid("open NVMe controller",
                          fmt::format("{} has PCI class code {:06x}, not {:06x} (NVM Express)", bdf,
                                      class_rev >> 8, kNvmeClassCode));
  }
  VFE_TRY(config.enable_bus_master());  // vfio-pci enables memory decoding only
  if (options.mask_interrupts_while_polling) {
    // Where the MSI-X table is, for adaptive queues to mask their vector; a capability that
    // cannot be read only means interrupts stay on.
    if (auto msix = config.msix(); msix && *msix && (*msix)->table_bar == 0) {
      msix_table_ = (*msix)->table_offset;
    }
  }
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
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, kAdminMemBytes));
  admin_mem_.emplace(std::move(mem));
  admin_.emplace(*bar_, cap_.doorbell_stride(), admin_mem_->as<Sqe>(),
                 reinterpret_cast<Cqe*>(admin_mem_->as<std::uint8_t>() + kAdminCqOffset), kAdminEntries);
  VFE_TRY(bring_up());
  // From here the controller may DMA to the admin memory: a failure must stop it first.
  auto stop = ScopeGuard([this]() noexcept { dma_stopped_ = stop_dma(); });
  VFE_TRY(identify());
  VFE_TRY(set_queue_count(options.io_queues));
  VFE_TRY(set_up_shadow_doorbells());
  VFE_TRY(arm_events());
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
  dma_stopped_ = false;  // from here the controller may DMA to the admin memory
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

// §5.15: the controller, its active namespaces, and each of them.
Result<void> Controller::identify() {
  VFE_TRY_ASSIGN(const auto page, identify_page({.cns = cns::kController}, "identify controller"));
  VFE_TRY_ASSIGN(identity_, parse_identify_controller(page));
  write_zeroes_ = identity_.supports_write_zeroes();
  dataset_management_ = identity_.supports_dataset_management();
  compare_ = identity_.supports_compare();
  // NVMe 2.0's CNS 06h; a controller that refuses it, with any status, states no limits beyond
  // MDTS (Linux learned that some choke on it: NVME_CTRL_SKIP_ID_CNS_CS).
  auto limits = identify_page({.cns = cns::kIoCommandSetController}, "identify controller (NVM command set)");
  nvm_limits_.reset();
  if (limits) {
    VFE_TRY_ASSIGN(nvm_limits_, parse_identify_nvm_controller(*limits));
  } else if (admin_->broken()) {
    return std::move(limits).error();  // no answer at all; a status (Invalid Field & co.) is a refusal
  }
  // All MDTS allows, in chained PRP lists, up to what each command slot keeps list pages for.
  max_transfer_ = identity_.max_transfer_bytes(cap_.mps_min());
  max_transfer_ = max_transfer_ == 0 ? kMaxTransferBytes : std::min(max_transfer_, kMaxTransferBytes);
  VFE_TRY_ASSIGN(namespaces_, identify_namespaces());
  return ok();
}

// The active namespaces (§5.15.2.2 CNS 02h), each identified (CNS 00h).
Result<std::vector<NamespaceInfo>> Controller::identify_namespaces() {
  VFE_TRY_ASSIGN(const auto list, identify_page({.cns = cns::kActiveNamespaces}, "identify active namespaces"));
  VFE_TRY_ASSIGN(const auto ids, parse_active_namespace_list(list));
  std::vector<NamespaceInfo> found;
  for (const std::uint32_t nsid : ids) {
    VFE_TRY_ASSIGN(const auto page, identify_page({.cns = cns::kNamespace, .nsid = nsid}, "identify namespace"));
    VFE_TRY_ASSIGN(auto ns, parse_identify_namespace(nsid, page));
    if (ns.pi_type != 0) {
      VFE_TRY(identify_pi_format(ns));
    }
    found.push_back(std::move(ns));
  }
  return found;
}

// NVMe 2.0's Identify Namespace for the NVM command set (CNS 05h, CSI 00h): the protection
// information format of the format in use (ELBAF PIF). A controller that refuses it, with any
// status, predates the 32- and 64-bit guards: it has the 16-bit one.
Result<void> Controller::identify_pi_format(NamespaceInfo& ns) {
  auto page = identify_page({.cns = cns::kIoCommandSetNamespace, .nsid = ns.nsid}, "identify namespace (NVM command set)");
  if (page) {
    ns.pi_format = parse_pi_format(*page, ns.format_index);
  } else if (admin_->broken()) {
    return std::move(page).error();  // no answer at all; a status is a refusal
  }
  return ok();
}

Result<void> Controller::set_queue_count(std::uint32_t wanted) {
  if (wanted == 0) {
    wanted = std::max(1U, std::thread::hardware_concurrency());
  }
  wanted = std::min(wanted, 65535U);
  VFE_TRY_ASSIGN(const std::uint32_t granted, request_queues(wanted));
  io_queue_limit_ = std::min(granted, wanted);
  table_.reset(io_queue_limit_);
  return ok();
}

// §5.21.1.7 Number of Queues: ask for `wanted` pairs; returns how many the controller has.
Result<std::uint32_t> Controller::request_queues(std::uint32_t wanted) {
  Sqe cmd{};
  cmd.opcode = admin::kSetFeatures;
  cmd.cdw10 = feature::kNumberOfQueues;
  cmd.cdw11 = ((wanted - 1) << 16) | (wanted - 1);  // NCQR, NSQR: 0's based
  VFE_TRY_ASSIGN(const Cqe cqe, admin(cmd, "set features: number of queues"));
  return std::min((cqe.dw0 & 0xffff) + 1, (cqe.dw0 >> 16) + 1);
}

Result<void> Controller::shutdown() {
  if (const std::size_t n = table_.size(); n != 0) {
    return Error::from_errno(EBUSY, "shut down NVMe controller",
                             fmt::format("{} I/O queue(s) still exist; destroy them first", n));
  }
  std::lock_guard failing(fail_mu_);
  const ControllerState was = state_.exchange(ControllerState::shut_down, std::memory_order_acq_rel);
  if (was != ControllerState::running) {
    return ok();  // failed controllers are disabled already
  }
  auto r = normal_shutdown();
  // Then disabled: a shut-down controller still holds its event requests, and may write the
  // admin queue's memory until CC.EN = 0 is confirmed (stop_dma logs when even that fails).
  dma_stopped_ = stop_dma();
  return r;
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
  if (const std::size_t n = table_.size(); n != 0) {
    log_error("nvme: controller destroyed with {} I/O queue(s) alive; destroy queues first", n);
  }
  if (up_) {
    if (auto r = shutdown(); !r) {
      log_error("nvme: {}", r.error().message());
    }
  }
  if (admin_mem_ && !dma_stopped_) {
    admin_mem_->abandon();  // the controller may still write its admin queues
  }
  if (shadow_mem_ && !dma_stopped_) {
    shadow_mem_->abandon();  // and the event indexes
  }
}

}  // namespace vfe::nvme
