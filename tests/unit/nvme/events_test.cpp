// Asynchronous event completions decoded as NVMe 1.4 §5.2.1 lays out Dword 0, named as figures
// 146 to 148 name them, and the log pages read for them.
#include "drivers/nvme/events.hpp"

#include <gtest/gtest.h>

namespace vfe::nvme {
namespace {

TEST(AsyncEvent, DecodesTypeInformationAndLogPage) {
  // What QEMU's controller reports for a temperature above its threshold: type 1, information
  // 1, log page 2.
  const AsyncEvent e = AsyncEvent::from_dw0(0x00020101);
  EXPECT_EQ(e.type, AsyncEventType::health);
  EXPECT_EQ(e.info, 1);
  EXPECT_EQ(e.log_page, 2);
  EXPECT_EQ(e.describe(), "SMART / health: temperature threshold (information 0x01, log page 0x02)");
  EXPECT_FALSE(e.namespaces_changed());
}

TEST(AsyncEvent, ANamespaceAttributeNotice) {
  const AsyncEvent e = AsyncEvent::from_dw0(0x00040002);
  EXPECT_EQ(e.type, AsyncEventType::notice);
  EXPECT_TRUE(e.namespaces_changed());
  EXPECT_EQ(e.describe(), "notice: namespace attribute changed (information 0x00, log page 0x04)");
}

TEST(AsyncEvent, HighBitsAndUnknownValuesDoNotConfuseIt) {
  const AsyncEvent e = AsyncEvent::from_dw0(0xff01ff00);  // reserved bits 31:24 set
  EXPECT_EQ(e.type, AsyncEventType::error);
  EXPECT_EQ(e.info, 0xff);
  EXPECT_EQ(e.log_page, 0x01);
  EXPECT_EQ(e.describe(), "error: information not known to this driver (information 0xff, log page 0x01)");
  EXPECT_EQ(AsyncEvent::from_dw0(0x5).describe(), "reserved type: reserved (information 0x00, log page 0x00)");
}

TEST(AsyncEvent, LogPagesReadForAnEvent) {
  EXPECT_EQ(event_log_bytes(0x01), 64U);    // the newest error information entry
  EXPECT_EQ(event_log_bytes(0x02), 512U);   // SMART / health information
  EXPECT_EQ(event_log_bytes(0x03), 512U);   // firmware slot information
  EXPECT_EQ(event_log_bytes(0x04), 4096U);  // changed namespace list
  EXPECT_EQ(event_log_bytes(0xc0), 0U);     // vendor specific: not read
}

}  // namespace
}  // namespace vfe::nvme
