#include "mmio/pci_caps.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bitset>
#include <string_view>

namespace vfe::mmio {
namespace {

using Config = std::span<const std::uint8_t>;

constexpr const char* kWalkOp = "walk PCI capabilities";
constexpr const char* kMsiOp = "parse MSI capability";
constexpr const char* kMsixOp = "parse MSI-X capability";

// Every error of the walk means the same thing to the caller, so it says so once, here.
constexpr std::string_view kCorrupt =
    "; the function's capability list is corrupt (a faulty device, or one not out of reset)";

// Little-endian reads that never leave the snapshot: nullopt when [offset, offset + width) is not
// inside it. Config registers are little-endian whatever the host is.
std::optional<std::uint32_t> read_le(Config config, std::size_t offset, std::size_t width) {
  if (offset > config.size() || config.size() - offset < width) {
    return std::nullopt;
  }
  std::uint32_t v = 0;
  for (std::size_t i = width; i-- > 0;) {
    v = (v << 8) | config[offset + i];
  }
  return v;
}

std::optional<std::uint8_t> read8(Config config, std::size_t offset) {
  const auto v = read_le(config, offset, 1);
  return v ? std::optional<std::uint8_t>(static_cast<std::uint8_t>(*v)) : std::nullopt;
}

std::optional<std::uint16_t> read16(Config config, std::size_t offset) {
  const auto v = read_le(config, offset, 2);
  return v ? std::optional<std::uint16_t>(static_cast<std::uint16_t>(*v)) : std::nullopt;
}

std::optional<std::uint32_t> read32(Config config, std::size_t offset) {
  return read_le(config, offset, 4);
}

// A standard capability must lie inside the PCI-compatible 256 bytes as well as the snapshot.
std::size_t standard_end(Config config) {
  return std::min<std::size_t>(config.size(), pci::kConfigSize);
}

// At the end of the PCI-compatible space the device is at fault; at the end of a shorter snapshot,
// the caller, who read too little.
std::string past_end(std::string_view what, std::size_t offset, std::size_t length,
                     std::size_t end) {
  if (end == pci::kConfigSize) {
    return fmt::format(
        "{} at {:#x} ({} bytes) runs past {:#x}, the end of the PCI-compatible space{}", what,
        offset, length, end, kCorrupt);
  }
  return fmt::format(
      "{} at {:#x} ({} bytes) runs past {:#x}, the end of the snapshot; "
      "pass the whole config space (256 or 4096 bytes)",
      what, offset, length, end);
}

// The snapshot is big enough to hold the header, and a function answered (PCI Local Bus 3.0: a
// read that no function claims returns all ones, so the vendor ID reads 0xffff).
Result<void> check_header(Config config) {
  if (config.size() < pci::kHeaderSize || config.size() > pci::kExtConfigSize) {
    return Error::invalid(kWalkOp,
                          fmt::format("the config snapshot is {} bytes; it must hold the "
                                      "{}-byte header and at most {} bytes",
                                      config.size(), pci::kHeaderSize, pci::kExtConfigSize));
  }
  if (read16(config, pci::kVendorId).value_or(0) == 0xffff) {
    return Error::invalid(kWalkOp,
                          "the vendor ID at 0x0 reads 0xffff: the function did not answer "
                          "(removed, powered down or in reset); read it again once it is up");
  }
  const unsigned layout = read8(config, pci::kHeaderType).value_or(0) & pci::kHeaderTypeLayoutMask;
  if (layout != pci::kHeaderTypeNormal && layout != pci::kHeaderTypeBridge) {
    // Type 2 (CardBus) keeps its capabilities pointer elsewhere; higher types are reserved.
    return Error::not_supported(
        kWalkOp, fmt::format("header type {:#x} at 0xe: only type 0 (endpoint) and type 1 "
                             "(bridge) headers have their capabilities pointer at 0x34",
                             layout));
  }
  return ok();
}

// PCI Local Bus 3.0 §6.7: a byte pointer at 0x34, then a chain of (ID, next) byte pairs. Each
// offset is visited once at most, so the walk ends after at most 48 capabilities (the dword slots
// from 0x40 to 0xfc); a longer chain necessarily revisits one and is reported as a loop.
Result<void> walk_standard(Config config, std::vector<Capability>& out) {
  if ((read16(config, pci::kStatus).value_or(0) & pci::kStatusCapList) == 0) {
    return ok();
  }
  std::bitset<pci::kConfigSize / 4> visited;
  std::size_t from = pci::kCapabilitiesPointer;
  std::size_t ptr = read8(config, from).value_or(0) & pci::kCapPointerMask;
  const std::size_t end = standard_end(config);
  while (ptr != 0) {
    const std::string_view source =
        from == pci::kCapabilitiesPointer ? "the capabilities pointer" : "the capability";
    if (ptr < pci::kHeaderSize) {
      return Error::invalid(kWalkOp, fmt::format("{} at {:#x} points to {:#x}, inside the 64-byte "
                                                 "header{}",
                                                 source, from, ptr, kCorrupt));
    }
    if (ptr + 2 > end) {
      return Error::invalid(kWalkOp, past_end("the capability", ptr, 2, end));
    }
    if (visited[ptr / 4]) {
      return Error::invalid(kWalkOp, fmt::format("capability chain loops back to {:#x} (already "
                                                 "visited) from {} at {:#x}{}",
                                                 ptr, source, from, kCorrupt));
    }
    visited[ptr / 4] = true;
    out.push_back(Capability{config[ptr], static_cast<std::uint16_t>(ptr), false, 0});
    from = ptr;
    ptr = config[ptr + 1] & pci::kCapPointerMask;
  }
  return ok();
}

// PCIe Base 4.0 §7.6 (Extended Capability Header): a dword at 0x100 holding ID (15:0), version
// (19:16) and next offset (31:20, low two bits reserved). As above, each dword slot is visited once
// at most, so at most 960 headers are read.
Result<void> walk_extended(Config config, std::vector<Capability>& out) {
  if (config.size() <= pci::kConfigSize) {
    return ok();  // the snapshot does not reach extended space
  }
  std::bitset<pci::kExtConfigSize / 4> visited;
  std::size_t from = 0;
  std::size_t offset = pci::kConfigSize;
  while (true) {
    const auto header = read32(config, offset);
    if (!header) {
      return Error::invalid(kWalkOp, past_end("the extended capability", offset, 4, config.size()));
    }
    // No extended space behind 0x100: conventional functions read 0, absent ones all ones.
    if (offset == pci::kConfigSize && (*header == 0 || *header == 0xffffffff)) {
      return ok();
    }
    if (visited[offset / 4]) {
      return Error::invalid(kWalkOp, fmt::format("extended capability chain loops back to {:#x} "
                                                 "(already visited) from the capability at {:#x}{}",
                                                 offset, from, kCorrupt));
    }
    visited[offset / 4] = true;
    out.push_back(Capability{static_cast<std::uint16_t>(*header & 0xffff),
                             static_cast<std::uint16_t>(offset), true,
                             static_cast<std::uint8_t>((*header >> 16) & 0xf)});
    const std::size_t next = (*header >> 20) & 0xffc;
    if (next == 0) {
      return ok();
    }
    if (next < pci::kConfigSize) {
      return Error::invalid(kWalkOp,
                            fmt::format("the extended capability at {:#x} points to {:#x}, "
                                        "below the extended space at 0x100{}",
                                        offset, next, kCorrupt));
    }
    from = offset;
    offset = next;
  }
}

// `cap` names a standard capability `id` that the snapshot holds, and its first `length` bytes lie
// inside the snapshot and the PCI-compatible space.
Result<void> check_standard_cap(Config config, const Capability& cap, std::uint16_t id,
                                std::string_view name, std::size_t length, const char* op) {
  if (cap.extended || cap.id != id) {
    return Error::invalid(
        op, fmt::format("the capability at {:#x} is {}, not {}", cap.offset, describe(cap), name));
  }
  const auto found = read8(config, cap.offset);
  if (found && *found != id) {
    return Error::invalid(op, fmt::format("the snapshot holds capability {:#x} at {:#x}, not {}; "
                                          "pass a capability walked from this snapshot",
                                          *found, cap.offset, name));
  }
  const std::size_t end = standard_end(config);
  if (cap.offset + length > end) {
    return Error::invalid(op, past_end(name, cap.offset, length, end));
  }
  return ok();
}

// Multiple Message Capable / Enable hold log2 of a vector count; 0 to 5 (1 to 32 vectors) are
// defined, 6 and 7 reserved (PCI Local Bus 3.0 §6.8.1).
Result<unsigned> msi_vectors(unsigned log2, std::string_view field, std::uint16_t offset) {
  if (log2 > 5) {
    return Error::invalid(kMsiOp, fmt::format("the MSI capability at {:#x} has {} = {}, a reserved "
                                              "encoding (0 to 5 mean 1 to 32 vectors)",
                                              offset, field, log2));
  }
  return 1U << log2;
}

// A BAR Indicator names BAR 0 to 5 of a type 0 header; 6 and 7 are reserved.
Result<void> check_bir(unsigned bir, std::string_view what, std::uint16_t offset) {
  if (bir > 5) {
    return Error::invalid(kMsixOp, fmt::format("the MSI-X capability at {:#x} puts its {} in BAR "
                                               "{} (BIR {} is reserved; BARs are 0 to 5)",
                                               offset, what, bir, bir));
  }
  return ok();
}

// Names for describe(): the IDs vfio-engine knows by name, as logs spell them.
struct CapName {
  std::uint16_t id;
  std::string_view name;
};

constexpr std::array kStandardNames{
    CapName{pci::kCapPm, "PM"},
    CapName{pci::kCapVpd, "VPD"},
    CapName{pci::kCapMsi, "MSI"},
    CapName{pci::kCapVendor, "vendor"},
    CapName{pci::kCapPcie, "PCI Express"},
    CapName{pci::kCapMsix, "MSI-X"},
    CapName{pci::kCapAf, "AF"},
};

constexpr std::array kExtendedNames{
    CapName{pci::kExtCapAer, "AER"},
    CapName{pci::kExtCapDsn, "DSN"},
    CapName{pci::kExtCapVendor, "VSEC"},
    CapName{pci::kExtCapAcs, "ACS"},
    CapName{pci::kExtCapAri, "ARI"},
    CapName{pci::kExtCapAts, "ATS"},
    CapName{pci::kExtCapSriov, "SR-IOV"},
    CapName{pci::kExtCapPri, "PRI"},
    CapName{pci::kExtCapRebar, "Resizable BAR"},
    CapName{pci::kExtCapLtr, "LTR"},
    CapName{pci::kExtCapPasid, "PASID"},
    CapName{pci::kExtCapDvsec, "DVSEC"},
};

}  // namespace

Result<std::vector<Capability>> walk_capabilities(std::span<const std::uint8_t> config) {
  VFE_TRY(check_header(config));
  std::vector<Capability> caps;
  VFE_TRY(walk_standard(config, caps));
  VFE_TRY(walk_extended(config, caps));
  return caps;
}

std::optional<Capability> find_capability(std::span<const Capability> caps, std::uint16_t id,
                                          bool extended) noexcept {
  const auto it = std::find_if(caps.begin(), caps.end(), [&](const Capability& c) {
    return c.id == id && c.extended == extended;
  });
  return it == caps.end() ? std::nullopt : std::optional<Capability>(*it);
}

// PCI Local Bus 3.0 §6.8.1: ID, next, Message Control (16 bits), Message Address, [Message Upper
// Address if 64-bit], Message Data (16 bits), then with per-vector masking a reserved half-word,
// Mask Bits and Pending Bits (32 bits each): 10 or 14 bytes, plus 10.
Result<MsiCap> parse_msi(std::span<const std::uint8_t> config, const Capability& cap) {
  VFE_TRY(check_standard_cap(config, cap, pci::kCapMsi, "MSI", pci::kMsiControl + 2, kMsiOp));
  const unsigned control = read16(config, cap.offset + pci::kMsiControl).value_or(0);
  MsiCap msi;
  msi.offset = cap.offset;
  msi.enabled = (control & 1U) != 0;
  msi.is_64bit = (control & (1U << 7)) != 0;
  msi.per_vector_mask = (control & (1U << 8)) != 0;
  const std::size_t length = (msi.is_64bit ? 14 : 10) + (msi.per_vector_mask ? 10 : 0);
  VFE_TRY(check_standard_cap(config, cap, pci::kCapMsi, "MSI", length, kMsiOp));
  VFE_TRY_ASSIGN(msi.multiple_message_capable,
                 msi_vectors((control >> 1) & 0x7, "Multiple Message Capable", cap.offset));
  VFE_TRY_ASSIGN(msi.multiple_message_enabled,
                 msi_vectors((control >> 4) & 0x7, "Multiple Message Enable", cap.offset));
  return msi;
}

// PCI Local Bus 3.0 §6.8.2: ID, next, Message Control (Table Size N-1 in 10:0, Function Mask 14,
// Enable 15), then two dwords: Table Offset/BIR and PBA Offset/BIR, the BIR in bits 2:0 and the
// offset (8-byte aligned) in the rest.
Result<MsixCap> parse_msix(std::span<const std::uint8_t> config, const Capability& cap) {
  VFE_TRY(check_standard_cap(config, cap, pci::kCapMsix, "MSI-X", pci::kMsixPba + 4, kMsixOp));
  const unsigned control = read16(config, cap.offset + pci::kMsixControl).value_or(0);
  const std::uint32_t table = read32(config, cap.offset + pci::kMsixTable).value_or(0);
  const std::uint32_t pba = read32(config, cap.offset + pci::kMsixPba).value_or(0);
  MsixCap msix;
  msix.offset = cap.offset;
  msix.table_size = (control & 0x7ffU) + 1;
  msix.function_mask = (control & (1U << 14)) != 0;
  msix.enabled = (control & (1U << 15)) != 0;
  msix.table_bar = table & 0x7U;
  msix.table_offset = table & ~std::uint32_t{0x7};
  msix.pba_bar = pba & 0x7U;
  msix.pba_offset = pba & ~std::uint32_t{0x7};
  VFE_TRY(check_bir(msix.table_bar, "table", cap.offset));
  VFE_TRY(check_bir(msix.pba_bar, "PBA", cap.offset));
  return msix;
}

std::string describe(const Capability& cap) {
  const auto names = cap.extended ? std::span<const CapName>(kExtendedNames)
                                  : std::span<const CapName>(kStandardNames);
  const auto it =
      std::find_if(names.begin(), names.end(), [&](const CapName& n) { return n.id == cap.id; });
  if (it != names.end()) {
    return cap.extended ? fmt::format("{} (ext)", it->name) : std::string(it->name);
  }
  return cap.extended ? fmt::format("cap {:#06x} (ext)", cap.id)
                      : fmt::format("cap {:#04x}", cap.id);
}

}  // namespace vfe::mmio
