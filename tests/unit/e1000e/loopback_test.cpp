// The pure parts of Loopback: the frame-length option and the counter comparisons.
#include "drivers/e1000e/loopback.hpp"

#include <gtest/gtest.h>

namespace vfe::e1000e {
namespace {

TEST(ParseFrameLengths, AcceptsOneLengthOrARange) {
  EXPECT_EQ(parse_frame_lengths("60").value(), std::pair(60U, 60U));
  EXPECT_EQ(parse_frame_lengths("1514").value(), std::pair(1514U, 1514U));
  EXPECT_EQ(parse_frame_lengths("60-1514").value(), std::pair(60U, 1514U));
  EXPECT_EQ(parse_frame_lengths("100-100").value(), std::pair(100U, 100U));
}

TEST(ParseFrameLengths, RefusesWhatIsNotALengthOrOutOfRange) {
  for (const char* bad : {"", "-", "59", "1515", "0", "60-", "-60", "60-1515", "200-100", "6o", "60 ", " 60",
                          "60-70-80", "4294967356", "+60"}) {
    auto r = parse_frame_lengths(bad);
    ASSERT_FALSE(r) << "'" << bad << "'";
    EXPECT_TRUE(r.error().is(EINVAL));
    EXPECT_NE(r.error().message().find("60..1514"), std::string::npos) << r.error().message();
  }
}

TEST(DeviceBytesMatch, AcceptsWithOrWithoutTheFcs) {
  EXPECT_TRUE(device_bytes_match(1000, 1000, 10));
  EXPECT_TRUE(device_bytes_match(1040, 1000, 10)) << "4 bytes of FCS per frame";
  EXPECT_FALSE(device_bytes_match(1039, 1000, 10));
  EXPECT_FALSE(device_bytes_match(1004, 1000, 10));
  EXPECT_FALSE(device_bytes_match(999, 1000, 10));
}

TEST(LoopbackReport, CleanAndAgreeingOnlyWhenEverythingMatches) {
  LoopbackReport r;
  r.sent = r.received = r.ring_tx_frames = r.ring_rx_frames = r.device_tx_frames = r.device_rx_frames = 10;
  r.sent_bytes = r.received_bytes = r.ring_tx_bytes = r.ring_rx_bytes = r.device_tx_bytes = 1000;
  r.device_rx_bytes = 1040;
  EXPECT_TRUE(r.clean());
  EXPECT_TRUE(r.counters_agree());
  for (std::uint64_t LoopbackReport::*field : {&LoopbackReport::lost, &LoopbackReport::duplicates,
                                               &LoopbackReport::reordered, &LoopbackReport::corrupt,
                                               &LoopbackReport::tx_errors}) {
    LoopbackReport bad = r;
    bad.*field = 1;
    EXPECT_FALSE(bad.clean());
  }
  LoopbackReport foreign = r;
  foreign.foreign = 3;
  EXPECT_TRUE(foreign.clean()) << "frames from elsewhere on the wire are reported, not a failure";
  LoopbackReport missing = r;
  missing.device_rx_frames = 9;
  EXPECT_FALSE(missing.counters_agree());
  LoopbackReport bytes = r;
  bytes.device_tx_bytes = 1001;
  EXPECT_FALSE(bytes.counters_agree());
}

}  // namespace
}  // namespace vfe::e1000e
