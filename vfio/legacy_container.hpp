#pragma once
/// \file
/// `LegacyContainer`: the container/group half of VFIO's legacy API, shared by the type1 and
/// no-IOMMU backends.

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/result.hpp"
#include "vfio/bdf.hpp"
#include "vfio/sys.hpp"

namespace vfe::vfio {

/// A container (/dev/vfio/vfio) and the groups attached to it. Several groups share one
/// container and so one address space; the IOMMU type is set when the first group joins.
/// Thread-safe.
class LegacyContainer {
 public:
  /// Opens the container, checks the API version and that the kernel offers `iommu_type`
  /// (VFIO_TYPE1v2_IOMMU or VFIO_NOIOMMU_IOMMU).
  [[nodiscard]] static Result<LegacyContainer> create(Sys& sys, unsigned long iommu_type);

  /// The device fd of `bdf`, its group opened, checked for viability and attached first if this
  /// is the group's first device.
  [[nodiscard]] Result<Fd> open_device(const Bdf& bdf);

  /// The fds of `groups` (by number), for a hot reset; a group not attached here is an error.
  [[nodiscard]] Result<std::vector<int>> group_fds(const std::vector<std::uint32_t>& groups);

  [[nodiscard]] int fd() const noexcept { return container_.get(); }
  [[nodiscard]] Sys& sys() const noexcept { return *sys_; }

  LegacyContainer(LegacyContainer&& other) noexcept;
  LegacyContainer& operator=(LegacyContainer&&) = delete;
  ~LegacyContainer() = default;

 private:
  LegacyContainer(Sys& sys, Fd container, unsigned long iommu_type) noexcept
      : sys_(&sys), iommu_type_(iommu_type), container_(std::move(container)) {}
  [[nodiscard]] Result<int> attach_group(const Bdf& bdf);

  Sys* sys_;
  unsigned long iommu_type_;
  std::mutex mu_;
  bool iommu_set_ = false;
  // Declared after the container so they close first: a group leaves the container before the
  // container goes.
  Fd container_;
  std::map<std::string, Fd> groups_;  // group number -> group fd
};

}  // namespace vfe::vfio
