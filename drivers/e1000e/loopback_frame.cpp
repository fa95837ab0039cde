#include "drivers/e1000e/loopback_frame.hpp"

#include <cstring>

namespace vfe::e1000e {
namespace {

// Payload header, after the 14-byte Ethernet header. All fields little-endian.
constexpr std::size_t kMagicAt = 14, kLengthAt = 18, kRunAt = 22, kSeqAt = 30, kTimeAt = 38, kSumAt = 46;
constexpr std::uint32_t kMagic = 0x4c454656;  // "VFEL"

template <class T>
void put(std::span<std::byte> out, std::size_t at, T v) noexcept {
  std::memcpy(out.data() + at, &v, sizeof v);
}

template <class T>
T get(std::span<const std::byte> in, std::size_t at) noexcept {
  T v;
  std::memcpy(&v, in.data() + at, sizeof v);
  return v;
}

// FNV-1a, 64 bit, over the frame with the checksum field skipped.
std::uint64_t checksum(std::span<const std::byte> frame) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < frame.size(); ++i) {
    if (i == kSumAt) {
      i += sizeof(std::uint64_t) - 1;
      continue;
    }
    h = (h ^ static_cast<std::uint8_t>(frame[i])) * 0x100000001b3ULL;
  }
  return h;
}

std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

bool write_loopback_frame(std::span<std::byte> out, const LoopbackFrame& f) noexcept {
  if (f.length < kLoopbackHeaderBytes || f.length > out.size()) {
    return false;
  }
  const std::span<std::byte> frame = out.first(f.length);
  std::memcpy(frame.data(), f.dst.data(), 6);
  std::memcpy(frame.data() + 6, f.src.data(), 6);
  frame[12] = static_cast<std::byte>(kLoopbackEtherType >> 8);  // network byte order
  frame[13] = static_cast<std::byte>(kLoopbackEtherType & 0xff);
  put(frame, kMagicAt, kMagic);
  put(frame, kLengthAt, f.length);
  put(frame, kRunAt, f.run_id);
  put(frame, kSeqAt, f.seq);
  put(frame, kTimeAt, f.sent_ns);
  std::uint64_t x = mix(f.seq ^ f.run_id);
  for (std::size_t i = kLoopbackHeaderBytes; i < f.length; ++i) {
    if ((i - kLoopbackHeaderBytes) % 8 == 0) {
      x = mix(x + i);
    }
    frame[i] = static_cast<std::byte>(x >> (8 * ((i - kLoopbackHeaderBytes) % 8)));
  }
  put(frame, kSumAt, checksum(frame));
  return true;
}

FrameCheck check_loopback_frame(std::span<const std::byte> frame, std::uint64_t run_id) noexcept {
  FrameCheck c;
  if (frame.size() < kLoopbackHeaderBytes ||
      frame[12] != static_cast<std::byte>(kLoopbackEtherType >> 8) ||
      frame[13] != static_cast<std::byte>(kLoopbackEtherType & 0xff) || get<std::uint32_t>(frame, kMagicAt) != kMagic ||
      get<std::uint64_t>(frame, kRunAt) != run_id) {
    return c;  // foreign
  }
  c.verdict = FrameVerdict::corrupt;
  if (get<std::uint32_t>(frame, kLengthAt) != frame.size() || get<std::uint64_t>(frame, kSumAt) != checksum(frame)) {
    return c;
  }
  c.verdict = FrameVerdict::ok;
  c.seq = get<std::uint64_t>(frame, kSeqAt);
  c.sent_ns = get<std::uint64_t>(frame, kTimeAt);
  return c;
}

std::uint32_t loopback_frame_length(std::uint64_t seq, std::uint32_t min, std::uint32_t max) noexcept {
  if (max <= min) {
    return min;
  }
  return min + static_cast<std::uint32_t>(mix(seq) % (std::uint64_t{max} - min + 1));
}

}  // namespace vfe::e1000e
