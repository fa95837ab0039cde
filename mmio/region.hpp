#pragma once
/// \file
/// `Region` (and `Bar`): a device region mapped into the process, with register access.

#include <cstdint>
#include <atomic>
#include <cstring>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "mmio/barrier.hpp"
#include "vfio/device.hpp"

namespace vfe::mmio {

/// One VFIO region of a device (a BAR, usually), mmap'd where the kernel allows it, honouring
/// sparse-mmap areas, and reached through pread/pwrite on the device fd elsewhere. Move-only;
/// unmaps on destruction. Borrows the Device, which must outlive it.
///
/// Register access: `read*`/`write*` are single naturally-aligned volatile accesses (what a
/// device register needs: no tearing, no merging, no elision). They do not order normal memory;
/// `write32_db`/`write64_db` put `io_wmb()` first, for doorbells that publish DMA memory.
/// Thread-safe in the sense of the hardware: concurrent accesses to different registers are
/// fine, and the object itself is not modified after `open`.
class Region {
 public:
  /// Maps region `index` of `device`. A BAR the device does not implement (size 0) is an error.
  [[nodiscard]] static Result<Region> open(const vfio::Device& device, std::uint32_t index);

  Region(Region&& other) noexcept;
  Region& operator=(Region&&) = delete;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region();

  [[nodiscard]] std::uint32_t index() const noexcept { return index_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  /// True when [offset, offset + len) is mmap'd (accesses are plain loads and stores).
  [[nodiscard]] bool is_mapped(std::uint64_t offset, std::uint64_t len) const noexcept;
  /// The mapped address of `offset`, or nullptr where the region is not mapped.
  [[nodiscard]] volatile void* address(std::uint64_t offset, std::uint64_t len) const noexcept;

  /// Lets go of the device memory without moving a register's address: each mmap'd area is
  /// replaced in place (MAP_FIXED, in one step) by private memory already filled with ones, so a
  /// racing access lands there instead of faulting, reads return the device's value or all ones
  /// (what a vanished device returns), never zeros, and writes stay in that memory. Done when the device must be given back to the kernel
  /// (`vfio::Device::release`); accesses to parts that were not mapped keep going to the device
  /// fd. On failure the areas replaced so far stay replaced.
  [[nodiscard]] Result<void> detach() noexcept;

  /// Out-of-range or failed accesses read as all ones (what a vanished PCI device returns) and
  /// log once; writes there are dropped and logged. Offsets must be naturally aligned.
  [[nodiscard]] std::uint8_t read8(std::uint64_t offset) const noexcept { return read<std::uint8_t>(offset); }
  [[nodiscard]] std::uint16_t read16(std::uint64_t offset) const noexcept { return read<std::uint16_t>(offset); }
  [[nodiscard]] std::uint32_t read32(std::uint64_t offset) const noexcept { return read<std::uint32_t>(offset); }
  [[nodiscard]] std::uint64_t read64(std::uint64_t offset) const noexcept { return read<std::uint64_t>(offset); }
  void write8(std::uint64_t offset, std::uint8_t v) noexcept { write(offset, v); }
  void write16(std::uint64_t offset, std::uint16_t v) noexcept { write(offset, v); }
  void write32(std::uint64_t offset, std::uint32_t v) noexcept { write(offset, v); }
  void write64(std::uint64_t offset, std::uint64_t v) noexcept { write(offset, v); }
  /// A doorbell: every earlier store to DMA memory is visible to the device before this one.
  void write32_db(std::uint64_t offset, std::uint32_t v) noexcept {
    io_wmb();
    write(offset, v);
  }
  void write64_db(std::uint64_t offset, std::uint64_t v) noexcept {
    io_wmb();
    write(offset, v);
  }

 private:
  struct Area {
    std::uint64_t offset;  // within the region
    std::uint64_t size;
    void* base;
  };
  Region(const vfio::Device& device, const vfio::RegionInfo& info) noexcept;
  [[nodiscard]] Result<void> replace_with_ones(const Area& a) noexcept;

  template <class T>
  T read(std::uint64_t offset) const noexcept {
    if (auto* p = static_cast<volatile T*>(address(offset, sizeof(T)))) {
      return *p;
    }
    T v{};
    return slow_read(offset, &v, sizeof(T)) ? v : static_cast<T>(~T{});
  }
  template <class T>
  void write(std::uint64_t offset, T v) noexcept {
    if (auto* p = static_cast<volatile T*>(address(offset, sizeof(T)))) {
      *p = v;
      return;
    }
    slow_write(offset, &v, sizeof(T));
  }
  bool slow_read(std::uint64_t offset, void* out, std::size_t len) const noexcept;
  // Logs the first bad access of this region only: these run on the data path.
  template <class... Args>
  void complain(fmt::format_string<Args...> format, Args&&... args) const noexcept {
    if (!complained_.exchange(true, std::memory_order_relaxed)) {
      log_error(format, std::forward<Args>(args)...);
    }
  }
  void slow_write(std::uint64_t offset, const void* in, std::size_t len) noexcept;

  const std::atomic<bool>* released_;  // the Device's flag (stays put when the Device moves)
  vfio::Sys* sys_;
  int device_fd_;
  std::uint32_t index_;
  std::uint64_t size_;
  std::uint64_t fd_offset_;  // where the region starts in the device fd
  bool readable_;
  bool writable_;
  std::vector<Area> areas_;  // sorted; usually one covering the whole region
  mutable std::atomic<bool> complained_{false};  // a bad access is logged once, not per access
};

/// A PCI BAR is a region with index 0..5 (VFIO_PCI_BAR0_REGION_INDEX..BAR5).
using Bar = Region;

}  // namespace vfe::mmio
