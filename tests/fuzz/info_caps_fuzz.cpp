// Fuzzes walk_info_caps (vfio/info_caps.hpp), the walk over the capability chain VFIO appends to
// an info struct. The input is the whole buffer the kernel filled, laid out as struct
// vfio_region_info: the chain starts at its cap_offset (bytes 12..15). Checks, beyond "no crash,
// no sanitizer report" (the buffer is libFuzzer's exact-size copy):
//  - each header (struct vfio_info_cap_header, 8 bytes) lies inside the buffer, past argsz, at a
//    4-byte aligned offset, and its id and version are the ones stored there;
//  - no offset appears twice (the walk ended); the first is cap_offset; cap_offset 0 is no chain;
//  - a failure is EINVAL with a message.

#include <linux/vfio.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <span>

#include "tests/fuzz/fuzz_check.hpp"
#include "vfio/info_caps.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> buf(data, size);
  std::uint32_t first = 0;
  if (size >= offsetof(vfio_region_info, cap_offset) + sizeof(first)) {
    std::memcpy(&first, data + offsetof(vfio_region_info, cap_offset), sizeof(first));
  }
  const auto caps = vfe::vfio::walk_info_caps(buf, first);
  if (!caps) {
    VFE_FUZZ_CHECK(caps.error().code.value() == EINVAL && !caps.error().detail.empty());
    return 0;
  }
  VFE_FUZZ_CHECK(first != 0 || caps->empty());
  VFE_FUZZ_CHECK(caps->empty() || caps->front().offset == first);
  std::set<std::uint32_t> offsets;
  for (const vfe::vfio::InfoCap& cap : *caps) {
    VFE_FUZZ_CHECK(cap.offset >= sizeof(std::uint32_t) && cap.offset % 4 == 0);
    VFE_FUZZ_CHECK(cap.offset <= size && size - cap.offset >= sizeof(vfio_info_cap_header));
    vfio_info_cap_header header{};
    std::memcpy(&header, data + cap.offset, sizeof(header));
    VFE_FUZZ_CHECK(cap.id == header.id && cap.version == header.version);
    VFE_FUZZ_CHECK(offsets.insert(cap.offset).second);
  }
  return 0;
}
