#include "drivers/nvme/identify.hpp"

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "drivers/nvme/spec.hpp"
#include "drivers/nvme/wire.hpp"

namespace vfe::nvme {
namespace {

using wire::read_ascii;
using wire::read_le;

Result<void> check_size(const char* op, std::string_view what, std::size_t size) {
  if (size < kIdentifySize) {
    return Error::invalid(op, fmt::format("{}: the data is {} bytes; Identify data is {} bytes",
                                          what, size, kIdentifySize));
  }
  return ok();
}

// SQES/CQES (figure 247): bits 3:0 the required entry size, 7:4 the largest, both log2. The
// driver's size must lie in between. Controllers older than NVMe 1.2 may report 0.
Result<void> check_entry_size(const char* field, const char* entries, std::uint8_t value,
                              std::uint32_t ours) {
  if (value == 0) {
    return ok();
  }
  const std::uint32_t required = value & 0xfU;
  const std::uint32_t largest = value >> 4;
  if (required <= ours && largest >= ours) {
    return ok();
  }
  const std::string sizes = required == largest
                                ? fmt::format("only {}-byte", 1U << required)
                                : fmt::format("{}- to {}-byte", 1U << required, 1U << largest);
  return Error::not_supported(
      "identify controller",
      fmt::format("{} is {:#04x}: the controller takes {} {}, and this driver uses {}-byte ones "
                  "(the size the NVM command set requires)",
                  field, value, sizes, entries, 1U << ours));
}

LbaFormat read_lba_format(std::span<const std::uint8_t> data, std::size_t index) {
  // LBAF0 at byte 128, 4 bytes each (figure 249); layout in figure 251.
  const std::uint32_t raw = read_le<std::uint32_t>(data, 128 + 4 * index);
  return LbaFormat{static_cast<std::uint16_t>(raw & 0xffff),
                   static_cast<std::uint8_t>((raw >> 16) & 0xff),
                   static_cast<std::uint8_t>((raw >> 24) & 0x3)};
}

// Fills the format fields of `ns` from NLBAF and FLBAS, checking them.
Result<void> read_formats(std::span<const std::uint8_t> data, NamespaceInfo& ns) {
  constexpr const char* kOp = "identify namespace";
  const std::uint32_t count = data[25] + 1U;  // NLBAF is 0's based
  if (count > 16) {
    return Error::invalid(kOp, fmt::format("namespace {}: NLBAF is {} ({} LBA formats); NVMe 1.4 "
                                           "allows at most 16",
                                           ns.nsid, data[25], count));
  }
  const std::uint8_t flbas = data[26];
  ns.format_index = flbas & 0xf;
  ns.extended_lba = (flbas & 0x10) != 0;
  if (ns.format_index >= count) {
    return Error::invalid(kOp, fmt::format("namespace {}: FLBAS selects LBA format {}, but NLBAF "
                                           "({}) lists formats 0 to {} only",
                                           ns.nsid, ns.format_index, data[25], data[25]));
  }
  ns.formats.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    ns.formats.push_back(read_lba_format(data, i));
  }
  const LbaFormat& in_use = ns.formats[ns.format_index];
  if (in_use.data_shift < 9 || in_use.data_shift > 16) {
    return Error::invalid(kOp, fmt::format("namespace {}: LBA format {} in use has LBADS {}; block "
                                           "sizes from 512 bytes to 64 KiB (LBADS 9 to 16) are "
                                           "supported; reformat the namespace",
                                           ns.nsid, ns.format_index, in_use.data_shift));
  }
  ns.block_size = 1U << in_use.data_shift;
  ns.metadata_bytes = in_use.metadata_bytes;
  ns.dps = data[29];
  ns.pi_type = ns.metadata_bytes != 0 ? ns.dps & 0x7 : 0;  // no protection without metadata
  ns.pi_first = ns.pi_type != 0 && (ns.dps & 0x8) != 0;
  return ok();
}

}  // namespace

std::uint8_t parse_pi_format(std::span<const std::uint8_t> data, std::uint8_t format_index) noexcept {
  const std::size_t at = 12 + 4 * std::size_t{format_index};
  if (data.size() < at + 4) {
    return 0;
  }
  return static_cast<std::uint8_t>((read_le<std::uint32_t>(data, at) >> 7) & 0x3);
}

std::uint64_t ControllerIdentity::max_transfer_bytes(std::uint32_t min_page_shift) const noexcept {
  if (mdts == 0) {
    return 0;
  }
  // A 64-bit byte count cannot say more; saturate rather than shift out of range.
  const std::uint64_t shift = std::uint64_t{mdts} + min_page_shift;
  return shift >= 63 ? std::uint64_t{1} << 63 : std::uint64_t{1} << shift;
}

Result<ControllerIdentity> parse_identify_controller(std::span<const std::uint8_t> data) {
  VFE_TRY(check_size("identify controller", "controller", data.size()));
  // Offsets from NVMe 1.4 figure 247.
  ControllerIdentity c;
  c.vendor_id = read_le<std::uint16_t>(data, 0);
  c.subsystem_vendor_id = read_le<std::uint16_t>(data, 2);
  c.serial = read_ascii(data, 4, 20);
  c.model = read_ascii(data, 24, 40);
  c.firmware = read_ascii(data, 64, 8);
  c.mdts = data[77];
  c.controller_id = read_le<std::uint16_t>(data, 78);
  c.version = read_le<std::uint32_t>(data, 80);
  c.oaes = read_le<std::uint32_t>(data, 92);
  c.oacs = read_le<std::uint16_t>(data, 256);
  c.aerl = data[259];
  c.frmw = data[260];
  c.lpa = data[261];
  c.elpe = data[262];
  c.sqes = data[512];
  c.cqes = data[513];
  c.max_cmd = read_le<std::uint16_t>(data, 514);
  c.namespace_count = read_le<std::uint32_t>(data, 516);
  c.oncs = read_le<std::uint16_t>(data, 520);
  c.vwc = data[525];
  c.sgls = read_le<std::uint32_t>(data, 536);
  VFE_TRY(check_entry_size("SQES", "submission queue entries", c.sqes, kSqeShift));
  VFE_TRY(check_entry_size("CQES", "completion queue entries", c.cqes, kCqeShift));
  return c;
}

Result<NvmControllerLimits> parse_identify_nvm_controller(std::span<const std::uint8_t> data) {
  VFE_TRY(check_size("identify controller (NVM command set)", "controller", data.size()));
  NvmControllerLimits l;
  l.vsl = data[0];
  l.wzsl = data[1];
  l.wusl = data[2];
  l.dmrl = data[3];
  l.dmrsl = read_le<std::uint32_t>(data, 4);
  l.dmsl = read_le<std::uint64_t>(data, 8);
  return l;
}

Result<NamespaceInfo> parse_identify_namespace(std::uint32_t nsid,
                                               std::span<const std::uint8_t> data) {
  VFE_TRY(check_size("identify namespace", fmt::format("namespace {}", nsid), data.size()));
  // Offsets from NVMe 1.4 figure 249.
  NamespaceInfo ns;
  ns.nsid = nsid;
  ns.size_blocks = read_le<std::uint64_t>(data, 0);
  ns.capacity_blocks = read_le<std::uint64_t>(data, 8);
  ns.used_blocks = read_le<std::uint64_t>(data, 16);
  ns.dlfeat = data[33];
  if (ns.size_blocks == 0) {
    // §5.15: for an inactive namespace ID the controller returns all zeros.
    return Error::invalid("identify namespace",
                          fmt::format("namespace {}: NSZE is 0 (the namespace is not active); use "
                                      "an ID from the active namespace list",
                                      nsid));
  }
  VFE_TRY(read_formats(data, ns));
  return ns;
}

Result<std::vector<std::uint32_t>> parse_active_namespace_list(std::span<const std::uint8_t> data) {
  constexpr const char* kOp = "identify active namespaces";
  VFE_TRY(check_size(kOp, "namespace list", data.size()));
  std::vector<std::uint32_t> ids;
  for (std::size_t i = 0; i < kIdentifySize / 4; ++i) {
    const std::uint32_t id = read_le<std::uint32_t>(data, 4 * i);
    if (id == 0) {
      break;  // the list ends at the first unused entry
    }
    if (id == 0xffffffff) {
      return Error::invalid(kOp, fmt::format("entry {} is 0xffffffff, the broadcast namespace ID, "
                                             "which is never an active namespace",
                                             i));
    }
    if (!ids.empty() && id <= ids.back()) {
      return Error::invalid(kOp, fmt::format("entry {} is {} after {}: the list must be in "
                                             "increasing order",
                                             i, id, ids.back()));
    }
    ids.push_back(id);
  }
  return ids;
}

}  // namespace vfe::nvme
