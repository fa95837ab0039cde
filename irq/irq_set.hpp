#pragma once
/// \file
/// `IrqSet`: the vectors of one interrupt index, each signalling an eventfd.

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "vfio/device.hpp"

namespace vfe::irq {

/// Interrupt indexes of a PCI device in VFIO (VFIO_PCI_*_IRQ_INDEX).
enum class IrqIndex : std::uint32_t { intx = 0, msi = 1, msix = 2, err = 3, req = 4 };

[[nodiscard]] const char* to_string(IrqIndex index) noexcept;

/// The argument of VFIO_DEVICE_SET_IRQS: a struct vfio_irq_set followed by `fds` (one int32 per
/// vector, -1 to detach that vector) when DATA_EVENTFD is in `flags`, or by nothing. Pure; the
/// unit tests check the layout.
[[nodiscard]] std::vector<std::uint8_t> build_irq_set(std::uint32_t flags, IrqIndex index,
                                                      std::uint32_t start, std::uint32_t count,
                                                      std::span<const std::int32_t> fds);

/// `count` vectors of one index of a device, vector i signalling eventfd(i). Move-only. The
/// destructor disables the index in the device before it closes the eventfds, so no interrupt
/// lands on a closed descriptor. Borrows the Device, which must outlive it. Not thread-safe as
/// an object; the eventfds may be read (or watched by io_uring) from any thread.
class IrqSet {
 public:
  /// Enables vectors 0..count-1 of `index` (count 0: every vector the device offers). Fails when
  /// the device lacks the index or has fewer vectors.
  [[nodiscard]] static Result<IrqSet> enable(const vfio::Device& device, IrqIndex index,
                                             std::uint32_t count = 0);

  IrqSet(IrqSet&& other) noexcept;
  IrqSet& operator=(IrqSet&&) = delete;
  IrqSet(const IrqSet&) = delete;
  IrqSet& operator=(const IrqSet&) = delete;
  ~IrqSet();

  [[nodiscard]] IrqIndex index() const noexcept { return index_; }
  [[nodiscard]] std::uint32_t count() const noexcept { return static_cast<std::uint32_t>(fds_.size()); }
  /// The eventfd of `vector` (owned by this set; never close it).
  [[nodiscard]] int eventfd(std::uint32_t vector) const noexcept;

  /// Fires `vector` in software (VFIO_IRQ_SET_DATA_NONE | ACTION_TRIGGER): the kernel signals
  /// its eventfd as if the device had. A self-test of the whole delivery path.
  [[nodiscard]] Result<void> trigger(std::uint32_t vector) const;
  /// Detaches (`attached` false) or re-attaches one vector's eventfd, leaving the others.
  [[nodiscard]] Result<void> set_attached(std::uint32_t vector, bool attached) const;
  /// Masks / unmasks one vector, where the index allows it (VFIO_IRQ_INFO_MASKABLE: INTx).
  [[nodiscard]] Result<void> mask(std::uint32_t vector) const { return set_masked(vector, true); }
  [[nodiscard]] Result<void> unmask(std::uint32_t vector) const { return set_masked(vector, false); }

  /// Waits up to `timeout` for `vector` and returns how many interrupts arrived since the last
  /// wait (the eventfd counter); ETIMEDOUT when none did. For tests and simple drivers; the
  /// engine watches the eventfds with io_uring instead.
  [[nodiscard]] Result<std::uint64_t> wait(std::uint32_t vector,
                                           std::chrono::milliseconds timeout) const;

 private:
  IrqSet(const vfio::Device& device, IrqIndex index, std::uint32_t info_flags) noexcept
      : device_(&device), index_(index), info_flags_(info_flags) {}
  [[nodiscard]] Result<void> set_irqs(std::uint32_t flags, std::uint32_t start, std::uint32_t count,
                                      std::span<const std::int32_t> fds, const char* what) const;
  [[nodiscard]] Result<void> check_vector(std::uint32_t vector, const char* op) const;
  [[nodiscard]] Result<void> set_masked(std::uint32_t vector, bool masked) const;

  const vfio::Device* device_;
  IrqIndex index_;
  std::uint32_t info_flags_;
  std::vector<Fd> fds_;  // one per vector; closed after the index is disabled (see ~IrqSet)
  bool enabled_ = false;
};

}  // namespace vfe::irq
