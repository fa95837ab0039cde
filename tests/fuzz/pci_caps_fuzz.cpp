// Fuzzes walk_capabilities (mmio/pci_caps.hpp): the input is a config-space snapshot of any
// size, handed over as libFuzzer's exact-size heap copy, so ASan reports any read past it.
// Checks, beyond "no crash, no sanitizer report":
//  - a standard capability sits at a dword-aligned offset in [0x40, 0x100) with its 2 header
//    bytes inside the snapshot; an extended one at a dword-aligned offset >= 0x100 with its 4
//    header bytes inside;
//  - each entry's ID (and version) is what the snapshot holds at its offset;
//  - no offset appears twice (the walk ended without looping) and standard entries come first;
//  - a failure is EINVAL or ENOTSUP with a message; walking the same bytes again gives the same
//    list.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>

#include "mmio/pci_caps.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

namespace pci = vfe::mmio::pci;
using vfe::mmio::Capability;

std::uint32_t le32(std::span<const std::uint8_t> b, std::size_t at) {
  return std::uint32_t{b[at]} | std::uint32_t{b[at + 1]} << 8 | std::uint32_t{b[at + 2]} << 16 |
         std::uint32_t{b[at + 3]} << 24;
}

void check_cap(std::span<const std::uint8_t> config, const Capability& cap) {
  VFE_FUZZ_CHECK(cap.offset % 4 == 0);
  if (cap.extended) {
    VFE_FUZZ_CHECK(cap.offset >= pci::kConfigSize && cap.offset + 4U <= config.size());
    const std::uint32_t header = le32(config, cap.offset);
    VFE_FUZZ_CHECK(cap.id == (header & 0xffffU) && cap.version == ((header >> 16) & 0xfU));
  } else {
    const std::size_t end = std::min<std::size_t>(config.size(), pci::kConfigSize);
    VFE_FUZZ_CHECK(cap.offset >= pci::kHeaderSize && cap.offset + 2U <= end);
    VFE_FUZZ_CHECK(cap.id == config[cap.offset] && cap.version == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> config(data, size);
  const auto caps = vfe::mmio::walk_capabilities(config);
  if (!caps) {
    const int code = caps.error().code.value();
    VFE_FUZZ_CHECK(code == EINVAL || code == ENOTSUP);
    VFE_FUZZ_CHECK(!caps.error().detail.empty());
    return 0;
  }
  VFE_FUZZ_CHECK(size >= pci::kHeaderSize && size <= pci::kExtConfigSize);
  std::set<std::uint16_t> offsets;
  bool in_extended = false;
  for (const Capability& cap : *caps) {
    check_cap(config, cap);
    VFE_FUZZ_CHECK(offsets.insert(cap.offset).second);
    VFE_FUZZ_CHECK(cap.extended || !in_extended);
    in_extended = cap.extended;
  }
  const auto again = vfe::mmio::walk_capabilities(config);
  VFE_FUZZ_CHECK(again && *again == *caps);
  return 0;
}
