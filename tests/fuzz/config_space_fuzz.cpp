// Fuzzes the config-space walk that ConfigSpace::msi() and msix() (mmio/config_space.hpp) run.
// ConfigSpace reads through a Device, so this feeds its pure steps instead: the input, zero-padded
// or cut to 256 or 4096 bytes (the sizes ConfigSpace::snapshot() returns), goes through
// walk_capabilities, find_capability, parse_msi, parse_msix and describe, as ConfigSpace does.
// parse_msi/parse_msix also get a capability the input makes up, against the raw input: they
// promise to read nothing outside the span whatever `cap` says. Checks:
//  - a decoded MSI has power-of-two vector counts in 1..32 and its 10..34 bytes inside 0x100;
//  - a decoded MSI-X has a table of 1..2048 entries, BIRs 0..5 and 8-byte aligned offsets;
//  - the decoded offset is the capability's; describe() is never empty.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mmio/pci_caps.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

namespace mmio = vfe::mmio;
namespace pci = vfe::mmio::pci;

bool power_of_two_upto_32(unsigned n) { return n >= 1 && n <= 32 && (n & (n - 1)) == 0; }

void decode(std::span<const std::uint8_t> config, const mmio::Capability& cap) {
  if (const auto msi = mmio::parse_msi(config, cap)) {
    VFE_FUZZ_CHECK(!cap.extended && cap.id == pci::kCapMsi && msi->offset == cap.offset);
    VFE_FUZZ_CHECK(power_of_two_upto_32(msi->multiple_message_capable));
    VFE_FUZZ_CHECK(power_of_two_upto_32(msi->multiple_message_enabled));
    const std::size_t length = (msi->is_64bit ? 14U : 10U) + (msi->per_vector_mask ? 10U : 0U);
    VFE_FUZZ_CHECK(cap.offset + length <= std::min<std::size_t>(config.size(), pci::kConfigSize));
  }
  if (const auto msix = mmio::parse_msix(config, cap)) {
    VFE_FUZZ_CHECK(!cap.extended && cap.id == pci::kCapMsix && msix->offset == cap.offset);
    VFE_FUZZ_CHECK(msix->table_size >= 1 && msix->table_size <= 2048);
    VFE_FUZZ_CHECK(msix->table_bar <= 5 && msix->pba_bar <= 5);
    VFE_FUZZ_CHECK(msix->table_offset % 8 == 0 && msix->pba_offset % 8 == 0);
    VFE_FUZZ_CHECK(cap.offset + 12U <= std::min<std::size_t>(config.size(), pci::kConfigSize));
  }
  VFE_FUZZ_CHECK(!mmio::describe(cap).empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> raw(data, size);
  std::vector<std::uint8_t> snap(size > pci::kConfigSize ? pci::kExtConfigSize : pci::kConfigSize);
  std::copy_n(raw.begin(), std::min(raw.size(), snap.size()), snap.begin());

  if (const auto caps = mmio::walk_capabilities(snap)) {
    for (const mmio::Capability& cap : *caps) {
      decode(snap, cap);
    }
    for (const bool extended : {false, true}) {
      for (const std::uint16_t id : {pci::kCapMsi, pci::kCapMsix}) {
        const auto found = mmio::find_capability(*caps, id, extended);
        VFE_FUZZ_CHECK(!found || (found->id == id && found->extended == extended));
      }
    }
  }

  // A made-up capability: ID, offset (up to 0x1fff, past any snapshot) and flag from the input.
  if (size >= 4) {
    const mmio::Capability cap{(data[0] & 1U) != 0 ? pci::kCapMsi : pci::kCapMsix,
                               static_cast<std::uint16_t>((data[1] | data[2] << 8) & 0x1fff),
                               (data[3] & 1U) != 0, 0};
    decode(raw, cap);
  }
  return 0;
}
