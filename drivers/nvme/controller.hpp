#pragma once
/// \file
/// `Controller`: an NVMe controller driven from userspace through VFIO (NVMe 1.4).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/result.hpp"
#include "dma/dma_buffer.hpp"
#include "dma/dma_space.hpp"
#include "drivers/nvme/admin_commands.hpp"
#include "drivers/nvme/admin_queue.hpp"
#include "drivers/nvme/events.hpp"
#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/io_queue.hpp"
#include "drivers/nvme/log_pages.hpp"
#include "drivers/nvme/queue_host.hpp"
#include "drivers/nvme/queue_table.hpp"
#include "drivers/nvme/reset_budget.hpp"
#include "drivers/nvme/spec.hpp"
#include "engine/queue_pair.hpp"
#include "irq/irq_set.hpp"
#include "mmio/region.hpp"
#include "vfio/device.hpp"

namespace vfe::nvme {

/// The most `ControllerOptions::retries` allows (a request counts its attempts in 8 bits).
inline constexpr std::uint32_t kMaxRetries = 255;

struct ControllerOptions {
  /// IOMMU mode for opening the device (empty: VFE_IOMMU_MODE, else the best available).
  std::optional<vfio::IommuMode> mode;
  /// I/O queue pairs to ask the controller for (Set Features, Number of Queues); 0: one per
  /// online CPU. The controller may grant fewer; `io_queue_limit()` says how many.
  std::uint32_t io_queues = 0;
  /// A command not completed within this time (its completion queue looked at first) makes the
  /// controller reset (see `Controller`).
  std::chrono::milliseconds io_timeout{30'000};
  /// How often the watchdog checks CSTS and the commands' ages.
  std::chrono::milliseconds watchdog_period{100};
  /// How many times a request goes again after a failure the controller does not mark Do Not
  /// Retry, or after a reset caught it in flight (Linux's nvme_max_retries is 5 too); at most
  /// kMaxRetries.
  std::uint32_t retries = 5;
  /// More resets than this within `reset_window` fail the controller for good.
  std::uint32_t max_resets = 3;
  /// The window `max_resets` counts in.
  std::chrono::milliseconds reset_window{60'000};
  /// The kernel seam (vfio/sys.hpp); nullptr for the real kernel. Tests pass one that fails
  /// chosen calls.
  vfio::Sys* sys = nullptr;
  /// Called for each asynchronous event (§5.2: health and temperature warnings, namespace
  /// changes, firmware activation), with the log page it names, on the watchdog thread: it must
  /// return soon and make no setup call on this controller (see `Controller`). Events are
  /// logged either way.
  std::function<void(const AsyncEvent&)> on_event;
  /// Use shadow doorbells (§5.8 Doorbell Buffer Config) where the controller has them (OACS
  /// bit 8; emulated controllers such as QEMU's): a queue writes its doorbell to memory, and to
  /// the register only when the controller's event index says it is not reading the memory
  /// anyway. Each register write an emulated controller traps costs a VM exit.
  bool shadow_doorbells = true;
  /// Adaptive queues (engine::CompletionMode::adaptive) mask their MSI-X vector while their
  /// worker polls and unmask it before it sleeps (a masked vector holds its interrupt pending),
  /// where the table is in BAR0 and the kernel lets it be mapped (MSIX_MAPPABLE). False keeps
  /// interrupts on throughout.
  bool mask_interrupts_while_polling = true;
};

/// Counters of one controller, readable from any thread (relaxed).
struct ControllerStats {
  std::atomic<std::uint64_t> resets{0};    ///< recoveries begun (each a disable and re-enable)
  std::atomic<std::uint64_t> timeouts{0};  ///< commands found older than io_timeout
  std::atomic<std::uint64_t> aborts{0};    ///< Abort commands the controller accepted
  std::atomic<std::uint64_t> aborts_refused{0};  ///< Abort commands it answered "not aborted"
  std::atomic<std::uint64_t> events{0};          ///< asynchronous events reported
};

/// Owns the VFIO device of one NVMe controller: BAR0, MSI-X vectors, the DMA space and the
/// admin queue. `create` brings it up (§7.6.1), identifies it and its namespaces (§5.15) and
/// sets the number of queues (§5.21.1.7); I/O queue pairs are then made with
/// `create_io_queue`, one per worker. Destruction shuts the controller down (§7.6.2) so written
/// data is on the medium. I/O queues must be destroyed before their controller.
///
/// A watchdog thread checks CSTS every `watchdog_period` and the age of every command in flight
/// (after reaping its completion queue, so a lost interrupt costs no reset). A command older than
/// `io_timeout` is aborted first (§5.1, Abort): when the controller agrees, the command completes
/// as aborted and its request goes again. When the Abort fails or gets no answer, or the command is
/// still there another `io_timeout` later (aborted or not: a controller may refuse and still
/// finish the command, so Linux waits too), the controller is reset. A fatal status (CFS) or a
/// reset it did not ask for (RDY dropped, e.g. an FLR) resets it at once. The reset (NVMe 1.4
/// §7.3.1, as Linux's nvme driver does): submissions pause (new requests wait in their queue's
/// ring), the controller is disabled (a function level reset when it does not stop within
/// CAP.TO), bus mastering is turned on again, the controller is enabled and identified again (a namespace that changed size or format fails the
/// controller rather than let requests land on the wrong blocks), the number of queues is set and
/// every I/O queue is created again on the device, in the same `IoQueue` with the same ID, memory
/// and worker. What was in flight goes again (see `IoRequest`). More than `max_resets` resets
/// within `reset_window`, a reset that does not bring the controller back, or a surprise removal
/// (all-ones reads) fails the controller for good. Its DMA is then stopped, and only once that is
/// confirmed (CC.EN = 0 with CSTS.RDY = 0, directly or after an FLR; or Bus Master Enable read
/// back clear; or the device given back to the kernel) do the requests with a command on the
/// device complete with an error and may a queue's memory be freed. Until then those stay in
/// flight (what the device completes meanwhile is still reaped with its own status; requests
/// that never reached it fail at once), and a queue destroyed meanwhile keeps its memory
/// allocated and mapped for good (logged): the device may still write there.
///
/// The watchdog also watches the device request interrupt (VFIO_PCI_REQ_IRQ_INDEX), by which
/// the kernel asks for the device back before a hot-unplug or an unbind can finish. Then the
/// controller fails (ENODEV; new requests are refused), is shut down normally (§7.6.2, so what it
/// acknowledged is on the medium) and disabled, every outstanding request completes with ENODEV,
/// and the device is released: BAR0 is detached (registers read all ones, doorbells land in
/// plain memory) and the device fd is let go, so the kernel's removal completes while the
/// Controller, its queues and its DMA memory live on until their owners destroy them as usual.
/// Setup calls are thread-safe with each other; the data path is the `IoQueue`'s. Setup calls
/// (creating or destroying a queue, `shutdown`, `fail`, destroying the controller) must not run
/// on a worker thread that serves any of this controller's queues, nor in a request's
/// `on_complete`: a reset or failure holds the controller's locks while it waits for those
/// workers (a deadlock).
class Controller final : private QueueHost {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Controller>> create(std::string_view bdf,
                                                                  const ControllerOptions& options = {});
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  [[nodiscard]] const ControllerIdentity& identity() const noexcept { return identity_; }
  // From QueueHost: state(), failure_errno() (the errno outstanding requests get once the
  // controller failed; 0 while it runs), epoch() (watchdog ticks), namespaces() (the active
  // ones, in ID order) and find_namespace(nsid) (nullptr when there is none).
  using QueueHost::epoch;
  using QueueHost::failure_errno;
  using QueueHost::find_namespace;
  using QueueHost::namespaces;
  using QueueHost::state;
  /// CAP as read at bring-up (queue size limit, doorbell stride, timeout, page sizes).
  [[nodiscard]] Cap cap() const noexcept { return cap_; }
  /// VS: major in bits 31:16, minor in 15:8, tertiary in 7:0.
  [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
  /// The memory page size the controller was configured with (CC.MPS); PRPs use it.
  [[nodiscard]] std::uint32_t page_size() const noexcept { return 1U << page_shift_; }
  /// Largest transfer of one command in bytes: MDTS, at most 8 MiB (where MDTS allows more or
  /// says no limit), in chained PRP lists.
  [[nodiscard]] std::uint64_t max_transfer_bytes() const noexcept { return max_transfer_; }
  /// True when the queues use shadow doorbells (see ControllerOptions::shadow_doorbells).
  [[nodiscard]] bool uses_shadow_doorbells() const noexcept { return shadow_mem_.has_value(); }
  /// How many I/O queue pairs the controller granted.
  [[nodiscard]] std::uint32_t io_queue_limit() const noexcept { return io_queue_limit_; }

  /// Creates an I/O completion queue and submission queue (§5.3, §5.4) served by `worker`, with
  /// MSI-X vector = queue ID in interrupt and adaptive modes, and attaches it to the worker.
  [[nodiscard]] Result<std::unique_ptr<IoQueue>> create_io_queue(engine::Worker& worker,
                                                                 const IoQueueOptions& options = {});

  /// The options it was opened with (checked).
  [[nodiscard]] const ControllerOptions& options() const noexcept { return options_; }
  /// Its recovery counters.
  [[nodiscard]] const ControllerStats& stats() const noexcept { return stats_; }
  /// Why the controller failed (empty while it runs).
  [[nodiscard]] std::string failure() const;
  /// Fails the controller: disables it (FLR when it does not stop within CAP.TO), then every
  /// request outstanding on its queues completes with `-err`, and later ones at once. Idempotent.
  void fail(int err, const std::string& why);
  /// Shuts the controller down (§7.6.2: CC.SHN normal, wait for CSTS.SHST complete). All I/O
  /// queues must be gone. Also done by the destructor.
  [[nodiscard]] Result<void> shutdown();

  /// The VFIO device (for a reset or config space access); owned by the controller.
  [[nodiscard]] vfio::Device& device() noexcept { return *device_; }
  /// Where data buffers for this controller's I/O are allocated; they must be freed before the
  /// controller is destroyed.
  [[nodiscard]] dma::DmaSpace& dma_space() noexcept { return *space_; }
  /// The MSI-X vectors (vector 0: admin, vector N: I/O queue N). Only valid when the device has
  /// MSI-X (create_io_queue in interrupt modes says when it has not).
  [[nodiscard]] irq::IrqSet& irqs() noexcept { return *irqs_; }
  /// BAR0: the controller's registers and doorbells.
  [[nodiscard]] mmio::Bar& bar() noexcept { return *bar_; }
  /// Runs an admin command without data (setup paths, tests).
  [[nodiscard]] Result<Cqe> admin(const Sqe& cmd, const char* what) override;

  // Typed admin calls (controller_admin.cpp). Thread-safe, setup paths only (they wait for the
  // controller, up to CAP.TO); each fails with the controller's status decoded (status_error).
  // Feature values the controller does not save may return to their saved values when the
  // controller is reset (recovery): set them again then.

  /// Identify (§5.15): the 4096-byte data structure `q` names, as the controller wrote it.
  [[nodiscard]] Result<std::vector<std::uint8_t>> identify(const IdentifyQuery& q);
  /// The NVM command set's limits (Identify CNS 06h, CSI 0; NVMe 2.0), read at bring-up; none
  /// when the controller refused the CNS (before NVMe 2.0 it may): then nothing is said beyond
  /// MDTS.
  [[nodiscard]] const std::optional<NvmControllerLimits>& nvm_limits() const noexcept { return nvm_limits_; }
  /// Get Log Page (§5.14): `q.bytes` of the log, at most `max_transfer_bytes()` (read larger
  /// logs in pieces with `q.offset`).
  [[nodiscard]] Result<std::vector<std::uint8_t>> get_log_page(const LogPageQuery& q);
  /// The Error Information log (§5.14.1.1): the ELPE + 1 entries the controller keeps, those in
  /// use, newest first.
  [[nodiscard]] Result<std::vector<ErrorLogEntry>> error_log();
  /// The SMART / Health Information log (§5.14.1.2), of the controller (nsid FFFFFFFFh) or of a
  /// namespace (where LPA bit 0 says the controller keeps one per namespace).
  [[nodiscard]] Result<HealthLog> health_log(std::uint32_t nsid = ~0U);
  /// The Firmware Slot Information log (§5.14.1.3).
  [[nodiscard]] Result<FirmwareSlotLog> firmware_slot_log();
  /// Get Features (§5.21): the value in completion dword 0 and, with `q.data_bytes`, its data.
  [[nodiscard]] Result<FeatureValue> get_features(const FeatureQuery& q);
  /// Set Features (§5.22); returns completion dword 0. Number of Queues (07h), Asynchronous
  /// Event Configuration (0Bh) and Host Memory Buffer (0Dh) belong to the driver and are refused
  /// (EPERM).
  [[nodiscard]] Result<FeatureValue> set_features(const FeatureChange& c);
  /// True when the device offers the request interrupt and the watchdog watches it.
  [[nodiscard]] bool watches_device_requests() const noexcept { return req_irq_.has_value(); }
  /// True once the device was given back to the kernel after it asked for it (see above).
  [[nodiscard]] bool released() const noexcept { return released_.load(std::memory_order_acquire); }

 private:
  Controller() = default;
  [[nodiscard]] Result<void> open(std::string_view bdf, const ControllerOptions& options);
  [[nodiscard]] Result<void> enable_vectors(std::uint32_t wanted_queues);
  [[nodiscard]] Result<void> bring_up();
  [[nodiscard]] Result<void> disable();
  [[nodiscard]] Result<void> wait_ready(bool ready, const char* what);
  [[nodiscard]] Result<void> identify();
  [[nodiscard]] Result<std::vector<NamespaceInfo>> identify_namespaces();
  [[nodiscard]] Result<void> set_queue_count(std::uint32_t wanted);
  [[nodiscard]] Result<std::uint32_t> request_queues(std::uint32_t wanted);
  [[nodiscard]] Result<void> set_up_shadow_doorbells();
  [[nodiscard]] Result<void> configure_shadow_doorbells();
  // Admin commands with data (controller_admin.cpp). `data` is read from the controller into it
  // (from_device) or written to it from there.
  [[nodiscard]] Result<Cqe> admin_transfer(Sqe cmd, std::span<std::uint8_t> data, bool from_device,
                                           const char* what);
  [[nodiscard]] Result<Cqe> admin_transfer_large(Sqe cmd, std::span<std::uint8_t> data, bool from_device,
                                                 const char* what);
  [[nodiscard]] Result<std::vector<std::uint8_t>> identify_page(const IdentifyQuery& q, const char* what);
  [[nodiscard]] Result<void> identify_pi_format(NamespaceInfo& ns);
  void watchdog() noexcept;
  void check_health() noexcept;
  void on_late_command(std::uint16_t qid, std::uint16_t cid) noexcept;
  [[nodiscard]] bool abort_command(std::uint16_t qid, std::uint16_t cid) noexcept;
  // io_timeout in watchdog ticks, rounded up by one: a command this many ticks old is late.
  [[nodiscard]] std::uint32_t timeout_ticks() const noexcept {
    return static_cast<std::uint32_t>(options_.io_timeout / options_.watchdog_period) + 1;
  }
  [[nodiscard]] bool mark_failed(int err, const std::string& why);
  void fail_locked(int err, const std::string& why);
  void fail_queues(int err) noexcept;
  // Recovery (controller_recovery.cpp), on the watchdog thread.
  void recover(int err, const std::string& why);
  [[nodiscard]] Result<void> stop_for_reset();
  [[nodiscard]] Result<void> reinitialize();
  [[nodiscard]] Result<void> check_namespaces();
  void requeue_queues(int err) noexcept;
  void restart_queues() noexcept;
  [[nodiscard]] Result<void> normal_shutdown();
  // Hot-unplug (controller_removal.cpp).
  void watch_device_requests() noexcept;
  [[nodiscard]] bool device_requested() noexcept;
  void on_device_request() noexcept;
  [[nodiscard]] bool stop_for_removal() noexcept;
  void release_device() noexcept;
  [[nodiscard]] bool stop_dma() noexcept;
  [[nodiscard]] bool clear_bus_master() noexcept;
  // Asynchronous events (controller_events.cpp): armed at bring-up and after each reset,
  // handled by the watchdog.
  [[nodiscard]] Result<void> arm_events();
  // Posts event requests until as many wait as AERL allows (at most AdminQueue::kMaxPosted).
  [[nodiscard]] Result<void> top_up_events();
  void handle_events() noexcept;
  void handle_event(AsyncEvent ev) noexcept;
  [[nodiscard]] Result<std::vector<std::uint8_t>> read_log(std::uint8_t lid, std::uint32_t bytes);
  // fail_mu_ held: once DMA is confirmed stopped, the queues' requests complete with `err`.
  void settle_failure(int err) noexcept;
  // QueueHost (controller_queues.cpp): the queues' side of the table.
  [[nodiscard]] QueueParams queue_params() noexcept override;
  [[nodiscard]] Result<void> add(HostedQueue& q, bool& listed) override;
  void unregister(HostedQueue& q) noexcept override;
  [[nodiscard]] bool retire(HostedQueue& q) noexcept override;
  void release_qid(std::uint16_t qid) noexcept override;

  ControllerOptions options_;
  // Teardown order matters: the buffers and IRQs go before the DMA space and the BAR, which go
  // before the device whose fd they use.
  std::unique_ptr<vfio::Device> device_;
  std::optional<mmio::Bar> bar_;
  std::optional<std::uint32_t> msix_table_;  // the MSI-X table's offset in bar_, when it is there
  std::unique_ptr<dma::DmaSpace> space_;
  std::optional<irq::IrqSet> irqs_;
  std::optional<irq::IrqSet> req_irq_;  // the device request interrupt, when offered
  // admin_mem_: the ASQ page, the ACQ page, and the page admin commands with up to 4 KiB of
  // data use (guarded by page_mu_).
  static constexpr std::uint64_t kAdminSqOffset = 0, kAdminCqOffset = 4096, kDataPageOffset = 8192;
  static constexpr std::uint64_t kAdminMemBytes = 3 * 4096;
  std::optional<dma::DmaBuffer> admin_mem_;
  std::mutex page_mu_;
  // The shadow doorbells, then (shadow_half_ bytes on) the event indexes; empty when not in use.
  std::optional<dma::DmaBuffer> shadow_mem_;
  std::uint64_t shadow_half_ = 0;
  std::optional<AdminQueue> admin_;

  Cap cap_{};
  std::uint32_t version_ = 0;
  std::uint32_t page_shift_ = 12;
  std::uint64_t max_transfer_ = 0;
  std::uint32_t io_queue_limit_ = 0;
  ControllerIdentity identity_;
  std::optional<NvmControllerLimits> nvm_limits_;
  bool up_ = false;  // bring-up finished: the destructor shuts the controller down

  // state_, fail_errno_, epoch_ and namespaces_ live in QueueHost, where the queues read them.
  ControllerStats stats_;
  // Watchdog only: the command last aborted, and the epoch until which late commands get to
  // complete (aborted or not) before the controller is reset.
  struct AbortSent {
    std::uint32_t deadline;  // epoch
    std::uint16_t qid;
    std::uint16_t cid;
  };
  std::optional<AbortSent> abort_;
  // Guarded by fail_mu_: resets so far (a queue created at another count is gone from the
  // device), and when the recent ones began.
  std::uint64_t reset_count_ = 0;
  ResetBudget reset_budget_;
  std::atomic<bool> released_{false};
  // Guarded by fail_mu_: the controller is not DMAing (never enabled, or confirmed stopped since
  // it last was); and, once it failed, the queues' requests were completed after that.
  bool dma_stopped_ = true;
  bool queues_settled_ = false;
  // Held by fail(), a reset and shutdown() from their decision to the end of their register
  // sequence, and while a queue is created or deleted on the device, so that none of these
  // overlap and whoever must know the controller has stopped DMA (a queue being retired) waits.
  std::mutex fail_mu_;
  mutable std::mutex mu_;  // guards failure_ and stop_watchdog_
  std::string failure_;
  bool stop_watchdog_ = false;
  // fail() holds the table's lock while each queue's worker fails its requests, so a completion
  // callback must not create or destroy queues.
  QueueTable table_;
  std::condition_variable watchdog_cv_;
  std::thread watchdog_;  // last: started when all else is ready, joined first
};

}  // namespace vfe::nvme
