#pragma once
/// \file
/// The ublk ABI (Linux include/uapi/linux/ublk_cmd.h) as this code uses it, defined here:
/// Debian 12's headers are 6.1's and lack the ioctl-encoded opcodes. Layouts are checked by size
/// and offset; they are the same from 6.1 to 6.12.

#include <linux/ioctl.h>

#include <cstddef>
#include <cstdint>

namespace vfe::ublk::abi {

/// Control commands on /dev/ublk-control: the legacy number (all kernels up to 6.12 with
/// CONFIG_BLKDEV_UBLK_LEGACY_OPCODES) and the ioctl encoding (6.4 and later).
enum CtrlOp : std::uint32_t {
  kGetDevInfo = 0x02,
  kAddDev = 0x04,
  kDelDev = 0x05,
  kStartDev = 0x06,
  kStopDev = 0x07,
  kSetParams = 0x08,
  kGetParams = 0x09,
  kStartUserRecovery = 0x10,
  kEndUserRecovery = 0x11,
};
/// I/O commands on /dev/ublkcN.
enum IoOp : std::uint32_t {
  kFetchReq = 0x20,
  kCommitAndFetchReq = 0x21,
};

/// struct ublksrv_ctrl_cmd: the payload of a control command (in a 128-byte SQE).
struct CtrlCmd {
  std::uint32_t dev_id;
  std::uint16_t queue_id;  ///< 0xffff for ADD_DEV
  std::uint16_t len;       ///< bytes at addr
  std::uint64_t addr;
  std::uint64_t data0;
  std::uint64_t data1;  ///< 6.12: dev_path_len, padding
};
static_assert(sizeof(CtrlCmd) == 32);

/// struct ublksrv_ctrl_dev_info.
struct DevInfo {
  std::uint16_t nr_hw_queues;
  std::uint16_t queue_depth;
  std::uint16_t state;
  std::uint16_t pad0;
  std::uint32_t max_io_buf_bytes;
  std::uint32_t dev_id;
  std::int32_t ublksrv_pid;
  std::uint32_t pad1;
  std::uint64_t flags;
  std::uint64_t ublksrv_flags;
  std::uint64_t reserved[3];
};
static_assert(sizeof(DevInfo) == 64 && offsetof(DevInfo, flags) == 24);

/// Device states (DevInfo::state).
inline constexpr std::uint16_t kStateDead = 0, kStateLive = 1, kStateQuiesced = 2;

/// DevInfo::flags.
inline constexpr std::uint64_t kFlagUserRecovery = 1ULL << 3;
/// With kFlagUserRecovery: requests the dead server held go to the next one (else they fail).
inline constexpr std::uint64_t kFlagUserRecoveryReissue = 1ULL << 4;
inline constexpr std::uint64_t kFlagCmdIoctlEncode = 1ULL << 6;

/// struct ublksrv_io_cmd: the payload of an I/O command (fits a 64-byte SQE).
struct IoCmd {
  std::uint16_t q_id;
  std::uint16_t tag;
  std::int32_t result;  ///< COMMIT: bytes done, or -errno
  std::uint64_t addr;   ///< the buffer for this tag's (next) request
};
static_assert(sizeof(IoCmd) == 16);

/// struct ublksrv_io_desc: the request on a tag, in the read-only array mmap'd from /dev/ublkcN.
struct IoDesc {
  std::uint32_t op_flags;  ///< bits 7:0 the operation, above them flags
  std::uint32_t nr_sectors;
  std::uint64_t start_sector;  ///< 512-byte sectors, whatever the block size
  std::uint64_t addr;
};
static_assert(sizeof(IoDesc) == 24);

inline constexpr std::uint8_t kOpRead = 0, kOpWrite = 1, kOpFlush = 2, kOpDiscard = 3, kOpWriteZeroes = 5;
inline constexpr std::uint32_t kIoFlagFua = 1U << 13;
inline constexpr std::uint32_t kIoFlagNoUnmap = 1U << 15;

/// Results of a FETCH or COMMIT command's CQE: a request is there, or the device is going away.
inline constexpr int kIoResOk = 0;
inline constexpr int kIoResAbort = -19;  // -ENODEV

/// Where queue q's descriptor array is mmap'd in /dev/ublkcN: kCmdBufOffset + q * kDescStride
/// (a stride has room for the deepest queue, 4096 tags; the mapping is this queue's size).
inline constexpr std::uint64_t kCmdBufOffset = 0;
inline constexpr std::uint64_t kMaxQueueDepth = 4096;
inline constexpr std::uint64_t kDescStride = (kMaxQueueDepth * sizeof(IoDesc) + 4095) & ~std::uint64_t{4095};

/// struct ublk_param_basic.
struct ParamBasic {
  std::uint32_t attrs;
  std::uint8_t logical_bs_shift;
  std::uint8_t physical_bs_shift;
  std::uint8_t io_opt_shift;
  std::uint8_t io_min_shift;
  std::uint32_t max_sectors;
  std::uint32_t chunk_sectors;
  std::uint64_t dev_sectors;
  std::uint64_t virt_boundary_mask;
};
static_assert(sizeof(ParamBasic) == 32);
inline constexpr std::uint32_t kAttrVolatileCache = 1U << 2, kAttrFua = 1U << 3;

/// struct ublk_param_discard.
struct ParamDiscard {
  std::uint32_t discard_alignment;
  std::uint32_t discard_granularity;
  std::uint32_t max_discard_sectors;
  std::uint32_t max_write_zeroes_sectors;
  std::uint16_t max_discard_segments;
  std::uint16_t reserved0;
};
static_assert(sizeof(ParamDiscard) == 20);

/// struct ublk_params as 6.1 has it (6.12 appends read-only or zoned parts and takes a shorter
/// len as it is).
struct Params {
  std::uint32_t len;
  std::uint32_t types;
  ParamBasic basic;
  ParamDiscard discard;
};
static_assert(sizeof(Params) == 64 && offsetof(Params, discard) == 40);
inline constexpr std::uint32_t kParamBasic = 1U << 0, kParamDiscard = 1U << 1;

/// The ioctl encoding of a control command (_IOWR('u', nr, 32-byte struct); the GETs: _IOR).
constexpr std::uint32_t ctrl_ioctl(CtrlOp op) noexcept {
  return op == kGetDevInfo || op == kGetParams ? _IOR('u', op, CtrlCmd) : _IOWR('u', op, CtrlCmd);
}
/// The ioctl encoding of an I/O command (_IOWR('u', nr, 16-byte struct)).
constexpr std::uint32_t io_ioctl(IoOp op) noexcept { return _IOWR('u', op, IoCmd); }
static_assert(ctrl_ioctl(kAddDev) == 0xc0207504 && ctrl_ioctl(kGetParams) == 0x80207509 &&
              ctrl_ioctl(kStartUserRecovery) == 0xc0207510 && io_ioctl(kFetchReq) == 0xc0107520);

}  // namespace vfe::ublk::abi
