#include "vfio/info_caps.hpp"

#include <fmt/format.h>
#include <linux/vfio.h>

#include <cerrno>
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

Result<std::vector<std::uint8_t>> get_info_with_caps(Sys& sys, int fd, unsigned long request,
                                                     std::size_t fixed_size,
                                                     void (*init)(void*, std::uint32_t),
                                                     std::uint32_t init_arg, const char* op,
                                                     const std::string& what) {
  std::vector<std::uint8_t> buf(fixed_size);
  for (int attempt = 0; attempt < 2; ++attempt) {
    const auto size = static_cast<std::uint32_t>(buf.size());
    std::memcpy(buf.data(), &size, sizeof(size));  // argsz
    if (init != nullptr) {
      init(buf.data(), init_arg);
    }
    if (sys.ioctl_ptr(fd, request, buf.data()) != 0) {
      return Error::from_errno(errno, op, what);
    }
    std::uint32_t wanted = 0;
    std::memcpy(&wanted, buf.data(), sizeof(wanted));
    if (wanted <= buf.size()) {
      return buf;
    }
    buf.assign(wanted, 0);
  }
  return Error::from_errno(EAGAIN, op, what + ": the kernel kept asking for a larger buffer");
}

}  // namespace vfe::vfio
