#pragma once
// What the NVMe data-integrity test writes, shared by the guest test (nvme_test.cpp) and the
// host-side check of the disk images after the guest powered off (disk_check.cpp): regions
// spread over the 64 MiB namespace, sized to need one page, two pages, a PRP list, and more than
// MDTS (QEMU: 512 KiB), some starting mid-page in their buffer. Other tests write only inside
// the scratch band, which no region overlaps.

#include <array>
#include <cstdint>

namespace vfe::vmtest {

struct PatternRegion {
  std::uint64_t offset;      // byte offset on the disk (a multiple of 512)
  std::uint64_t length;      // bytes (a multiple of 512)
  std::uint64_t buffer_lead; // where the data starts in its DMA buffer (dword aligned)
  unsigned segments;         // how many DMA buffers the data is scattered over
};

inline constexpr std::uint64_t kMiB = 1ULL << 20;
inline constexpr std::uint64_t kDiskBytes = 64 * kMiB;  // tests/vm/run.sh makes 64 MiB images
inline constexpr std::uint64_t kScratchBegin = 40 * kMiB, kScratchEnd = 56 * kMiB;
// Controller 0's second namespace (tests/vm/run.sh): 1 MiB behind QEMU's blkdebug driver, which
// fails every read of block kFaultyLba with EIO (QEMU's controller: Unrecovered Read Error).
inline constexpr std::uint32_t kFaultyNsid = 2;
inline constexpr std::uint64_t kFaultyNsBytes = 1 * kMiB;
inline constexpr std::uint64_t kFaultyLba = 1000;
// Controller 0's third namespace (tests/vm/run.sh): 4 MiB served by nbdkit, whose requests the
// host holds for a while when the guest prints "VFE-STALL <ms>" (a stalled command).
inline constexpr std::uint32_t kStallNsid = 3;
inline constexpr std::uint64_t kStallNsBytes = 4 * kMiB;

// Controller 0's fourth namespace (tests/vm/run.sh): 64 MiB that vfe-ublk serves as a block
// device to fio and a filesystem (tests/vm/guest/ublk_check.sh); nothing else writes it. Last,
// the check writes the pattern of "controller" kUblkPatternIndex to kUblkRegion through the block
// device (`vfe_disk_check --ublk-pattern` makes it), then reads it back through this library's
// driver (UblkReadback in vfe_vm_tests), and the host finds it in the disk image.
inline constexpr std::uint32_t kUblkNsid = 4;
inline constexpr unsigned kUblkPatternIndex = 4;

// Controller 0's namespaces formatted with metadata (tests/vm/run.sh), 4 MiB images of 512-byte
// blocks: 8 bytes inline (extended LBAs) with type 1 protection; 8 in a separate buffer with
// type 2; 16 in a separate buffer, protection information first, type 3; 16 separate, type 1 in
// NVMe 2.0's 64-bit guard format.
inline constexpr std::uint32_t kPiType1Nsid = 5;
inline constexpr std::uint32_t kPiType2Nsid = 6;
inline constexpr std::uint32_t kPiType3Nsid = 7;
inline constexpr std::uint32_t kPi64Nsid = 8;

inline constexpr std::array<PatternRegion, 8> kPatternRegions{{
    {0, 4096, 0, 1},                        // one page
    {1 * kMiB + 512, 512, 512, 1},          // one block, mid-page in its buffer
    {4 * kMiB, 8192, 0, 1},                 // two pages: PRP2 is the second page
    {8 * kMiB, 64 * 1024 + 512, 1024, 1},   // a PRP list, and a first page that starts mid-page
    {16 * kMiB, 1536 * 1024, 0, 1},         // three times MDTS: split into commands
    {24 * kMiB + 4096, 3 * kMiB, 0, 3},     // above MDTS, scattered over three buffers
    {33 * kMiB, 200 * 1024, 2048, 1},       // a PRP list again, uneven size
    {kDiskBytes - 8192, 8192, 0, 1},        // the last blocks of the namespace
}};

inline constexpr PatternRegion kUblkRegion{40 * kMiB, 8 * kMiB, 0, 1};

// The 64-bit word at disk offset `offset` (8-byte aligned) of controller `index`.
[[nodiscard]] constexpr std::uint64_t pattern_word(unsigned index, std::uint64_t offset) noexcept {
  std::uint64_t z = (offset / 8) ^ (std::uint64_t{index + 1} << 56) ^ 0x5646455f4e564d45ULL;  // "VFE_NVME"
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;  // splitmix64's finaliser
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace vfe::vmtest
