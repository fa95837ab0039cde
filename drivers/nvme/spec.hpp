#pragma once
/// \file
/// Facts from the NVM Express Base Specification 1.4 that the driver needs: controller registers
/// (§3.1), the submission and completion queue entry layouts (§4.2, §4.6), and the opcodes of the
/// admin (§5) and NVM (NVM Command Set §6) commands it issues. Plain data; no behaviour.

#include <cstddef>
#include <cstdint>

namespace vfe::nvme {

/// §3.1 controller registers, offsets into BAR0.
namespace reg {
inline constexpr std::uint64_t kCap = 0x00;    ///< controller capabilities (64-bit)
inline constexpr std::uint64_t kVs = 0x08;     ///< version
inline constexpr std::uint64_t kIntms = 0x0c;  ///< interrupt mask set (pin/MSI only)
inline constexpr std::uint64_t kCc = 0x14;     ///< controller configuration
inline constexpr std::uint64_t kCsts = 0x1c;   ///< controller status
inline constexpr std::uint64_t kAqa = 0x24;    ///< admin queue attributes
inline constexpr std::uint64_t kAsq = 0x28;    ///< admin submission queue base (64-bit)
inline constexpr std::uint64_t kAcq = 0x30;    ///< admin completion queue base (64-bit)
inline constexpr std::uint64_t kDoorbells = 0x1000;  ///< §3.1.24: SQ y tail at 0x1000 + 2y*stride
}  // namespace reg

/// §3.1.1 CAP fields.
struct Cap {
  std::uint64_t raw;
  [[nodiscard]] constexpr std::uint32_t mqes() const noexcept { return (raw & 0xffff) + 1; }  ///< max entries
  [[nodiscard]] constexpr bool cqr() const noexcept { return ((raw >> 16) & 1) != 0; }  ///< contiguous queues
  [[nodiscard]] constexpr std::uint32_t timeout_ms() const noexcept {
    return static_cast<std::uint32_t>((raw >> 24) & 0xff) * 500;  ///< CAP.TO in 500 ms units
  }
  [[nodiscard]] constexpr std::uint32_t doorbell_stride() const noexcept {
    return 4U << ((raw >> 32) & 0xf);  ///< bytes between doorbells (4 << DSTRD)
  }
  [[nodiscard]] constexpr bool nvm_command_set() const noexcept { return ((raw >> 37) & 1) != 0; }
  [[nodiscard]] constexpr std::uint32_t mps_min() const noexcept { return 12 + ((raw >> 48) & 0xf); }  ///< log2 bytes
  [[nodiscard]] constexpr std::uint32_t mps_max() const noexcept { return 12 + ((raw >> 52) & 0xf); }  ///< log2 bytes
};

/// §3.1.5 CC and §3.1.6 CSTS bits.
namespace cc {
inline constexpr std::uint32_t kEnable = 1U << 0;
inline constexpr std::uint32_t kShnNormal = 1U << 14;  ///< SHN = 01b: normal shutdown
inline constexpr std::uint32_t kShnMask = 3U << 14;
[[nodiscard]] constexpr std::uint32_t mps(std::uint32_t page_shift) noexcept { return (page_shift - 12) << 7; }
[[nodiscard]] constexpr std::uint32_t iosqes(std::uint32_t log2) noexcept { return log2 << 16; }
[[nodiscard]] constexpr std::uint32_t iocqes(std::uint32_t log2) noexcept { return log2 << 20; }
}  // namespace cc
namespace csts {
inline constexpr std::uint32_t kReady = 1U << 0;
inline constexpr std::uint32_t kFatal = 1U << 1;  ///< CFS: controller fatal status
inline constexpr std::uint32_t kShstMask = 3U << 2;
inline constexpr std::uint32_t kShstComplete = 2U << 2;
}  // namespace csts

/// §4.2 submission queue entry (64 bytes), common layout.
struct Sqe {
  std::uint8_t opcode;
  std::uint8_t flags;  ///< FUSE (1:0), PSDT (7:6): 0 = PRPs
  std::uint16_t cid;
  std::uint32_t nsid;
  std::uint32_t cdw2;
  std::uint32_t cdw3;
  std::uint64_t mptr;
  std::uint64_t prp1;
  std::uint64_t prp2;
  std::uint32_t cdw10;
  std::uint32_t cdw11;
  std::uint32_t cdw12;
  std::uint32_t cdw13;
  std::uint32_t cdw14;
  std::uint32_t cdw15;
};
static_assert(sizeof(Sqe) == 64);

/// §4.6 completion queue entry (16 bytes).
struct Cqe {
  std::uint32_t dw0;   ///< command specific
  std::uint32_t dw1;
  std::uint16_t sqhd;  ///< SQ head pointer: entries up to here may be reused
  std::uint16_t sqid;
  std::uint16_t cid;
  std::uint16_t status;  ///< bit 0 phase tag, bits 15:1 status field (§4.6.1)
};
static_assert(sizeof(Cqe) == 16);
inline constexpr std::uint32_t kSqeShift = 6;  ///< log2(sizeof(Sqe)) for CC.IOSQES
inline constexpr std::uint32_t kCqeShift = 4;  ///< log2(sizeof(Cqe)) for CC.IOCQES

/// §5 admin command opcodes.
namespace admin {
inline constexpr std::uint8_t kDeleteSq = 0x00;
inline constexpr std::uint8_t kCreateSq = 0x01;
inline constexpr std::uint8_t kGetLogPage = 0x02;
inline constexpr std::uint8_t kDeleteCq = 0x04;
inline constexpr std::uint8_t kCreateCq = 0x05;
inline constexpr std::uint8_t kIdentify = 0x06;
inline constexpr std::uint8_t kAbort = 0x08;
inline constexpr std::uint8_t kSetFeatures = 0x09;
inline constexpr std::uint8_t kGetFeatures = 0x0a;
inline constexpr std::uint8_t kAsyncEventRequest = 0x0c;
inline constexpr std::uint8_t kDoorbellBufferConfig = 0x7c;  ///< §5.8 (NVMe 1.3): shadow doorbells
}  // namespace admin

/// §5.15 Identify CNS values.
namespace cns {
inline constexpr std::uint32_t kNamespace = 0x00;
inline constexpr std::uint32_t kController = 0x01;
inline constexpr std::uint32_t kActiveNamespaces = 0x02;
inline constexpr std::uint32_t kNamespaceDescriptors = 0x03;  ///< Namespace Identification Descriptors
inline constexpr std::uint8_t kIoCommandSetNamespace = 0x05;   ///< NVMe 2.0: I/O command set specific
inline constexpr std::uint8_t kIoCommandSetController = 0x06;  ///< NVMe 2.0: I/O command set specific
}  // namespace cns

/// §5.21.1 feature identifiers.
namespace feature {
inline constexpr std::uint8_t kTemperatureThreshold = 0x04;
inline constexpr std::uint8_t kVolatileWriteCache = 0x06;
inline constexpr std::uint8_t kNumberOfQueues = 0x07;
inline constexpr std::uint8_t kHostMemoryBuffer = 0x0d;
inline constexpr std::uint8_t kTimestamp = 0x0e;
inline constexpr std::uint8_t kAsyncEventConfig = 0x0b;
}  // namespace feature

/// §5.14.1 log page identifiers.
namespace log_page {
inline constexpr std::uint8_t kError = 0x01;
inline constexpr std::uint8_t kHealth = 0x02;  ///< SMART / Health Information
inline constexpr std::uint8_t kFirmwareSlot = 0x03;
inline constexpr std::uint8_t kChangedNamespaces = 0x04;
}  // namespace log_page

/// NVM Command Set §6 I/O opcodes.
enum class IoOpcode : std::uint8_t {
  flush = 0x00,
  write = 0x01,
  read = 0x02,
  compare = 0x05,  ///< NVM Command Set §3.2.1 (NVMe 1.4 §6.3): the blocks equal the data, or a failure
  write_zeroes = 0x08,
  dataset_management = 0x09,  ///< NVM Command Set §3.2.3 (NVMe 1.4 §6.7): here, deallocate
};

/// One range of a Dataset Management command (NVMe 1.4 figure 364): `blocks` from `lba`.
struct DsmRange {
  std::uint32_t attributes = 0;  ///< context attributes (hints); 0: none
  std::uint32_t blocks = 0;      ///< length in logical blocks (not 0's based)
  std::uint64_t lba = 0;         ///< starting LBA
};
static_assert(sizeof(DsmRange) == 16);
/// A Dataset Management command carries 1 to 256 ranges (Command Dword 10 NR, 0's based).
inline constexpr std::size_t kMaxDsmRanges = 256;

/// Identify data is one 4 KiB page.
inline constexpr std::size_t kIdentifySize = 4096;

}  // namespace vfe::nvme
