#pragma once
/// \file
/// `Device`: one PCI function opened through VFIO.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "vfio/bdf.hpp"
#include "vfio/iommu_backend.hpp"
#include "vfio/sys.hpp"

namespace vfe::vfio {

/// How to open a device.
struct DeviceOptions {
  /// The IOMMU mode; nullopt chooses one (select_iommu_mode: $VFE_IOMMU_MODE, else iommufd
  /// when the kernel has it, else type1). noiommu is used only when named here or in the
  /// environment: naming it is the explicit opt-in to unisolated DMA.
  std::optional<IommuMode> mode;
  /// The kernel seam; nullptr for the real kernel. Tests pass a fake.
  Sys* sys = nullptr;
};

/// A part of a region that may be mmap'd (VFIO_REGION_INFO_CAP_SPARSE_MMAP), relative to the
/// region's start.
struct SparseArea {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

/// What VFIO_DEVICE_GET_REGION_INFO reports for one region (a BAR, the ROM, config space).
struct RegionInfo {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;        ///< VFIO_REGION_INFO_FLAG_READ/WRITE/MMAP/CAPS
  std::uint64_t size = 0;         ///< 0 for a BAR the device does not implement
  std::uint64_t offset = 0;       ///< where the region starts in the device fd
  bool msix_mappable = false;     ///< the MSI-X table in this BAR may be mmap'd too
  std::vector<SparseArea> areas;  ///< the mmap-able parts; the whole region if MMAP without caps

  [[nodiscard]] bool readable() const noexcept;
  [[nodiscard]] bool writable() const noexcept;
  [[nodiscard]] bool mappable() const noexcept;
};

/// What VFIO_DEVICE_GET_IRQ_INFO reports for one interrupt index (INTx, MSI, MSI-X, ERR, REQ).
struct IrqInfo {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;  ///< VFIO_IRQ_INFO_EVENTFD/MASKABLE/AUTOMASKED/NORESIZE
  std::uint32_t count = 0;  ///< vectors; 0 when the device does not offer the index
};

/// One PCI function, open. Move-only. Owns the device fd and keeps its backend (container or
/// iommufd) alive; Regions, ConfigSpace and IrqSets made from it borrow it and must be
/// destroyed first. Queries are thread-safe; `reset` must not race with I/O the caller does.
class Device {
 public:
  /// Opens `bdf` ("0000:81:00.0" or "81:00.0") with a backend of its own.
  [[nodiscard]] static Result<Device> open(std::string_view bdf, const DeviceOptions& options = {});
  /// Opens `bdf` in an existing backend, sharing its address space with the devices there.
  [[nodiscard]] static Result<Device> open(const Bdf& bdf, std::shared_ptr<IommuBackend> backend);

  [[nodiscard]] const Bdf& bdf() const noexcept { return bdf_; }
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] IommuBackend& backend() const noexcept { return *backend_; }
  [[nodiscard]] const std::shared_ptr<IommuBackend>& shared_backend() const noexcept {
    return backend_;
  }
  [[nodiscard]] Sys& sys() const noexcept { return backend_->sys(); }
  [[nodiscard]] std::uint32_t num_regions() const noexcept { return num_regions_; }
  [[nodiscard]] std::uint32_t num_irqs() const noexcept { return num_irqs_; }
  /// True when the kernel can reset this function (FLR, PM or bus reset behind the scenes).
  [[nodiscard]] bool reset_supported() const noexcept { return reset_supported_; }

  [[nodiscard]] Result<RegionInfo> region_info(std::uint32_t index) const;
  [[nodiscard]] Result<IrqInfo> irq_info(std::uint32_t index) const;

  /// VFIO_DEVICE_RESET: resets the function (QEMU's NVMe: FLR). The caller quiesces its I/O
  /// first; registers read back as after power-on, bus mastering is off.
  [[nodiscard]] Result<void> reset();

  /// VFIO_DEVICE_PCI_HOT_RESET: a secondary bus reset of the bus the function sits on, where the
  /// kernel allows one (a bridge above it that can reset its bus). Every function on that bus is
  /// reset; this process must own all of them (legacy API: their groups are open in this
  /// backend). A function with no resettable bus (a root-complex endpoint) gets ENOTSUP.
  [[nodiscard]] Result<void> hot_reset();

  /// Gives the function back to the kernel while this object lives on: the device fd now refers
  /// to /dev/null (dup3 over it, so the descriptor number stays valid and is never reused for
  /// another file), which drops this process's open of the device once nothing else references
  /// the old file (Regions must `detach` their mmaps first). The kernel can then finish a removal
  /// it asked for with the device request interrupt (hot-unplug, unbind). From then on, this
  /// class, ConfigSpace, IrqSet and Region's fd accesses fail with ENODEV ("given back to the
  /// kernel") instead of reaching /dev/null; objects made from the device are destroyed as usual.
  /// Idempotent; may be called while other threads use the device (they see either the device
  /// or ENODEV, except for a call already past the check when the fd changes, which then meets
  /// /dev/null).
  [[nodiscard]] Result<void> release();
  /// True once `release` succeeded.
  [[nodiscard]] bool released() const noexcept { return released_ && released_->load(std::memory_order_acquire); }
  /// The flag behind `released()`, at an address that stays put when the Device is moved (a
  /// Region keeps it).
  [[nodiscard]] const std::atomic<bool>& released_flag() const noexcept { return *released_; }
  /// The ENODEV error of an operation `op` on a released device.
  [[nodiscard]] Error released_error(const char* op) const;


 private:
  // Releases the backend's claim on the function when the Device goes.
  class Claim {
   public:
    Claim(IommuBackend* backend, Bdf bdf) noexcept : backend_(backend), bdf_(bdf) {}
    Claim(Claim&& other) noexcept : backend_(std::exchange(other.backend_, nullptr)), bdf_(other.bdf_) {}
    Claim& operator=(Claim&&) = delete;
    ~Claim() {
      if (backend_ != nullptr) {
        backend_->release(bdf_);
      }
    }

   private:
    IommuBackend* backend_;
    Bdf bdf_;
  };

  Device(std::shared_ptr<IommuBackend> backend, Claim claim, Fd fd, Bdf bdf) noexcept
      : backend_(std::move(backend)), claim_(std::move(claim)), fd_(std::move(fd)), bdf_(bdf) {}
  [[nodiscard]] Result<void> read_info();

  // Order matters (destroyed bottom up): the fd closes, then the claim is released, then the
  // backend (group, container, iommufd) may go.
  std::shared_ptr<IommuBackend> backend_;
  Claim claim_;
  Fd fd_;
  Bdf bdf_;
  std::uint32_t num_regions_ = 0;
  std::uint32_t num_irqs_ = 0;
  bool reset_supported_ = false;
  // Behind a pointer so that its address survives moves (a Region holds it).
  std::unique_ptr<std::atomic<bool>> released_ = std::make_unique<std::atomic<bool>>(false);
};

}  // namespace vfe::vfio
