#pragma once
/// \file
/// PCI capability parsing on a snapshot of a function's configuration space: the standard and
/// extended capability walks and the MSI / MSI-X decoders.
///
/// Everything here is pure: it reads a byte span the caller filled (through VFIO) and never touches
/// a device. The bytes come from a device vfio-engine does not trust, so every pointer is checked
/// against the snapshot and against the chain rules before it is followed: a malformed or cyclic
/// list is an `EINVAL` error, never an out-of-bounds read or an endless loop.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace vfe::mmio {

/// Register offsets, bits and capability IDs of PCI configuration space, as the PCI Local Bus 3.0
/// and PCI Express Base specifications define them. Offsets are from the start of the function's
/// configuration space.
namespace pci {

// Sizes of the spaces.
/// The predefined header shared by header types 0 and 1; capabilities live above it.
inline constexpr std::uint16_t kHeaderSize = 0x40;
/// PCI-compatible configuration space: the header plus the standard capabilities.
inline constexpr std::uint16_t kConfigSize = 0x100;
/// PCI Express extended configuration space; its capabilities start at kConfigSize.
inline constexpr std::uint16_t kExtConfigSize = 0x1000;

// Header registers (type 0 and type 1 layouts agree on all of these).
inline constexpr std::uint16_t kVendorId = 0x00;  ///< 16 bits; 0xffff: no function answered
inline constexpr std::uint16_t kDeviceId = 0x02;  ///< 16 bits
inline constexpr std::uint16_t kCommand = 0x04;   ///< 16 bits
inline constexpr std::uint16_t kCommandIoSpace = 1U << 0;
inline constexpr std::uint16_t kCommandMemorySpace = 1U << 1;
inline constexpr std::uint16_t kCommandBusMaster = 1U << 2;  ///< vfio-pci leaves it to userspace
inline constexpr std::uint16_t kCommandIntxDisable = 1U << 10;
inline constexpr std::uint16_t kStatus = 0x06;               ///< 16 bits
inline constexpr std::uint16_t kStatusCapList = 1U << 4;     ///< kCapabilitiesPointer is valid
inline constexpr std::uint16_t kHeaderType = 0x0e;           ///< 8 bits
inline constexpr std::uint8_t kHeaderTypeLayoutMask = 0x7f;  ///< bit 7 is "multi-function"
inline constexpr std::uint8_t kHeaderTypeNormal = 0x00;      ///< type 0: an endpoint
inline constexpr std::uint8_t kHeaderTypeBridge = 0x01;      ///< type 1: PCI-to-PCI bridge
inline constexpr std::uint16_t kCapabilitiesPointer = 0x34;  ///< 8 bits, types 0 and 1
/// Standard capability pointers are dword aligned; the low two bits are reserved and software must
/// mask them (PCI Local Bus 3.0 §6.7).
inline constexpr std::uint8_t kCapPointerMask = 0xfc;

// Standard capability IDs (the 8-bit ID at a capability's offset 0).
inline constexpr std::uint16_t kCapPm = 0x01;      ///< PCI Power Management
inline constexpr std::uint16_t kCapVpd = 0x03;     ///< Vital Product Data
inline constexpr std::uint16_t kCapMsi = 0x05;     ///< Message Signaled Interrupts
inline constexpr std::uint16_t kCapVendor = 0x09;  ///< vendor specific
inline constexpr std::uint16_t kCapPcie = 0x10;    ///< PCI Express capability structure
inline constexpr std::uint16_t kCapMsix = 0x11;    ///< MSI-X
inline constexpr std::uint16_t kCapAf = 0x13;      ///< Advanced Features (FLR for PCI functions)

// Extended capability IDs (bits 15:0 of the extended capability header).
inline constexpr std::uint16_t kExtCapAer = 0x0001;     ///< Advanced Error Reporting
inline constexpr std::uint16_t kExtCapDsn = 0x0003;     ///< Device Serial Number
inline constexpr std::uint16_t kExtCapVendor = 0x000b;  ///< vendor-specific (VSEC)
inline constexpr std::uint16_t kExtCapAcs = 0x000d;     ///< Access Control Services
inline constexpr std::uint16_t kExtCapAri = 0x000e;     ///< Alternative Routing-ID
inline constexpr std::uint16_t kExtCapAts = 0x000f;     ///< Address Translation Services
inline constexpr std::uint16_t kExtCapSriov = 0x0010;   ///< Single Root I/O Virtualization
inline constexpr std::uint16_t kExtCapPri = 0x0013;     ///< Page Request Interface
inline constexpr std::uint16_t kExtCapRebar = 0x0015;   ///< Resizable BAR
inline constexpr std::uint16_t kExtCapLtr = 0x0018;     ///< Latency Tolerance Reporting
inline constexpr std::uint16_t kExtCapPasid = 0x001b;   ///< Process Address Space ID
inline constexpr std::uint16_t kExtCapDvsec = 0x0023;   ///< designated vendor-specific

// Registers inside the MSI and MSI-X capabilities, relative to the capability's offset.
inline constexpr std::uint16_t kMsiControl = 0x02;   ///< 16 bits: Message Control
inline constexpr std::uint16_t kMsixControl = 0x02;  ///< 16 bits: Message Control
inline constexpr std::uint16_t kMsixTable = 0x04;    ///< 32 bits: Table Offset/Table BIR
inline constexpr std::uint16_t kMsixPba = 0x08;      ///< 32 bits: PBA Offset/PBA BIR

}  // namespace pci

/// One entry of a function's capability lists, as found in a config-space snapshot. Plain value.
struct Capability {
  std::uint16_t id = 0;      ///< 8-bit standard ID, or 16-bit extended ID
  std::uint16_t offset = 0;  ///< where its header sits in configuration space
  bool extended = false;     ///< true: PCIe extended capability (offset >= 0x100)
  std::uint8_t version = 0;  ///< extended only: the header's version field; 0 for standard

  friend bool operator==(const Capability&, const Capability&) = default;
};

/// Walks the capability lists of a config-space snapshot and returns every capability in chain
/// order: the standard list first, then the extended list.
///
/// `config` is the function's configuration space from offset 0: normally 256 bytes (conventional
/// PCI) or 4096 (PCIe). A shorter snapshot (at least the 64-byte header) is accepted and every
/// capability must then lie inside it; the extended list is walked only if the snapshot reaches
/// past 0x100. The standard list is followed only if the Status register says it exists; the
/// extended list is independent of that bit, and a header of 0 or 0xffffffff at 0x100 means it is
/// empty.
///
/// Guarantees: reads nothing outside `config`; terminates on any input. Errors (`EINVAL`, the
/// detail names the offending offset): a snapshot under 64 or over 4096 bytes, a vendor ID of
/// 0xffff (the function did not answer), a pointer into the header (below 0x40), an extended
/// pointer below 0x100, a capability that runs past the snapshot, a chain that visits an offset
/// twice. A CardBus or reserved header layout is `ENOTSUP`.
[[nodiscard]] Result<std::vector<Capability>> walk_capabilities(
    std::span<const std::uint8_t> config);

/// The first capability in `caps` with this `id` in the standard (`extended == false`) or the
/// extended list, or nullopt. Standard and extended IDs are separate namespaces (0x10 is PCI
/// Express in one and SR-IOV in the other), hence the flag.
[[nodiscard]] std::optional<Capability> find_capability(std::span<const Capability> caps,
                                                        std::uint16_t id, bool extended) noexcept;

/// The MSI capability's Message Control, decoded. Vector counts are numbers of vectors (1 to 32),
/// not the register's log2 encoding.
struct MsiCap {
  std::uint16_t offset = 0;               ///< of the capability header
  bool is_64bit = false;                  ///< the Message Address has an upper dword
  bool per_vector_mask = false;           ///< Mask Bits and Pending Bits registers exist
  unsigned multiple_message_capable = 1;  ///< vectors the function can use: 1, 2, 4, ..., 32
  unsigned multiple_message_enabled = 1;  ///< vectors software allotted: 1, 2, 4, ..., 32
  bool enabled = false;                   ///< MSI Enable
};

/// Decodes the MSI capability `cap` (an entry of `walk_capabilities(config)`) in `config`.
///
/// Guarantees: reads nothing outside `config`. Errors (`EINVAL`, naming the offset): `cap` is not a
/// standard MSI capability or the snapshot holds another ID there; the structure (10 or 14 bytes,
/// plus 10 with per-vector masking) runs past the snapshot or past 0x100; a reserved vector-count
/// encoding (above 32 vectors). An enabled count above the capable count is reported as found.
[[nodiscard]] Result<MsiCap> parse_msi(std::span<const std::uint8_t> config, const Capability& cap);

/// The MSI-X capability, decoded: where its vector table and pending-bit array live.
struct MsixCap {
  std::uint16_t offset = 0;        ///< of the capability header
  unsigned table_size = 1;         ///< number of table entries: 1 to 2048
  bool enabled = false;            ///< MSI-X Enable
  bool function_mask = false;      ///< all vectors masked regardless of their own mask bits
  unsigned table_bar = 0;          ///< BAR index (BIR) of the table: 0 to 5
  std::uint32_t table_offset = 0;  ///< byte offset of the table in that BAR (8-byte aligned)
  unsigned pba_bar = 0;            ///< BAR index (BIR) of the pending-bit array: 0 to 5
  std::uint32_t pba_offset = 0;    ///< byte offset of the PBA in that BAR (8-byte aligned)
};

/// Decodes the MSI-X capability `cap` (an entry of `walk_capabilities(config)`) in `config`.
///
/// Guarantees: reads nothing outside `config`. Errors (`EINVAL`, naming the offset): `cap` is not a
/// standard MSI-X capability or the snapshot holds another ID there; its 12 bytes run past the
/// snapshot or past 0x100; a table or PBA BIR of 6 or 7 (reserved: there are only six BARs).
/// Whether the table and PBA fit in their BARs is for the caller, who knows the BAR sizes.
[[nodiscard]] Result<MsixCap> parse_msix(std::span<const std::uint8_t> config,
                                         const Capability& cap);

/// A short name for logs: "MSI-X", "PCI Express", "AER (ext)"; unknown IDs as "cap 0x42" or
/// "cap 0x002a (ext)".
[[nodiscard]] std::string describe(const Capability& cap);

}  // namespace vfe::mmio
