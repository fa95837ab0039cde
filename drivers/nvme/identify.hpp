#pragma once
/// \file
/// Decoding of Identify data (NVMe 1.4 §5.15.2): the controller data structure (CNS 01h), the
/// namespace data structure (CNS 00h) and the active namespace ID list (CNS 02h). Pure functions
/// over the 4096-byte page the controller wrote; they trust nothing in it.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace vfe::nvme {

/// The parts of Identify Controller (figure 247) the driver uses.
struct ControllerIdentity {
  std::uint16_t vendor_id = 0;            ///< VID, bytes 1:0
  std::uint16_t subsystem_vendor_id = 0;  ///< SSVID, bytes 3:2
  std::string serial;                     ///< SN, bytes 23:4, ASCII, trailing spaces removed
  std::string model;                      ///< MN, bytes 63:24, trailing spaces removed
  std::string firmware;                   ///< FR, bytes 71:64, trailing spaces removed
  std::uint8_t mdts = 0;                  ///< byte 77: max transfer 2^mdts min pages; 0 = no limit
  std::uint16_t controller_id = 0;        ///< CNTLID, bytes 79:78
  std::uint32_t version = 0;              ///< VER, bytes 83:80 (0 before NVMe 1.2)
  std::uint32_t oaes = 0;                 ///< OAES, bytes 95:92: optional asynchronous events
  std::uint16_t oacs = 0;                 ///< OACS, bytes 257:256: optional admin commands
  std::uint8_t aerl = 0;                  ///< AERL, byte 259: event requests at once, 0's based
  std::uint8_t frmw = 0;                  ///< FRMW, byte 260: firmware slots (3:1), slot 1 read-only (0)
  std::uint8_t lpa = 0;                   ///< LPA, byte 261: log page attributes
  std::uint8_t elpe = 0;                  ///< ELPE, byte 262: error log entries kept, 0's based
  std::uint8_t sqes = 0;                  ///< byte 512: required (3:0) / max (7:4) log2 SQE size
  std::uint8_t cqes = 0;                  ///< byte 513: same for CQEs
  std::uint16_t max_cmd = 0;              ///< MAXCMD, bytes 515:514 (0: not reported)
  std::uint32_t namespace_count = 0;      ///< NN, bytes 519:516
  std::uint16_t oncs = 0;                 ///< ONCS, bytes 521:520: optional NVM commands
  std::uint8_t vwc = 0;                   ///< VWC, byte 525: volatile write cache present (bit 0)
  std::uint32_t sgls = 0;                 ///< SGLS, bytes 539:536: SGL support

  /// VWC bit 0: the controller has a volatile write cache, so an acknowledged write is on the
  /// medium only after a Flush, a write with FUA, or a normal shutdown.
  [[nodiscard]] bool has_volatile_write_cache() const noexcept { return (vwc & 1U) != 0; }
  /// ONCS bit 0: the Compare command is supported.
  [[nodiscard]] bool supports_compare() const noexcept { return (oncs & 1U) != 0; }
  /// ONCS bit 2: the Dataset Management command (deallocate) is supported.
  [[nodiscard]] bool supports_dataset_management() const noexcept { return (oncs & (1U << 2)) != 0; }
  /// ONCS bit 3: the Write Zeroes command is supported.
  [[nodiscard]] bool supports_write_zeroes() const noexcept { return (oncs & (1U << 3)) != 0; }
  /// ONCS bit 7: the Verify command is supported (NVMe 1.4).
  [[nodiscard]] bool supports_verify() const noexcept { return (oncs & (1U << 7)) != 0; }
  /// OACS bit 8: the Doorbell Buffer Config command (shadow doorbells) is supported.
  [[nodiscard]] bool supports_doorbell_buffer_config() const noexcept { return (oacs & (1U << 8)) != 0; }
  /// SGLS bits 1:0 01b or 10b: the NVM command set takes SGLs (01b: any alignment, 10b: dword);
  /// 11b is reserved, and is taken as no SGL support (as the I/O queues do).
  [[nodiscard]] bool supports_sgls() const noexcept { return (sgls & 3U) == 1 || (sgls & 3U) == 2; }
  /// The largest transfer in bytes for a minimum page size of 2^`min_page_shift`; 0: no limit.
  [[nodiscard]] std::uint64_t max_transfer_bytes(std::uint32_t min_page_shift) const noexcept;
};

/// Decodes Identify Controller. Fails when `data` is shorter than 4096 bytes, or when the
/// controller's required SQE/CQE sizes are not the 64/16 bytes this driver uses.
[[nodiscard]] Result<ControllerIdentity> parse_identify_controller(std::span<const std::uint8_t> data);

/// The NVM command set's limits from the I/O Command Set specific Identify Controller data
/// structure (CNS 06h, CSI 00h; NVM Command Set Specification 1.0 figure 97). Each size is
/// log2 in units of the minimum memory page size (CAP.MPSMIN), 0 = no limit, unless said.
struct NvmControllerLimits {
  std::uint8_t vsl = 0;     ///< byte 0: Verify Size Limit
  std::uint8_t wzsl = 0;    ///< byte 1: Write Zeroes Size Limit
  std::uint8_t wusl = 0;    ///< byte 2: Write Uncorrectable Size Limit
  std::uint8_t dmrl = 0;    ///< byte 3: Dataset Management Ranges Limit (ranges; 0: no limit but 256)
  std::uint32_t dmrsl = 0;  ///< bytes 7:4: DM Range Size Limit, in logical blocks (0: no limit)
  std::uint64_t dmsl = 0;   ///< bytes 15:8: DM Size Limit, in logical blocks (0: no limit)
};

/// Decodes CNS 06h for the NVM command set. Fails when `data` is shorter than 4096 bytes.
[[nodiscard]] Result<NvmControllerLimits> parse_identify_nvm_controller(std::span<const std::uint8_t> data);

/// One LBA format (figure 251).
struct LbaFormat {
  std::uint16_t metadata_bytes = 0;  ///< MS
  std::uint8_t data_shift = 0;       ///< LBADS: log2 of the block size (>= 9 when in use)
  std::uint8_t relative_performance = 0;  ///< RP
};

/// The parts of Identify Namespace (figure 249) the driver uses.
struct NamespaceInfo {
  std::uint32_t nsid = 0;
  std::uint64_t size_blocks = 0;      ///< NSZE
  std::uint64_t capacity_blocks = 0;  ///< NCAP
  std::uint64_t used_blocks = 0;      ///< NUSE
  std::uint8_t format_index = 0;      ///< FLBAS bits 3:0
  std::uint32_t block_size = 0;       ///< 2^LBADS of the format in use
  std::uint16_t metadata_bytes = 0;   ///< MS of the format in use
  bool extended_lba = false;          ///< FLBAS bit 4: metadata inline with the data
  std::uint8_t dps = 0;               ///< DPS, byte 29, as the controller says it
  std::uint8_t pi_type = 0;           ///< DPS bits 2:0: end-to-end protection type 1, 2 or 3; 0: none
  bool pi_first = false;              ///< DPS bit 3: the protection information opens the metadata
  /// The protection information format (NVMe 2.0 ELBAF PIF): 0 the 16-bit guard, 1 and 2 the
  /// 32- and 64-bit guards, which the driver does not generate or check for.
  std::uint8_t pi_format = 0;
  std::uint8_t dlfeat = 0;            ///< DLFEAT, byte 33: what a deallocated block reads as
  std::vector<LbaFormat> formats;     ///< NLBAF + 1 entries

  [[nodiscard]] std::uint64_t size_bytes() const noexcept { return size_blocks * block_size; }
  /// A command with PRACT moves no metadata where it is only the protection information (MS 8,
  /// or 16 for the 32- and 64-bit guards): the controller generates it on a write and checks and
  /// strips it on a read.
  [[nodiscard]] bool pract_strips(bool pract) const noexcept {
    return pract && pi_type != 0 && metadata_bytes == (pi_format == 0 ? 8 : 16);
  }
  /// Bytes a block takes in a command's data: its block size, and its metadata where that is
  /// inline (extended LBAs) and moves.
  [[nodiscard]] std::uint32_t data_unit(bool pract) const noexcept {
    return block_size + (extended_lba && !pract_strips(pract) ? metadata_bytes : 0U);
  }
  /// Bytes a block takes in a command's separate metadata buffer (MPTR): 0 when there is none.
  [[nodiscard]] std::uint32_t metadata_unit(bool pract) const noexcept {
    return extended_lba || pract_strips(pract) ? 0U : metadata_bytes;
  }
  /// DLFEAT bits 2:0 = 001b: a deallocated block reads as zeroes (else: not said, or FFh).
  [[nodiscard]] bool deallocated_reads_zero() const noexcept { return (dlfeat & 0x7U) == 1; }
};

/// Decodes Identify Namespace for `nsid`. Fails when `data` is short, the namespace is inactive
/// (NSZE 0), NLBAF or the format index is out of range (more than 16 formats), or the block
/// size of the format in use is below 512 bytes or above 64 KiB.
[[nodiscard]] Result<NamespaceInfo> parse_identify_namespace(std::uint32_t nsid,
                                                             std::span<const std::uint8_t> data);

/// The protection information format (PIF, bits 8:7 of ELBAF) of LBA format `format_index` in
/// NVMe 2.0's Identify Namespace for the NVM command set (CNS 05h, CSI 00h; ELBAF from byte 12):
/// 0 for the 16-bit guard, 1 for 32-bit, 2 for 64-bit, 3 for a qualified format; 0 when `data` is
/// short.
[[nodiscard]] std::uint8_t parse_pi_format(std::span<const std::uint8_t> data, std::uint8_t format_index) noexcept;

/// Decodes the active namespace ID list (CNS 02h): the IDs before the first zero, at most 1024.
/// Fails when `data` is short or the IDs are not strictly increasing (the spec orders them), or
/// an ID is 0xFFFFFFFF (the broadcast value).
[[nodiscard]] Result<std::vector<std::uint32_t>> parse_active_namespace_list(
    std::span<const std::uint8_t> data);

}  // namespace vfe::nvme
