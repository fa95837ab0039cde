#pragma once
/// \file
/// `IommuBackend`: how devices reach memory. One interface over VFIO type1 (container and
/// groups), iommufd (IOAS and device cdevs) and no-IOMMU mode; `make_backend` picks one.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "vfio/bdf.hpp"
#include "vfio/iova_range.hpp"
#include "vfio/probe.hpp"
#include "vfio/sys.hpp"

namespace vfe::vfio {

/// One I/O address space shared by the devices opened through it. Every mapping made here is
/// visible to every device attached. Thread-safe: setup-path calls may come from any thread. A
/// backend must outlive the devices it opened (`Device` holds a shared_ptr to it).
class IommuBackend {
 public:
  virtual ~IommuBackend() = default;
  IommuBackend(const IommuBackend&) = delete;
  IommuBackend& operator=(const IommuBackend&) = delete;

  [[nodiscard]] IommuMode mode() const noexcept { return mode_; }
  [[nodiscard]] Sys& sys() const noexcept { return sys_; }

  /// Opens `bdf` and attaches it to this address space. Checks first that the function exists,
  /// is bound to vfio-pci and (legacy API) that its group is viable; each failure says what to do.
  [[nodiscard]] virtual Result<Fd> open_device(const Bdf& bdf) = 0;

  /// Makes [vaddr, vaddr + size) readable and writable by the attached devices and returns the
  /// IOVA they must use. `iova` is where to map it; a backend that can't choose (no-IOMMU: the
  /// device sees physical addresses, see `chooses_iova`) ignores it and returns the physical
  /// address. vaddr, size and iova must be page aligned. Pins the memory (RLIMIT_MEMLOCK).
  [[nodiscard]] virtual Result<std::uint64_t> map(const void* vaddr, std::uint64_t size,
                                                  std::uint64_t iova) = 0;

  /// Removes exactly one earlier mapping (same iova and size). Unmapping what is not mapped
  /// (a double unmap) is an error that changes nothing.
  [[nodiscard]] virtual Result<void> unmap(std::uint64_t iova, std::uint64_t size) = 0;

  /// The IOVA windows the attached devices may use, as the kernel reports them now (they can
  /// shrink when a device with reserved regions is attached). Sorted, inclusive.
  [[nodiscard]] virtual Result<std::vector<IovaRange>> iova_ranges() = 0;

  /// How many more mappings the kernel allows (type1's dma_entry_limit); nullopt where the
  /// kernel reports no such limit.
  [[nodiscard]] virtual std::optional<std::uint32_t> dma_avail() = 0;

  /// True when the backend, not the caller, decides the IOVA (no-IOMMU).
  [[nodiscard]] virtual bool chooses_iova() const noexcept { return false; }

  /// The group fds VFIO_DEVICE_PCI_HOT_RESET needs to prove this process owns every group a bus
  /// reset touches (legacy API); empty for iommufd, where the kernel checks ownership through
  /// the iommufd the devices are bound to. An affected group this backend does not hold is an
  /// error naming it.
  [[nodiscard]] virtual Result<std::vector<int>> hot_reset_group_fds(
      const std::vector<std::uint32_t>& groups) {
    static_cast<void>(groups);
    return std::vector<int>{};
  }

  /// Records that this process has `bdf` open through this backend; EBUSY if it already has.
  /// VFIO itself lets one group hand out a device fd twice, but two owners of one function
  /// (both resetting it, both enabling its interrupts) is a bug `Device::open` refuses.
  [[nodiscard]] Result<void> claim(const Bdf& bdf);
  /// Undoes `claim` (the Device closed).
  void release(const Bdf& bdf) noexcept;

 protected:
  IommuBackend(Sys& sys, IommuMode mode) noexcept : sys_(sys), mode_(mode) {}

  /// For a mapping the kernel refused with EINVAL: ": [iova, iova + size) is outside the IOVA
  /// ranges the IOMMU allows (...)" when `iova_ranges()` says so, else empty (the EINVAL then
  /// has another cause, such as alignment).
  [[nodiscard]] std::string outside_iova_ranges(std::uint64_t iova, std::uint64_t size);

 private:
  Sys& sys_;
  IommuMode mode_;
  std::mutex claims_mu_;
  std::set<Bdf> claimed_;
};

/// Creates the backend for `mode`. no-IOMMU is only ever made when named here: it gives devices
/// unrestricted DMA to all memory, and creating it logs a loud warning.
[[nodiscard]] Result<std::shared_ptr<IommuBackend>> make_backend(IommuMode mode,
                                                                 Sys& sys = linux_sys());

}  // namespace vfe::vfio
