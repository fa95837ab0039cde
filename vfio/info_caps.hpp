#pragma once
/// \file
/// Walking the capability chains VFIO appends to its info structs (VFIO_IOMMU_GET_INFO,
/// VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_GET_INFO).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "vfio/sys.hpp"

namespace vfe::vfio {

/// One capability in a VFIO info buffer: its id and version, and the offset of its header
/// (struct vfio_info_cap_header) from the start of the buffer.
struct InfoCap {
  std::uint16_t id = 0;
  std::uint16_t version = 0;
  std::uint32_t offset = 0;
};

/// Follows the chain that starts at `first` (the info struct's cap_offset; 0 means no chain)
/// through `buf`, the whole buffer the kernel filled. Each header must lie inside the buffer,
/// each next offset must point past the info header and not back to a visited one: a malformed
/// or cyclic chain is an EINVAL error, never a loop or an out-of-bounds read.
[[nodiscard]] Result<std::vector<InfoCap>> walk_info_caps(std::span<const std::uint8_t> buf,
                                                          std::uint32_t first);

/// Calls a VFIO "get info" ioctl whose struct starts with `__u32 argsz` and may be followed by
/// capabilities: first with `fixed_size` bytes, then, if the kernel asks for more (it raises
/// argsz), once more with that much. `init` fills the request's input fields (an index) before
/// each call. Returns the whole buffer. A kernel that asks for more again is an error (EAGAIN):
/// carrying on would drop capabilities silently.
[[nodiscard]] Result<std::vector<std::uint8_t>> get_info_with_caps(
    Sys& sys, int fd, unsigned long request, std::size_t fixed_size, void (*init)(void*, std::uint32_t),
    std::uint32_t init_arg, const char* op, const std::string& what);

}  // namespace vfe::vfio
