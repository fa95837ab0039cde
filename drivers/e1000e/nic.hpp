#pragma once
/// \file
/// `Nic`: an Intel 82574L (e1000e) network controller driven from userspace through VFIO.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "dma/dma_buffer.hpp"
#include "dma/dma_space.hpp"
#include "drivers/e1000e/packet_pool.hpp"
#include "drivers/e1000e/rx_ring.hpp"
#include "drivers/e1000e/tx_ring.hpp"
#include "engine/queue_pair.hpp"
#include "engine/worker.hpp"
#include "irq/irq_set.hpp"
#include "mmio/region.hpp"
#include "vfio/device.hpp"

namespace vfe::e1000e {

struct NicOptions {
  /// IOMMU mode for opening the device (empty: VFE_IOMMU_MODE, else the best available).
  std::optional<vfio::IommuMode> mode;
  /// Descriptors per ring: multiples of 8 from 8 to 4096.
  std::uint32_t rx_entries = 512;
  std::uint32_t tx_entries = 512;
  /// Packet buffers (0: both rings' worth plus 1024 for the application). Rounded up to whole
  /// 2 MiB chunks of 1024.
  std::uint32_t packets = 0;
  /// Accept every unicast and multicast frame (RCTL.UPE/MPE); otherwise only frames to this
  /// NIC's address and broadcasts.
  bool promiscuous = false;
  /// How long `create` waits for the link (STATUS.LU); 0: do not wait.
  std::chrono::milliseconds link_timeout{5000};
  /// NUMA node for rings and buffers (-1: the calling thread's).
  int numa_node = -1;
};

/// The device's statistics counters (82574 chapter 10), accumulated since `create` (the registers
/// clear when read). The device counts octets from the destination address through the FCS.
struct DeviceCounters {
  std::uint64_t rx_good_frames = 0;  ///< GPRC
  std::uint64_t rx_good_bytes = 0;   ///< GORC
  std::uint64_t tx_good_frames = 0;  ///< GPTC
  std::uint64_t tx_good_bytes = 0;   ///< GOTC
  std::uint64_t rx_total_frames = 0;  ///< TPR
  std::uint64_t tx_total_frames = 0;  ///< TPT
  std::uint64_t rx_missed = 0;     ///< MPC: dropped, no room in the receive FIFO
  std::uint64_t rx_no_buffer = 0;  ///< RNBC: no free receive descriptor when a frame came
  std::uint64_t rx_crc_errors = 0;  ///< CRCERRS
  std::uint64_t rx_oversize = 0;    ///< ROC
};

/// What runs on the NIC's worker once it is attached.
class NicHandler {
 public:
  virtual ~NicHandler() = default;
  /// Frames arrived, in order. The handler owns them from here: free them to `nic.pool()` or
  /// pass them to `tx_batch`. Worker thread; must not block.
  virtual void on_receive(class Nic& nic, std::span<Packet* const> frames) noexcept = 0;
  /// The device finished sending `count` frames and their buffers are back in the pool: there is
  /// room on the transmit ring again. Worker thread; must not block.
  virtual void on_transmitted(class Nic& nic, std::size_t count) noexcept {
    static_cast<void>(nic);
    static_cast<void>(count);
  }

 protected:
  NicHandler() = default;
  NicHandler(const NicHandler&) = default;
  NicHandler& operator=(const NicHandler&) = default;
};

/// Owns the VFIO device of one 82574L: BAR0, MSI-X vectors (0: receive, 1: transmit, 2: other),
/// the DMA space, one receive and one transmit ring with legacy descriptors, and the packet pool.
/// `create` resets the device and brings it up (82574 §4.6); destruction stops it (receive and
/// transmit off, then a device reset, so it no longer touches memory) before anything is freed.
///
/// The data path (`rx_batch`, `tx_batch`, `reclaim`, `pool`, `stats`) belongs to one thread at
/// a time: the caller's while the NIC is not attached, the worker's once `attach` returned (and
/// then only handlers and tasks on that worker may use it).
class Nic final : public engine::Pollable {
 public:
  /// Opens `bdf` (bound to vfio-pci) and brings the NIC up; an error says what failed and why
  /// (a wrong BDF, another device, bad ring sizes, the link still down after `link_timeout`).
  [[nodiscard]] static Result<std::unique_ptr<Nic>> create(std::string_view bdf, const NicOptions& options = {});
  /// Detaches if attached, stops the device, then frees the rings, buffers and mappings.
  ~Nic() override;
  Nic(const Nic&) = delete;
  Nic& operator=(const Nic&) = delete;

  /// The station address read at bring-up.
  [[nodiscard]] const std::array<std::uint8_t, 6>& mac() const noexcept { return mac_; }
  /// "52:54:00:12:34:56".
  [[nodiscard]] std::string mac_string() const;
  /// STATUS.LU now. Any thread.
  [[nodiscard]] bool link_up() const noexcept;

  /// Takes up to `out.size()` received frames (the caller owns them) and hands their descriptors
  /// back to the device with one RDT write. Data path: noexcept, no allocation, no syscall.
  [[nodiscard]] std::size_t rx_batch(std::span<Packet*> out) noexcept;
  /// Puts frames on the transmit ring and rings TDT once; see `TxResult` for what is taken and
  /// why not. A full ring applies backpressure: fewer are taken, none is dropped.
  [[nodiscard]] TxResult tx_batch(std::span<Packet* const> frames) noexcept;
  /// Returns sent frames' buffers to the pool; returns how many. `tx_batch` does it too.
  std::size_t reclaim() noexcept;

  /// The buffers frames are built in and received into.
  [[nodiscard]] PacketPool& pool() noexcept { return *pool_; }
  /// The driver's own counts of the receive and transmit rings (data-path thread, or after detach).
  [[nodiscard]] const RxRingStats& rx_stats() const noexcept { return rx_->stats(); }
  [[nodiscard]] const TxRingStats& tx_stats() const noexcept { return tx_->stats(); }
  /// Descriptors in the receive ring.
  [[nodiscard]] std::uint32_t rx_entries() const noexcept { return rx_->count(); }
  /// Frames on the transmit ring not yet reclaimed.
  [[nodiscard]] std::uint32_t tx_in_flight() const noexcept { return tx_->in_flight(); }

  /// Binds the data path to `worker`: `handler` gets frames and transmit room there. polling: the
  /// worker checks both rings every loop; interrupt: only when the receive or transmit vector
  /// fires; adaptive: both. Setup path; blocks.
  [[nodiscard]] Result<void> attach(engine::Worker& worker, engine::CompletionMode mode, NicHandler& handler);
  /// Undoes `attach`; when it returns no handler runs any more. Setup path; blocks.
  [[nodiscard]] Result<void> detach();
  /// The worker the NIC is attached to, or nullptr.
  [[nodiscard]] engine::Worker* worker() const noexcept { return worker_; }

  /// Reads the statistics registers and returns the totals since `create`. Any thread.
  [[nodiscard]] DeviceCounters device_counters();

  /// The NIC's PCI address.
  [[nodiscard]] const vfio::Bdf& bdf() const noexcept { return device_->bdf(); }
  /// The VFIO device, BAR0 and DMA space (tests and tools; the driver owns them).
  [[nodiscard]] vfio::Device& device() noexcept { return *device_; }
  [[nodiscard]] mmio::Bar& bar() noexcept { return *bar_; }
  [[nodiscard]] dma::DmaSpace& dma_space() noexcept { return *space_; }
  /// True when the device has MSI-X (interrupt and adaptive modes need it).
  [[nodiscard]] bool has_msix() const noexcept { return irqs_.has_value(); }

 private:
  Nic() = default;
  [[nodiscard]] Result<void> open(std::string_view bdf, const NicOptions& options);
  [[nodiscard]] Result<void> reset();
  [[nodiscard]] bool quiesce() noexcept;
  [[nodiscard]] Result<void> read_mac();
  [[nodiscard]] Result<void> setup_rings(const NicOptions& options);
  [[nodiscard]] Result<void> wait_link(std::chrono::milliseconds timeout);
  void setup_receive(bool promiscuous) noexcept;
  void setup_transmit() noexcept;
  void program_interrupts(bool enabled) noexcept;  // IMS/IVAR/EIAC: on (armed) or all off
  void stop() noexcept;
  void on_rx_vector() noexcept;
  void on_tx_vector() noexcept;
  std::size_t service_rx() noexcept;
  std::size_t service_tx() noexcept;
  std::size_t poll() noexcept override;
  [[nodiscard]] bool needs_polling() const noexcept override { return mode_ == engine::CompletionMode::polling; }
  void accumulate_counters() noexcept;

  // Teardown order matters: the rings return their buffers to the pool, the pool and the ring
  // memory unmap before the DMA space goes, the IRQs before the device whose fd they use.
  std::unique_ptr<vfio::Device> device_;
  std::optional<mmio::Bar> bar_;
  std::unique_ptr<dma::DmaSpace> space_;
  std::optional<irq::IrqSet> irqs_;
  std::optional<dma::DmaBuffer> ring_mem_;  // receive descriptors, then transmit descriptors
  std::unique_ptr<PacketPool> pool_;
  std::optional<RxRing> rx_;
  std::optional<TxRing> tx_;

  std::array<std::uint8_t, 6> mac_{};
  bool up_ = false;  // the device may DMA: the destructor stops it first
  engine::Worker* worker_ = nullptr;
  engine::CompletionMode mode_ = engine::CompletionMode::polling;
  NicHandler* handler_ = nullptr;
  bool added_ = false;       // registered as the worker's pollable
  bool rx_waiting_ = false;  // worker only: a received frame waits for a buffer from the pool
  bool watched_rx_ = false;
  bool watched_tx_ = false;

  std::mutex counters_mu_;
  DeviceCounters counters_;
};

}  // namespace vfe::e1000e
