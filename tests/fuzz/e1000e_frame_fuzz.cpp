// Fuzzes the loopback frame format (drivers/e1000e/loopback_frame.hpp). check_loopback_frame gets
// the input as a received frame of run kRunId (libFuzzer's exact-size copy: ASan reports a read
// past it); then a frame built from the input's bytes is written, checked and damaged. Checks:
//  - a frame judged ok is at least a header long, its length field is its size, and the seq and
//    send time returned are the ones it carries;
//  - write_loopback_frame then check_loopback_frame gives ok with the same seq and send time, for
//    any MACs, seq, time and length in 54..1514; it refuses a buffer one byte too short;
//  - changing any one byte of a written frame makes it not ok (foreign or corrupt).

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "drivers/e1000e/loopback_frame.hpp"
#include "drivers/e1000e/spec.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

namespace e1000e = vfe::e1000e;

// The run the seed frames belong to (tests/fuzz/corpus/e1000e_frame).
constexpr std::uint64_t kRunId = 0x0123456789abcdefULL;

std::uint64_t le64(std::span<const std::uint8_t> b, std::size_t at) {
  std::uint64_t v = 0;
  std::memcpy(&v, b.data() + at, sizeof(v));  // the format is little-endian, as is the host
  return v;
}

void check_received(std::span<const std::uint8_t> in) {
  const e1000e::FrameCheck c = e1000e::check_loopback_frame(std::as_bytes(in), kRunId);
  if (c.verdict != e1000e::FrameVerdict::ok) {
    return;
  }
  VFE_FUZZ_CHECK(in.size() >= e1000e::kLoopbackHeaderBytes);
  std::uint32_t length = 0;
  std::memcpy(&length, in.data() + 18, sizeof(length));
  VFE_FUZZ_CHECK(length == in.size() && c.seq == le64(in, 30) && c.sent_ns == le64(in, 38));
}

// A frame made of the input's first 32 bytes: MACs, seq, send time, length and a byte to damage.
void check_written(std::span<const std::uint8_t> in) {
  e1000e::LoopbackFrame f;
  std::memcpy(f.dst.data(), in.data(), 6);
  std::memcpy(f.src.data(), in.data() + 6, 6);
  f.run_id = kRunId;
  f.seq = le64(in, 12);
  f.sent_ns = le64(in, 20);
  const std::uint32_t span = e1000e::kMaxFrame - e1000e::kLoopbackHeaderBytes + 1;
  f.length = e1000e::kLoopbackHeaderBytes + (in[28] | std::uint32_t{in[29]} << 8) % span;

  std::vector<std::byte> shorter(f.length - 1);
  VFE_FUZZ_CHECK(!e1000e::write_loopback_frame(shorter, f));
  std::vector<std::byte> frame(f.length);
  VFE_FUZZ_CHECK(e1000e::write_loopback_frame(frame, f));
  const e1000e::FrameCheck c = e1000e::check_loopback_frame(frame, kRunId);
  VFE_FUZZ_CHECK(c.verdict == e1000e::FrameVerdict::ok && c.seq == f.seq && c.sent_ns == f.sent_ns);

  const std::size_t at = (in[30] | std::size_t{in[31]} << 8) % f.length;
  frame[at] ^= std::byte{static_cast<std::uint8_t>(in[29] | 1U)};
  VFE_FUZZ_CHECK(e1000e::check_loopback_frame(frame, kRunId).verdict != e1000e::FrameVerdict::ok);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  check_received(in);
  if (size >= 32) {
    check_written(in);
  }
  return 0;
}
