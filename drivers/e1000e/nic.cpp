#include "drivers/e1000e/nic.hpp"

#include <fmt/format.h>
#include <linux/vfio.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "base/log.hpp"
#include "base/scope_guard.hpp"
#include "drivers/e1000e/spec.hpp"
#include "mmio/config_space.hpp"

namespace vfe::e1000e {
namespace {

using std::chrono::milliseconds;

constexpr std::uint32_t kMaxEntries = 4096;
constexpr std::uint32_t kRxVector = 0, kTxVector = 1, kOtherVector = 2, kVectors = 3;
constexpr std::size_t kBatch = 32;  // frames handed to the handler at once

// Polls `done()` every 100 us until it holds or `limit` passed.
template <class F>
bool wait_for(F done, milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

Result<void> check_entries(std::uint32_t n, const char* which) {
  if (n < 8 || n > kMaxEntries || n % 8 != 0) {
    return Error::invalid("create e1000e NIC",
                          fmt::format("{} ring of {} descriptors: use a multiple of 8 from 8 to {}", which, n,
                                      kMaxEntries));
  }
  return ok();
}

}  // namespace

Result<std::unique_ptr<Nic>> Nic::create(std::string_view bdf, const NicOptions& options) {
  VFE_TRY(check_entries(options.rx_entries, "receive"));
  VFE_TRY(check_entries(options.tx_entries, "transmit"));
  std::unique_ptr<Nic> nic(new Nic());
  VFE_TRY(nic->open(bdf, options));
  return nic;
}

Result<void> Nic::open(std::string_view bdf, const NicOptions& options) {
  VFE_TRY_ASSIGN(auto dev, vfio::Device::open(bdf, {.mode = options.mode, .sys = nullptr}));
  device_ = std::make_unique<vfio::Device>(std::move(dev));
  VFE_TRY_ASSIGN(auto config, mmio::ConfigSpace::open(*device_));
  VFE_TRY_ASSIGN(const std::uint32_t id, config.read32(0x00));
  if ((id & 0xffff) != kVendorIntel || (id >> 16) != kDevice82574L) {
    return Error::not_supported("open e1000e NIC",
                                fmt::format("{} is PCI device {:04x}:{:04x}; this driver knows the 82574L ({:04x}:{:04x})",
                                            bdf, id & 0xffff, id >> 16, kVendorIntel, kDevice82574L));
  }
  VFE_TRY_ASSIGN(auto bar, mmio::Bar::open(*device_, VFIO_PCI_BAR0_REGION_INDEX));
  bar_.emplace(std::move(bar));
  // An earlier user may have left receive on with a ring at its own addresses (there is no FLR
  // to clear that): turn it off before bus mastering lets the device reach memory again.
  bar_->write32(reg::kImc, icr::kAll);
  bar_->write32(reg::kRctl, 0);
  bar_->write32(reg::kTctl, 0);
  VFE_TRY(config.enable_bus_master());  // vfio-pci enables memory decoding only
  VFE_TRY_ASSIGN(space_, dma::DmaSpace::create(device_->shared_backend()));
  VFE_TRY_ASSIGN(const auto msix, device_->irq_info(VFIO_PCI_MSIX_IRQ_INDEX));
  if (msix.count >= kVectors) {
    VFE_TRY_ASSIGN(auto irqs, irq::IrqSet::enable(*device_, irq::IrqIndex::msix, kVectors));
    irqs_.emplace(std::move(irqs));
  }
  VFE_TRY(reset());
  VFE_TRY(read_mac());
  VFE_TRY(setup_rings(options));
  up_ = true;  // from here the device may DMA into the rings
  auto stop_on_error = ScopeGuard([this]() noexcept { stop(); });
  setup_receive(options.promiscuous);
  setup_transmit();
  VFE_TRY(wait_link(options.link_timeout));
  stop_on_error.dismiss();
  return ok();
}

// §4.6.1: interrupts off, receive and transmit off, software reset, interrupts off again. The
// reset alone is not enough to rely on: QEMU 7.2's model only reloads the station address on
// CTRL.RST, so everything this driver depends on is written explicitly afterwards.
Result<void> Nic::reset() {
  if (!quiesce()) {
    return Error::from_errno(ETIMEDOUT, "reset e1000e NIC", "CTRL.RST did not clear within 100 ms");
  }
  if (bar_->read32(reg::kStatus) == ~0U) {
    return Error::from_errno(ENODEV, "reset e1000e NIC", "STATUS reads all ones: the device is gone");
  }
  bar_->write32(reg::kImc, icr::kAll);
  // Interrupt routing as an earlier user may have left it: no vectors, no auto-clear or -mask.
  bar_->write32(reg::kIvar, 0);
  bar_->write32(reg::kEiac, 0);
  bar_->write32(reg::kIam, 0);
  bar_->write32(reg::kCtrlExt, bar_->read32(reg::kCtrlExt) & ~(ctrl_ext::kIame | ctrl_ext::kEiame));
  static_cast<void>(bar_->read32(reg::kIcr));  // clears it while no cause is enabled
  bar_->write32(reg::kIcr, icr::kAll);         // and so does writing ones
  bar_->write32(reg::kTarc0, bar_->read32(reg::kTarc0) | tarc::kEnable);  // without it nothing is sent
  // The counters start at zero for this driver: read them once to clear them.
  accumulate_counters();
  std::lock_guard lock(counters_mu_);
  counters_ = {};
  return ok();
}

// Interrupts, receive and transmit off, then a software reset; false when it does not finish.
bool Nic::quiesce() noexcept {
  bar_->write32(reg::kImc, icr::kAll);
  bar_->write32(reg::kRctl, 0);
  bar_->write32(reg::kTctl, 0);
  bar_->write32(reg::kCtrl, bar_->read32(reg::kCtrl) | ctrl::kRst);
  // RST clears itself when the reset is done; Intel's drivers wait a millisecond before looking.
  std::this_thread::sleep_for(milliseconds(1));
  return wait_for([this] { return (bar_->read32(reg::kCtrl) & ctrl::kRst) == 0; }, milliseconds(100));
}

// The station address: RAL0/RAH0, which the device loads from the EEPROM at reset (receive address registers);
// the EEPROM words 0..2 through EERD when RAH0.AV is clear.
Result<void> Nic::read_mac() {
  const std::uint32_t low = bar_->read32(reg::kRal0);
  const std::uint32_t high = bar_->read32(reg::kRah0);
  if ((high & (1U << 31)) != 0) {
    for (int i = 0; i < 4; ++i) {
      mac_[i] = static_cast<std::uint8_t>(low >> (8 * i));
    }
    mac_[4] = static_cast<std::uint8_t>(high);
    mac_[5] = static_cast<std::uint8_t>(high >> 8);
    return ok();
  }
  for (std::uint32_t word = 0; word < 3; ++word) {
    bar_->write32(reg::kEerd, (word << eerd::kAddrShift) | eerd::kStart);
    std::uint32_t v = 0;
    if (!wait_for([&] { return ((v = bar_->read32(reg::kEerd)) & eerd::kDone) != 0; }, milliseconds(100))) {
      return Error::from_errno(ETIMEDOUT, "read e1000e MAC address", "EERD did not finish within 100 ms");
    }
    mac_[2 * word] = static_cast<std::uint8_t>(v >> eerd::kDataShift);
    mac_[2 * word + 1] = static_cast<std::uint8_t>(v >> (eerd::kDataShift + 8));
  }
  // Program it, so the unicast filter accepts frames to it.
  bar_->write32(reg::kRal0, static_cast<std::uint32_t>(mac_[0]) | (mac_[1] << 8U) | (mac_[2] << 16U) |
                                (static_cast<std::uint32_t>(mac_[3]) << 24U));
  bar_->write32(reg::kRah0, static_cast<std::uint32_t>(mac_[4]) | (mac_[5] << 8U) | (1U << 31));
  return ok();
}

std::string Nic::mac_string() const {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac_[0], mac_[1], mac_[2], mac_[3], mac_[4],
                     mac_[5]);
}

bool Nic::link_up() const noexcept { return (bar_->read32(reg::kStatus) & status::kLinkUp) != 0; }

Result<void> Nic::setup_rings(const NicOptions& options) {
  const std::uint64_t rx_bytes = std::uint64_t{options.rx_entries} * sizeof(RxDescriptor);
  const std::uint64_t tx_bytes = std::uint64_t{options.tx_entries} * sizeof(TxDescriptor);
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, rx_bytes + tx_bytes,
                                                    {.hugepages = true, .numa_node = options.numa_node}));
  ring_mem_.emplace(std::move(mem));
  // ixy's habit: poison the rings, so a descriptor the driver forgot to write shows up.
  std::memset(ring_mem_->data(), 0xff, rx_bytes + tx_bytes);
  const std::uint32_t packets =
      options.packets != 0 ? options.packets : options.rx_entries + options.tx_entries + 1024;
  if (packets < options.rx_entries + 1) {
    return Error::invalid("create e1000e NIC",
                          fmt::format("{} packet buffers cannot fill a {}-entry receive ring and leave one to "
                                      "send; use at least {}",
                                      packets, options.rx_entries, options.rx_entries + 1));
  }
  VFE_TRY_ASSIGN(pool_, PacketPool::create(*space_, packets, options.numa_node));
  rx_.emplace(ring_mem_->as<RxDescriptor>(), options.rx_entries, *pool_);
  tx_.emplace(reinterpret_cast<TxDescriptor*>(ring_mem_->as<std::uint8_t>() + rx_bytes), options.tx_entries,
              *pool_);
  VFE_TRY(rx_->fill());
  tx_->reset();
  return ok();
}

// Receive initialisation (datasheet §4.6): ring base and length, head and tail, then RCTL; the tail write
// last gives the device its buffers.
void Nic::setup_receive(bool promiscuous) noexcept {
  bar_->write32(reg::kRfctl, rfctl::kAckDisable);  // legacy descriptors; no ACK interrupt cause
  for (std::uint64_t i = 0; i < 128; ++i) {
    bar_->write32(reg::kMta + 4 * i, 0);  // no multicast hash matches
  }
  const std::uint64_t base = dma::to_u64(ring_mem_->iova());
  bar_->write32(reg::kRdbal, static_cast<std::uint32_t>(base));
  bar_->write32(reg::kRdbah, static_cast<std::uint32_t>(base >> 32));
  bar_->write32(reg::kRdlen, rx_->count() * static_cast<std::uint32_t>(sizeof(RxDescriptor)));
  bar_->write32(reg::kRdh, 0);
  // With receive off, this also makes QEMU drop frames it queued for an earlier user of the NIC.
  bar_->write32(reg::kRdt, 0);
  bar_->write32(reg::kRdtr, 0);  // no receive interrupt delay: each frame is reported at once
  bar_->write32(reg::kRadv, 0);
  std::uint32_t rctl = rctl::kEnable | rctl::kBroadcastAccept | rctl::kBsize2048 | rctl::kStripCrc;
  if (promiscuous) {
    rctl |= rctl::kUnicastPromisc | rctl::kMulticastPromisc;
  }
  bar_->write32(reg::kRctl, rctl);
  static_cast<void>(rx_->take_tail_update());
  bar_->write32_db(reg::kRdt, rx_->tail());  // the descriptors were written before
}

// Transmit initialisation (datasheet §4.6): ring, then TCTL (pad short frames, full-duplex collision
// distance) and TIPG.
void Nic::setup_transmit() noexcept {
  const std::uint64_t base = dma::to_u64(ring_mem_->iova_at(rx_->count() * sizeof(RxDescriptor)));
  bar_->write32(reg::kTdbal, static_cast<std::uint32_t>(base));
  bar_->write32(reg::kTdbah, static_cast<std::uint32_t>(base >> 32));
  bar_->write32(reg::kTdlen, tx_->count() * static_cast<std::uint32_t>(sizeof(TxDescriptor)));
  bar_->write32(reg::kTdh, 0);
  bar_->write32(reg::kTdt, 0);
  bar_->write32(reg::kTidv, 0);
  bar_->write32(reg::kTadv, 0);
  bar_->write32(reg::kTipg, kTipgCopper);
  bar_->write32(reg::kTctl, tctl::kEnable | tctl::kPadShort | tctl::collision_threshold(0x0f) |
                                tctl::collision_distance(0x3f));
}

// Link setup: with the internal PHY and auto-negotiation, set link up and wait for it.
Result<void> Nic::wait_link(milliseconds timeout) {
  bar_->write32(reg::kCtrl, bar_->read32(reg::kCtrl) | ctrl::kSlu);
  if (timeout.count() == 0 || wait_for([this] { return link_up(); }, timeout)) {
    return ok();
  }
  return Error::from_errno(ENETDOWN, "bring up e1000e NIC",
                           fmt::format("{}: the link is still down after {} ms (STATUS.LU = 0); check the cable "
                                       "or the virtual network it is on",
                                       device_->bdf().to_string(), timeout.count()));
}

Nic::~Nic() {
  if (worker_ != nullptr) {
    if (auto r = detach(); !r) {
      log_error("e1000e detach: {}", r.error().message());
    }
  }
  if (up_) {
    stop();
  }
}

// Receive and transmit off, a device reset, and bus mastering off: afterwards the device cannot
// touch memory, so the rings and buffers can go.
void Nic::stop() noexcept {
  if (!quiesce()) {
    log_error("e1000e {}: CTRL.RST did not clear", device_->bdf().to_string());
  }
  auto config = mmio::ConfigSpace::open(*device_);
  const Result<void> off = config ? config->disable_bus_master() : Result<void>(config.error());
  if (!off) {
    log_error("e1000e {}: bus mastering stays on: {}", device_->bdf().to_string(), off.error().message());
  }
  up_ = false;
}

std::size_t Nic::rx_batch(std::span<Packet*> out) noexcept {
  const std::size_t n = rx_->receive(out);
  if (rx_->take_tail_update()) {
    bar_->write32_db(reg::kRdt, rx_->tail());  // the refilled descriptors are written
  }
  return n;
}

TxResult Nic::tx_batch(std::span<Packet* const> frames) noexcept {
  const TxResult r = tx_->send(frames);
  if (r.sent != 0) {
    bar_->write32_db(reg::kTdt, tx_->tail());  // the descriptors and frames are written
  }
  return r;
}

std::size_t Nic::reclaim() noexcept { return tx_->reclaim(); }

// Receive: hand what arrived to the handler in batches. Bounded by the ring size, so a flood
// on one NIC cannot keep the worker from its other work.
std::size_t Nic::service_rx() noexcept {
  std::array<Packet*, kBatch> frames{};
  std::size_t total = 0;
  const std::uint64_t starved = rx_->stats().starved;
  while (total < rx_->count()) {
    const std::size_t n = rx_batch(frames);
    if (n == 0) {
      break;
    }
    handler_->on_receive(*this, std::span<Packet* const>(frames.data(), n));
    total += n;
  }
  rx_waiting_ = rx_->stats().starved != starved;
  return total;
}

std::size_t Nic::service_tx() noexcept {
  const std::size_t n = tx_->reclaim();
  if (n != 0) {
    handler_->on_transmitted(*this, n);
  }
  return n;
}

std::size_t Nic::poll() noexcept {
  if (mode_ == engine::CompletionMode::interrupt && !rx_waiting_) {
    return 0;  // the vectors tell when to look
  }
  const bool was_waiting = rx_waiting_;
  std::size_t work = service_rx();
  if (mode_ != engine::CompletionMode::interrupt) {
    work += service_tx();
  }
  if (was_waiting && !rx_waiting_ && mode_ != engine::CompletionMode::polling) {
    bar_->write32(reg::kIms, icr::kRxq0);  // buffers again: the vector can wake the worker
  }
  // A frame waiting for a buffer counts as work, so the worker keeps looking instead of
  // sleeping on a vector that will not fire for it.
  return work + (rx_waiting_ ? 1 : 0);
}

// §7.4.2 MSI-X mode: receive queue 0 on vector 0, transmit queue 0 on vector 1, other causes
// (link, overrun) on vector 2, which stays masked: this driver does not handle link changes.
// EIAC makes the device clear a queue's cause in ICR and in IMS when it sends the message, so a
// vector stays quiet until its handler writes its IMS bit again after looking at the ring; a frame
// that came in between has set the cause again, and re-arming sends the message at once.
void Nic::program_interrupts(bool enabled) noexcept {
  bar_->write32(reg::kImc, icr::kAll);
  if (!enabled) {
    return;
  }
  bar_->write32(reg::kIvar, ((kRxVector | ivar::kValid) << ivar::kRxq0Shift) |
                                ((kTxVector | ivar::kValid) << ivar::kTxq0Shift) |
                                ((kOtherVector | ivar::kValid) << ivar::kOtherShift) | ivar::kTxEveryWriteback);
  bar_->write32(reg::kCtrlExt, bar_->read32(reg::kCtrlExt) & ~ctrl_ext::kIame);
  bar_->write32(reg::kEiac, icr::kRxq0 | icr::kTxq0);
  bar_->write32(reg::kIcr, icr::kAll);  // stale causes would hold back the first messages
  bar_->write32(reg::kIms, icr::kRxq0 | icr::kTxq0);
  // Clearing ICR also dropped the causes of frames already waiting on the rings: raise both
  // vectors once by hand, so their handlers look.
  bar_->write32(reg::kIcs, icr::kRxq0 | icr::kTxq0);
}

// The receive vector fired: take what arrived, then re-arm the vector. A frame that waits for a
// buffer leaves it unarmed; `poll` then looks again on every loop until the pool has buffers.
void Nic::on_rx_vector() noexcept {
  service_rx();
  if (!rx_waiting_) {
    bar_->write32(reg::kIms, icr::kRxq0);
  }
}

void Nic::on_tx_vector() noexcept {
  service_tx();
  bar_->write32(reg::kIms, icr::kTxq0);
}

Result<void> Nic::attach(engine::Worker& worker, engine::CompletionMode mode, NicHandler& handler) {
  if (worker_ != nullptr) {
    return Error::invalid("attach e1000e NIC", "it is already attached to a worker");
  }
  const bool irq = mode != engine::CompletionMode::polling;
  if (irq && !irqs_) {
    return Error::not_supported("attach e1000e NIC",
                                fmt::format("{} completion needs MSI-X with {} vectors, which {} lacks",
                                            engine::to_string(mode), kVectors, device_->bdf().to_string()));
  }
  mode_ = mode;
  handler_ = &handler;
  worker_ = &worker;
  auto undo = ScopeGuard([this]() noexcept {
    if (auto r = detach(); !r) {
      log_error("e1000e attach rollback: {}", r.error().message());
    }
  });
  if (irq) {
    VFE_TRY(worker.watch(irqs_->eventfd(kRxVector), [this](std::uint64_t) { on_rx_vector(); }));
    watched_rx_ = true;
    VFE_TRY(worker.watch(irqs_->eventfd(kTxVector), [this](std::uint64_t) { on_tx_vector(); }));
    watched_tx_ = true;
  }
  // Registered in every mode: in interrupt mode `poll` only retries a receive that waits for
  // buffers (see on_rx_vector).
  VFE_TRY(worker.add(*this));
  added_ = true;
  if (irq) {
    program_interrupts(true);
  }
  undo.dismiss();
  return ok();
}

Result<void> Nic::detach() {
  if (worker_ == nullptr) {
    return Error::invalid("detach e1000e NIC", "it is not attached");
  }
  Result<void> result = ok();
  if (added_) {
    if (auto r = worker_->remove(*this); !r) {
      result = r;
    }
    added_ = false;
  }
  for (auto [watched, vector] : {std::pair{&watched_rx_, kRxVector}, std::pair{&watched_tx_, kTxVector}}) {
    if (*watched) {
      if (auto r = worker_->unwatch(irqs_->eventfd(vector)); !r) {
        result = r;
      }
      *watched = false;
    }
  }
  program_interrupts(false);  // after unwatch: no handler re-arms a vector behind it
  worker_ = nullptr;
  handler_ = nullptr;
  return result;
}

DeviceCounters Nic::device_counters() {
  accumulate_counters();
  std::lock_guard lock(counters_mu_);
  return counters_;
}

// Statistics registers: every counter clears when read; a 64-bit one when its high half is read (low first).
void Nic::accumulate_counters() noexcept {
  const auto r32 = [this](std::uint64_t off) -> std::uint64_t { return bar_->read32(off); };
  const auto r64 = [this](std::uint64_t low) -> std::uint64_t {
    const std::uint64_t lo = bar_->read32(low);
    return lo | (std::uint64_t{bar_->read32(low + 4)} << 32);
  };
  std::lock_guard lock(counters_mu_);
  counters_.rx_crc_errors += r32(stat::kCrcErrors);
  counters_.rx_missed += r32(stat::kMissedPackets);
  counters_.rx_good_frames += r32(stat::kGoodPacketsRx);
  counters_.tx_good_frames += r32(stat::kGoodPacketsTx);
  counters_.rx_good_bytes += r64(stat::kGoodOctetsRxLow);
  counters_.tx_good_bytes += r64(stat::kGoodOctetsTxLow);
  counters_.rx_no_buffer += r32(stat::kNoBuffers);
  counters_.rx_oversize += r32(stat::kOversize);
  counters_.rx_total_frames += r32(stat::kTotalPacketsRx);
  counters_.tx_total_frames += r32(stat::kTotalPacketsTx);
}

}  // namespace vfe::e1000e
