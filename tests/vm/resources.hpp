#pragma once
/// \file
/// What the test process holds that a failed call could leak: descriptors, memory mappings and
/// locked/pinned memory, read from /proc/self. A test takes a snapshot before the call and one
/// after every object of the case is gone, and expects no difference.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vfe::vmtest {

/// One snapshot of the calling process. Plain value; taking one is a few file reads.
struct Resources {
  /// Open descriptors: number -> what /proc/self/fd/N links to ("/dev/vfio/7",
  /// "anon_inode:[eventfd]"). The descriptor the snapshot itself reads with is left out.
  std::map<int, std::string> fds;
  /// The lines of /proc/self/maps, except [heap] and [stack], which grow on their own.
  std::vector<std::string> maps;
  /// Bytes in `maps`: a leaked mapping adds to it even where the kernel merged it with a
  /// neighbour (so the line count stayed the same).
  std::uint64_t mapped_bytes = 0;
  /// VmLck and VmPin of /proc/self/status, in kB. VFIO type1 accounts the pages it pins in
  /// locked_vm (VmLck), iommufd in pinned_vm (VmPin), no-IOMMU mode mlocks them (VmLck).
  std::uint64_t locked_kb = 0;
  std::uint64_t pinned_kb = 0;

  /// The process now.
  [[nodiscard]] static Resources snapshot();
  /// The same without private anonymous mappings: for a test whose threads make the C library
  /// keep stacks and malloc arenas around for reuse. What a driver could leak (device and DMA
  /// mappings, which are shared or named, descriptors, locked and pinned pages) stays.
  [[nodiscard]] Resources without_private_anonymous() const;
};

/// What changed from `before` to `after`, one line per difference ("fd 7 -> /dev/vfio/7 was
/// opened", "mapping added: 7f...", "VmLck 0 -> 4 kB"); empty when nothing did. Mapping lines
/// are listed only when the mapped bytes changed (address space that merely moved between lines,
/// as an arena growing in place, is no leak).
[[nodiscard]] std::string resource_changes(const Resources& before, const Resources& after);

}  // namespace vfe::vmtest
