#include "vfio/info_caps.hpp"

#include <fmt/format.h>
#include <linux/vfio.h>

#include <cstring>
#include <set>

namespace vfe::vfio {

Result<std::vector<InfoCap>> walk_info_caps(std::span<const std::uint8_t> buf,
                                            std::uint32_t first) {
  std::vector<InfoCap> caps;
  std::set<std::uint32_t> seen;
  for (std::uint32_t off = first; off != 0;) {
    // A capability never overlaps the fixed header that precedes the chain (argsz at 0).
    if (off < sizeof(std::uint32_t) || off % alignof(std::uint32_t) != 0 ||
        off > buf.size() || buf.size() - off < sizeof(vfio_info_cap_header)) {
      return Error::invalid("walk VFIO info capabilities",
                            fmt::format("capability at offset {:#x} lies outside the {}-byte "
                                        "buffer or is misaligned",
                                        off, buf.size()));
    }
    if (!seen.insert(off).second) {
      return Error::invalid("walk VFIO info capabilities",
                            fmt::format("capability chain loops back to offset {:#x}", off));
    }
    vfio_info_cap_header header{};
    std::memcpy(&header, buf.data() + off, sizeof(header));
    caps.push_back({header.id, header.version, off});
    off = header.next;
  }
  return caps;
}

}  // namespace vfe::vfio
