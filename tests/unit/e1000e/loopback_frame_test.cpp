// Loopback test frames: a written frame checks out, any single damaged byte or a cut-off frame
// does not, and the per-sequence length is deterministic and covers its range.
#include "drivers/e1000e/loopback_frame.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <vector>

#include "drivers/e1000e/spec.hpp"

namespace vfe::e1000e {
namespace {

constexpr std::uint64_t kRun = 0x0123'4567'89ab'cdefULL;

LoopbackFrame make(std::uint64_t seq, std::uint32_t length) {
  return LoopbackFrame{.dst = {0x02, 0, 0, 0, 0, 0x01},
                       .src = {0x02, 0, 0, 0, 0, 0x02},
                       .run_id = kRun,
                       .seq = seq,
                       .sent_ns = 1'000'000'007ULL * (seq + 1),
                       .length = length};
}

// A frame of exactly `length` bytes on the heap, so ASan sees any read past its end.
std::vector<std::byte> written(std::uint64_t seq, std::uint32_t length) {
  std::vector<std::byte> buf(length);
  EXPECT_TRUE(write_loopback_frame(buf, make(seq, length))) << length;
  return buf;
}

// What one changed byte at `at` must give (header layout in loopback_frame.hpp): EtherType,
// magic and run ID make a frame foreign; anything else is caught by the length or checksum.
FrameVerdict expected_for(std::size_t at) {
  const bool ether_type = at == 12 || at == 13;
  const bool magic = at >= 14 && at < 18;
  const bool run = at >= 22 && at < 30;
  return ether_type || magic || run ? FrameVerdict::foreign : FrameVerdict::corrupt;
}

void expect_every_byte_flip_caught(std::vector<std::byte> frame, std::size_t stride) {
  for (std::size_t at = 0; at < frame.size(); at += (at < kLoopbackHeaderBytes ? 1 : stride)) {
    for (const std::uint8_t flip : {0x01, 0x80, 0xff}) {
      frame[at] ^= std::byte{flip};
      const FrameCheck c = check_loopback_frame(frame, kRun);
      EXPECT_NE(c.verdict, FrameVerdict::ok) << "byte " << at << " ^ " << int{flip} << " of " << frame.size();
      EXPECT_EQ(c.verdict, expected_for(at)) << "byte " << at << " ^ " << int{flip} << " of " << frame.size();
      frame[at] ^= std::byte{flip};
    }
  }
  EXPECT_EQ(check_loopback_frame(frame, kRun).verdict, FrameVerdict::ok) << "restored frame";
}

TEST(LoopbackFrame, WrittenFrameChecksOut) {
  for (const std::uint32_t length : {kLoopbackHeaderBytes, kMinFrame, 61U, 1000U, kMaxFrame}) {
    for (const std::uint64_t seq : {0ULL, 1ULL, 12345ULL, ~0ULL}) {
      const auto frame = written(seq, length);
      const FrameCheck c = check_loopback_frame(frame, kRun);
      ASSERT_EQ(c.verdict, FrameVerdict::ok) << "seq " << seq << " length " << length;
      EXPECT_EQ(c.seq, seq);
      EXPECT_EQ(c.sent_ns, make(seq, length).sent_ns);
    }
  }
}

TEST(LoopbackFrame, HeaderIsEthernetWithTheLoopbackEtherType) {
  const auto frame = written(7, kMinFrame);
  const LoopbackFrame f = make(7, kMinFrame);
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(frame[i], std::byte{f.dst[i]});
    EXPECT_EQ(frame[6 + i], std::byte{f.src[i]});
  }
  EXPECT_EQ(frame[12], std::byte{0x88});  // network byte order
  EXPECT_EQ(frame[13], std::byte{0xb5});
}

TEST(LoopbackFrame, WritesOnlyTheFrameLength) {
  std::vector<std::byte> buf(200, std::byte{0xee});
  ASSERT_TRUE(write_loopback_frame(buf, make(3, 100)));
  for (std::size_t i = 100; i < buf.size(); ++i) {
    ASSERT_EQ(buf[i], std::byte{0xee}) << "byte " << i << " past the frame was written";
  }
  EXPECT_EQ(check_loopback_frame(std::span(buf).first(100), kRun).verdict, FrameVerdict::ok);
}

TEST(LoopbackFrame, PayloadDependsOnTheSequenceNumber) {
  const auto a = written(1, kMaxFrame);
  const auto b = written(2, kMaxFrame);
  EXPECT_FALSE(std::equal(a.begin() + kLoopbackHeaderBytes, a.end(), b.begin() + kLoopbackHeaderBytes));
}

TEST(LoopbackFrame, EverySingleByteChangeOfAMinimumFrameIsCaught) {
  expect_every_byte_flip_caught(written(42, kMinFrame), 1);
}

TEST(LoopbackFrame, SingleByteChangesOfAMaximumFrameAreCaught) {
  expect_every_byte_flip_caught(written(43, kMaxFrame), 7);  // every header byte, then a sample
  auto frame = written(44, kMaxFrame);
  frame.back() ^= std::byte{0x10};
  EXPECT_EQ(check_loopback_frame(frame, kRun).verdict, FrameVerdict::corrupt) << "last byte";
}

TEST(LoopbackFrame, AnotherRunIsForeign) {
  const auto frame = written(5, 100);
  const FrameCheck c = check_loopback_frame(frame, kRun + 1);
  EXPECT_EQ(c.verdict, FrameVerdict::foreign);
  EXPECT_EQ(check_loopback_frame(frame, 0).verdict, FrameVerdict::foreign);
}

TEST(LoopbackFrame, AnotherEtherTypeIsForeign) {
  auto frame = written(5, 100);
  frame[12] = std::byte{0x08};  // IPv4
  frame[13] = std::byte{0x00};
  EXPECT_EQ(check_loopback_frame(frame, kRun).verdict, FrameVerdict::foreign);
  auto swapped = written(5, 100);
  swapped[12] = std::byte{0xb5};
  swapped[13] = std::byte{0x88};
  EXPECT_EQ(check_loopback_frame(swapped, kRun).verdict, FrameVerdict::foreign);
}

TEST(LoopbackFrame, ForeignTrafficIsForeign) {
  const std::vector<std::byte> zeros(kMinFrame);
  EXPECT_EQ(check_loopback_frame(zeros, kRun).verdict, FrameVerdict::foreign);
  EXPECT_EQ(check_loopback_frame(zeros, 0).verdict, FrameVerdict::foreign);
  EXPECT_EQ(check_loopback_frame({}, kRun).verdict, FrameVerdict::foreign);
}

TEST(LoopbackFrame, TruncatedFrameIsNeverOk) {
  for (const std::uint32_t length : {kMinFrame, 301U, kMaxFrame}) {
    const auto full = written(9, length);
    for (std::size_t n = 0; n < length; ++n) {
      const std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
      const FrameVerdict v = check_loopback_frame(cut, kRun).verdict;
      ASSERT_NE(v, FrameVerdict::ok) << n << " of " << length;
      EXPECT_EQ(v, n < kLoopbackHeaderBytes ? FrameVerdict::foreign : FrameVerdict::corrupt) << n << " of " << length;
    }
  }
}

TEST(LoopbackFrame, LongerSpanThanTheFrameIsCorrupt) {
  std::vector<std::byte> buf(200);
  ASSERT_TRUE(write_loopback_frame(buf, make(11, 150)));
  EXPECT_EQ(check_loopback_frame(buf, kRun).verdict, FrameVerdict::corrupt);
}

TEST(LoopbackFrame, WriteRefusesLengthsOutsideHeaderAndBuffer) {
  std::vector<std::byte> buf(100, std::byte{0xcc});
  EXPECT_FALSE(write_loopback_frame(buf, make(1, kLoopbackHeaderBytes - 1)));
  EXPECT_FALSE(write_loopback_frame(buf, make(1, 0)));
  EXPECT_FALSE(write_loopback_frame(buf, make(1, 101)));
  EXPECT_FALSE(write_loopback_frame(std::span(buf).first(kLoopbackHeaderBytes - 1), make(1, kLoopbackHeaderBytes)));
  for (const std::byte b : buf) {
    ASSERT_EQ(b, std::byte{0xcc}) << "a refused write changed the buffer";
  }
  EXPECT_TRUE(write_loopback_frame(buf, make(1, 100)));
  EXPECT_TRUE(write_loopback_frame(std::span(buf).first(kLoopbackHeaderBytes), make(1, kLoopbackHeaderBytes)));
}

TEST(LoopbackFrameLength, StaysInRangeAndCoversBothEnds) {
  std::set<std::uint32_t> seen;
  for (std::uint64_t seq = 0; seq < 200'000; ++seq) {
    const std::uint32_t len = loopback_frame_length(seq, kMinFrame, kMaxFrame);
    ASSERT_GE(len, kMinFrame) << seq;
    ASSERT_LE(len, kMaxFrame) << seq;
    seen.insert(len);
  }
  EXPECT_EQ(seen.count(kMinFrame), 1U);
  EXPECT_EQ(seen.count(kMaxFrame), 1U);
  EXPECT_GT(seen.size(), (kMaxFrame - kMinFrame) * 9 / 10) << "lengths should spread over the range";
}

TEST(LoopbackFrameLength, IsDeterministic) {
  std::vector<std::uint32_t> first;
  for (std::uint64_t seq = 0; seq < 1000; ++seq) {
    first.push_back(loopback_frame_length(seq * 0x9e37'79b9ULL, 60, 1514));
  }
  for (std::uint64_t seq = 0; seq < 1000; ++seq) {
    ASSERT_EQ(loopback_frame_length(seq * 0x9e37'79b9ULL, 60, 1514), first[seq]) << seq;
  }
  EXPECT_GT(std::set<std::uint32_t>(first.begin(), first.end()).size(), 1U) << "not a constant";
  std::set<std::uint32_t> two;
  for (std::uint64_t seq = 0; seq < 64; ++seq) {
    two.insert(loopback_frame_length(seq, 100, 101));
  }
  EXPECT_EQ(two, (std::set<std::uint32_t>{100, 101}));
}

TEST(LoopbackFrameLength, ReturnsMinWhenTheRangeIsEmpty) {
  for (std::uint64_t seq : {0ULL, 5ULL, ~0ULL}) {
    EXPECT_EQ(loopback_frame_length(seq, 60, 60), 60U);
    EXPECT_EQ(loopback_frame_length(seq, 1514, 60), 1514U);
    EXPECT_EQ(loopback_frame_length(seq, 0, 0), 0U);
  }
}

}  // namespace
}  // namespace vfe::e1000e
