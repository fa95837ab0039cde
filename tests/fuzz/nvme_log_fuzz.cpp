// Fuzzes the log page decoders (drivers/nvme/log_pages.hpp) and the NVM command set Identify
// (parse_identify_nvm_controller): each gets the input as it is (libFuzzer's exact-size heap copy,
// so ASan reports any read past it), and, when shorter than a page, zero-padded to 4096 bytes.
// Checks beyond "never reads past the span":
//  - error log: accepted only for a positive multiple of 64 bytes; at most size / 64 entries,
//    none with error count 0; each entry's status type fits in 3 bits;
//  - health log: accepted only from 512 bytes on; each 128-bit counter prints as decimal digits
//    without a leading zero;
//  - firmware slot log: slots within 0..7, revisions at most 8 printable characters;
//  - a failure is EINVAL with a message.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/log_pages.hpp"
#include "drivers/nvme/spec.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

namespace nvme = vfe::nvme;

template <class T>
bool failed_cleanly(const vfe::Result<T>& r) {
  if (r) {
    return false;
  }
  VFE_FUZZ_CHECK(r.error().code.value() == EINVAL && !r.error().detail.empty());
  return true;
}

void check_decimal(const nvme::Counter128& c) {
  const std::string s = c.to_string();
  VFE_FUZZ_CHECK(!s.empty() && s.size() <= 39);  // 2^128 - 1 has 39 digits
  VFE_FUZZ_CHECK(std::all_of(s.begin(), s.end(), [](char d) { return d >= '0' && d <= '9'; }));
  VFE_FUZZ_CHECK(s.size() == 1 || s.front() != '0');
  VFE_FUZZ_CHECK((s == "0") == (c.low == 0 && c.high == 0));
}

void check_error_log(std::span<const std::uint8_t> data) {
  const auto log = nvme::parse_error_log(data);
  if (failed_cleanly(log)) {
    VFE_FUZZ_CHECK(data.empty() || data.size() % nvme::kErrorLogEntrySize != 0);
    return;
  }
  VFE_FUZZ_CHECK(!data.empty() && data.size() % nvme::kErrorLogEntrySize == 0);
  VFE_FUZZ_CHECK(log->size() <= data.size() / nvme::kErrorLogEntrySize);
  for (const nvme::ErrorLogEntry& e : *log) {
    VFE_FUZZ_CHECK(e.error_count != 0 && e.status.sct <= 7);
  }
}

void check_health_log(std::span<const std::uint8_t> data) {
  const auto h = nvme::parse_health_log(data);
  if (failed_cleanly(h)) {
    VFE_FUZZ_CHECK(data.size() < nvme::kHealthLogSize);
    return;
  }
  VFE_FUZZ_CHECK(data.size() >= nvme::kHealthLogSize);
  for (const auto* c : {&h->data_units_read, &h->data_units_written, &h->host_reads, &h->media_errors,
                        &h->error_log_entries}) {
    check_decimal(*c);
  }
}

void check_firmware_log(std::span<const std::uint8_t> data) {
  const auto f = nvme::parse_firmware_slot_log(data);
  if (failed_cleanly(f)) {
    VFE_FUZZ_CHECK(data.size() < nvme::kFirmwareSlotLogSize);
    return;
  }
  VFE_FUZZ_CHECK(f->active_slot <= 7 && f->next_reset_slot <= 7);
  for (const std::string& r : f->revisions) {
    VFE_FUZZ_CHECK(r.size() <= 8);
    VFE_FUZZ_CHECK(std::all_of(r.begin(), r.end(), [](char c) { return c >= 0x20 && c < 0x7f; }));
  }
}

void check_nvm_limits(std::span<const std::uint8_t> data) {
  const auto l = nvme::parse_identify_nvm_controller(data);
  if (failed_cleanly(l)) {
    VFE_FUZZ_CHECK(data.size() < nvme::kIdentifySize);
    return;
  }
  VFE_FUZZ_CHECK(l->vsl == data[0] && l->dmrl == data[3]);
}

void check_all(std::span<const std::uint8_t> data) {
  check_error_log(data);
  check_health_log(data);
  check_firmware_log(data);
  check_nvm_limits(data);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vfe::fuzz::as_is_and_padded(data, size, nvme::kIdentifySize, check_all);
  return 0;
}
