#pragma once
/// \file
/// The test frames of the loopback traffic (`Loopback`, `nic_loopback`, `vfio-bench nic`): an
/// Ethernet frame whose payload carries a run ID, a sequence number, its own length, a send time
/// and a checksum over everything else, so the receiver can tell lost, duplicated, reordered,
/// corrupted and foreign frames apart. Pure functions; no device.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace vfe::e1000e {

using MacAddress = std::array<std::uint8_t, 6>;

/// IEEE 802 "local experimental" EtherType 1: never a real protocol on the wire.
inline constexpr std::uint16_t kLoopbackEtherType = 0x88b5;
/// Ethernet header plus the loopback header; the smallest loopback frame.
inline constexpr std::uint32_t kLoopbackHeaderBytes = 14 + 40;

struct LoopbackFrame {
  MacAddress dst{};
  MacAddress src{};
  std::uint64_t run_id = 0;
  std::uint64_t seq = 0;
  std::uint64_t sent_ns = 0;  ///< sender's clock (for latency); any value
  std::uint32_t length = 0;   ///< whole frame without FCS, kLoopbackHeaderBytes..buffer size
};

/// Writes `f` into `out[0, f.length)`; the payload after the header is a pattern derived from
/// `seq`. Returns false (writing nothing) when `f.length` is below the header or above `out`.
[[nodiscard]] bool write_loopback_frame(std::span<std::byte> out, const LoopbackFrame& f) noexcept;

enum class FrameVerdict {
  ok,       ///< a frame of this run, intact
  foreign,  ///< not a loopback frame of this run (another EtherType, magic or run ID)
  corrupt,  ///< a frame of this run whose length or checksum does not match
};

struct FrameCheck {
  FrameVerdict verdict = FrameVerdict::foreign;
  std::uint64_t seq = 0;      ///< valid when ok
  std::uint64_t sent_ns = 0;  ///< valid when ok
};

/// Checks a received frame against run `run_id`. Reads only inside `frame`.
[[nodiscard]] FrameCheck check_loopback_frame(std::span<const std::byte> frame, std::uint64_t run_id) noexcept;

/// The length of frame `seq` when a run cycles through [min, max] (a fixed hash of `seq`, so the
/// receiver can recompute it).
[[nodiscard]] std::uint32_t loopback_frame_length(std::uint64_t seq, std::uint32_t min, std::uint32_t max) noexcept;

}  // namespace vfe::e1000e
