// Fuzzes the Identify decoders (drivers/nvme/identify.hpp): parse_identify_controller,
// parse_identify_namespace and parse_active_namespace_list each get the input as it is (the exact-
// size heap copy libFuzzer makes, so ASan reports any read past it), and, when it is shorter than
// a page, zero-padded to an exact 4096-byte page so that short inputs reach the field decoding.
// Checks beyond "never reads past the span":
//  - controller: ASCII fields within their widths (SN 20, MN 40, FR 8), printable, no trailing
//    space; accepted SQES/CQES admit 64/16-byte entries; max_transfer_bytes() is 0 or a power of 2;
//  - namespace: NSZE != 0, NLBAF + 1 formats (at most 16), the format in use among them and its
//    block size a power of two in 512..64 KiB;
//  - namespace list: at most 1024 IDs, strictly increasing, never 0 or 0xffffffff;
//  - a failure is EINVAL or ENOTSUP with a message.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/spec.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

namespace nvme = vfe::nvme;

template <class T>
bool failed_cleanly(const vfe::Result<T>& r) {
  if (r) {
    return false;
  }
  const int code = r.error().code.value();
  VFE_FUZZ_CHECK((code == EINVAL || code == ENOTSUP) && !r.error().detail.empty());
  return true;
}

void check_ascii(const std::string& s, std::size_t width) {
  VFE_FUZZ_CHECK(s.size() <= width && (s.empty() || s.back() != ' '));
  VFE_FUZZ_CHECK(std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; }));
}

bool admits(std::uint8_t sizes, std::uint32_t ours) {
  return sizes == 0 || ((sizes & 0xfU) <= ours && (sizes >> 4U) >= ours);
}

void check_controller(std::span<const std::uint8_t> page) {
  const auto c = nvme::parse_identify_controller(page);
  if (failed_cleanly(c)) {
    return;
  }
  VFE_FUZZ_CHECK(page.size() >= nvme::kIdentifySize);
  check_ascii(c->serial, 20);
  check_ascii(c->model, 40);
  check_ascii(c->firmware, 8);
  VFE_FUZZ_CHECK(admits(c->sqes, nvme::kSqeShift) && admits(c->cqes, nvme::kCqeShift));
  for (const std::uint32_t shift : {12U, 16U, 60U}) {
    const std::uint64_t bytes = c->max_transfer_bytes(shift);
    VFE_FUZZ_CHECK((bytes == 0) == (c->mdts == 0) && (bytes & (bytes - 1)) == 0);
  }
}

void check_namespace(std::span<const std::uint8_t> page) {
  const auto ns = nvme::parse_identify_namespace(1, page);
  if (failed_cleanly(ns)) {
    return;
  }
  VFE_FUZZ_CHECK(ns->nsid == 1 && ns->size_blocks != 0);
  VFE_FUZZ_CHECK(ns->formats.size() == page[25] + 1U && ns->formats.size() <= 16);
  VFE_FUZZ_CHECK(ns->format_index < ns->formats.size());
  const nvme::LbaFormat& in_use = ns->formats[ns->format_index];
  VFE_FUZZ_CHECK(ns->block_size == 1U << in_use.data_shift);
  VFE_FUZZ_CHECK(ns->block_size >= 512 && ns->block_size <= 65536);
  VFE_FUZZ_CHECK(ns->metadata_bytes == in_use.metadata_bytes);
  VFE_FUZZ_CHECK(ns->dps == page[29] && ns->pi_type == (ns->metadata_bytes != 0 ? page[29] & 0x7 : 0));
  VFE_FUZZ_CHECK(ns->pi_first == (ns->pi_type != 0 && (page[29] & 0x8) != 0));
  VFE_FUZZ_CHECK(ns->data_unit(false) == ns->block_size + (ns->extended_lba ? ns->metadata_bytes : 0U));
  VFE_FUZZ_CHECK(ns->data_unit(true) >= ns->block_size && ns->metadata_unit(true) <= ns->metadata_bytes);
  VFE_FUZZ_CHECK(nvme::parse_pi_format(page, page.empty() ? 0 : page[0]) <= 3);
}

void check_namespace_list(std::span<const std::uint8_t> page) {
  const auto ids = nvme::parse_active_namespace_list(page);
  if (failed_cleanly(ids)) {
    return;
  }
  VFE_FUZZ_CHECK(ids->size() <= nvme::kIdentifySize / 4);
  for (std::size_t i = 0; i < ids->size(); ++i) {
    VFE_FUZZ_CHECK((*ids)[i] != 0 && (*ids)[i] != 0xffffffffU);
    VFE_FUZZ_CHECK(i == 0 || (*ids)[i - 1] < (*ids)[i]);
  }
}

void check_all(std::span<const std::uint8_t> page) {
  check_controller(page);
  check_namespace(page);
  check_namespace_list(page);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vfe::fuzz::as_is_and_padded(data, size, nvme::kIdentifySize, check_all);
  return 0;
}
