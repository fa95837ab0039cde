// Log pages (NVMe 1.4 §5.14.1) decoded from hand-built bytes at the offsets of figures 194, 196
// and 197: the error information, SMART / health and firmware slot logs.
#include "drivers/nvme/log_pages.hpp"

#include <gtest/gtest.h>

#include <cerrno>

#include "tests/unit/support/le_bytes.hpp"

namespace vfe::nvme {
namespace {

using test::Bytes;
using test::put_ascii;
using test::put_le;

TEST(Counter128, PrintsInDecimalAcrossBothHalves) {
  EXPECT_EQ((Counter128{0, 0}).to_string(), "0");
  EXPECT_EQ((Counter128{1234567890, 0}).to_string(), "1234567890");
  EXPECT_EQ((Counter128{~0ULL, 0}).to_string(), "18446744073709551615");
  EXPECT_EQ((Counter128{0, 1}).to_string(), "18446744073709551616");  // 2^64
  EXPECT_EQ((Counter128{~0ULL, ~0ULL}).to_string(), "340282366920938463463374607431768211455");  // 2^128 - 1
}

TEST(HealthLog, ReadsEveryFieldAtItsOffset) {
  Bytes b(kHealthLogSize, 0);
  b[0] = 0x05;                         // spare below threshold, reliability degraded
  put_le<std::uint16_t>(b, 1, 323);    // 50 degrees C
  b[3] = 97;
  b[4] = 10;
  b[5] = 120;                          // may pass 100
  b[6] = 0x01;
  put_le<std::uint64_t>(b, 32, 1000);  // data units read
  put_le<std::uint64_t>(b, 48 + 8, 2);  // data units written: high half
  put_le<std::uint64_t>(b, 64, 77);     // host reads
  put_le<std::uint64_t>(b, 80, 88);     // host writes
  put_le<std::uint64_t>(b, 96, 5);      // busy minutes
  put_le<std::uint64_t>(b, 112, 6);     // power cycles
  put_le<std::uint64_t>(b, 128, 7);     // power-on hours
  put_le<std::uint64_t>(b, 144, 8);     // unsafe shutdowns
  put_le<std::uint64_t>(b, 160, 9);     // media errors
  put_le<std::uint64_t>(b, 176, 10);    // error log entries
  put_le<std::uint32_t>(b, 192, 11);
  put_le<std::uint32_t>(b, 196, 12);
  put_le<std::uint16_t>(b, 200, 300);   // sensor 1
  put_le<std::uint16_t>(b, 214, 310);   // sensor 8
  put_le<std::uint32_t>(b, 216, 13);
  put_le<std::uint32_t>(b, 220, 14);
  put_le<std::uint32_t>(b, 224, 15);
  put_le<std::uint32_t>(b, 228, 16);
  const auto h = parse_health_log(b);
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_EQ(h->critical_warning, 0x05);
  EXPECT_EQ(h->temperature_kelvin, 323);
  EXPECT_EQ(h->available_spare, 97);
  EXPECT_EQ(h->available_spare_threshold, 10);
  EXPECT_EQ(h->percentage_used, 120);
  EXPECT_EQ(h->endurance_group_warning, 1);
  EXPECT_EQ(h->data_units_read, (Counter128{1000, 0}));
  EXPECT_EQ(h->data_units_written, (Counter128{0, 2}));
  EXPECT_EQ(h->host_reads.low, 77U);
  EXPECT_EQ(h->host_writes.low, 88U);
  EXPECT_EQ(h->controller_busy_minutes.low, 5U);
  EXPECT_EQ(h->power_cycles.low, 6U);
  EXPECT_EQ(h->power_on_hours.low, 7U);
  EXPECT_EQ(h->unsafe_shutdowns.low, 8U);
  EXPECT_EQ(h->media_errors.low, 9U);
  EXPECT_EQ(h->error_log_entries.low, 10U);
  EXPECT_EQ(h->warning_temperature_minutes, 11U);
  EXPECT_EQ(h->critical_temperature_minutes, 12U);
  EXPECT_EQ(h->sensor_kelvin[0], 300);
  EXPECT_EQ(h->sensor_kelvin[1], 0);
  EXPECT_EQ(h->sensor_kelvin[7], 310);
  EXPECT_EQ(h->thermal_transitions[0], 13U);
  EXPECT_EQ(h->thermal_transitions[1], 14U);
  EXPECT_EQ(h->thermal_seconds[0], 15U);
  EXPECT_EQ(h->thermal_seconds[1], 16U);
}

TEST(HealthLog, ShortDataFails) {
  const Bytes b(kHealthLogSize - 1, 0);
  const auto h = parse_health_log(b);
  ASSERT_FALSE(h);
  EXPECT_TRUE(h.error().is(EINVAL));
}

TEST(ErrorLog, KeepsEntriesInUseInTheControllersOrder) {
  Bytes b(3 * kErrorLogEntrySize, 0);
  // Entry 0: error 9, a read on queue 2 that failed Unrecovered Read Error with DNR.
  put_le<std::uint64_t>(b, 0, 9);
  put_le<std::uint16_t>(b, 8, 2);
  put_le<std::uint16_t>(b, 10, 0x1234);
  const std::uint16_t field = (1U << 14) | (2U << 8) | 0x81;  // DNR, SCT 2h, SC 81h
  put_le<std::uint16_t>(b, 12, static_cast<std::uint16_t>((field << 1) | 1U));  // with phase tag
  put_le<std::uint16_t>(b, 14, 0x0123);
  put_le<std::uint64_t>(b, 16, 0x1122334455ULL);
  put_le<std::uint32_t>(b, 24, 1);
  b[28] = 0xc0;
  b[29] = 0;
  put_le<std::uint64_t>(b, 32, 0xabcdef);
  put_le<std::uint16_t>(b, 40, 0x7777);
  // Entry 1: unused (error count 0), with garbage that must not show.
  put_le<std::uint16_t>(b, 64 + 8, 0xffff);
  // Entry 2: error 3.
  put_le<std::uint64_t>(b, 128, 3);
  put_le<std::uint16_t>(b, 128 + 8, 0xffff);  // no queue: not tied to a command
  const auto log = parse_error_log(b);
  ASSERT_TRUE(log) << log.error().message();
  ASSERT_EQ(log->size(), 2U);
  const ErrorLogEntry& e = (*log)[0];
  EXPECT_EQ(e.error_count, 9U);
  EXPECT_EQ(e.sqid, 2);
  EXPECT_EQ(e.cid, 0x1234);
  EXPECT_EQ(e.status.sct, 2);
  EXPECT_EQ(e.status.sc, 0x81);
  EXPECT_TRUE(e.status.dnr);
  EXPECT_EQ(e.parameter_error_location, 0x0123);
  EXPECT_EQ(e.lba, 0x1122334455ULL);
  EXPECT_EQ(e.nsid, 1U);
  EXPECT_EQ(e.vendor_log_page, 0xc0);
  EXPECT_EQ(e.command_specific, 0xabcdefU);
  EXPECT_EQ(e.transport_specific, 0x7777);
  EXPECT_EQ((*log)[1].error_count, 3U);
  EXPECT_EQ((*log)[1].sqid, 0xffff);
}

TEST(ErrorLog, WholeEntriesOnly) {
  EXPECT_FALSE(parse_error_log(Bytes{}));
  EXPECT_FALSE(parse_error_log(Bytes(kErrorLogEntrySize + 4, 0)));
  const auto empty = parse_error_log(Bytes(2 * kErrorLogEntrySize, 0));
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty()) << "entries with error count 0 are not valid";
}

TEST(FirmwareSlotLog, ActiveAndNextSlotAndRevisions) {
  Bytes b(kFirmwareSlotLogSize, 0);
  b[0] = 0x21;  // running slot 1, slot 2 after the next reset
  put_ascii(b, 8, 8, "1.0");
  put_ascii(b, 16, 8, "2.0-rc1");
  put_ascii(b, 56, 8, "FR7");
  const auto f = parse_firmware_slot_log(b);
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(f->active_slot, 1);
  EXPECT_EQ(f->next_reset_slot, 2);
  EXPECT_EQ(f->revisions[0], "1.0");
  EXPECT_EQ(f->revisions[1], "2.0-rc1");
  EXPECT_EQ(f->revisions[2], "") << "an empty slot is all zeros";
  EXPECT_EQ(f->revisions[6], "FR7");
  EXPECT_FALSE(parse_firmware_slot_log(Bytes(100, 0)));
}

}  // namespace
}  // namespace vfe::nvme
