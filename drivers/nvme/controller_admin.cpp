// Controller: the admin commands that move data (Identify, Get Log Page, Get/Set Features),
// for the driver's own use and as typed calls for its users.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/units.hpp"
#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/prp.hpp"

namespace vfe::nvme {
namespace {

Result<void> check_log_query(const LogPageQuery& q, std::uint64_t max_transfer) {
  if (q.bytes == 0 || q.bytes % 4 != 0 || q.offset % 4 != 0) {
    return Error::invalid("get log page", fmt::format("log {:#04x}: {} bytes at offset {}: both must be "
                                                      "multiples of 4, and the length not 0",
                                                      q.lid, q.bytes, q.offset));
  }
  if (q.bytes > max_transfer) {
    return Error::invalid("get log page", fmt::format("log {:#04x}: {} bytes is more than one command carries "
                                                      "({}); read it in pieces with `offset`",
                                                      q.lid, q.bytes, max_transfer));
  }
  return ok();
}

// Features the driver sets itself: why a caller may not change them (nullptr: it may).
const char* owned_by_driver(std::uint8_t fid) noexcept {
  switch (fid) {
    case feature::kNumberOfQueues:
      return "it sets the number of queues at bring-up and after each reset";
    case feature::kHostMemoryBuffer:
      return "a host memory buffer is memory the driver would own";
    case feature::kAsyncEventConfig:
      return "it turns on the events it handles, again after each reset, and re-checks namespaces on their notices";
    default:
      return nullptr;
  }
}

}  // namespace

Result<Cqe> Controller::admin_transfer(Sqe cmd, std::span<std::uint8_t> data, bool from_device,
                                       const char* what) {
  if (data.empty()) {
    return admin(cmd, what);
  }
  if (data.size() <= kIdentifySize) {
    // The page after the admin queues serves every small transfer, one at a time.
    std::lock_guard lock(page_mu_);
    std::uint8_t* page = admin_mem_->as<std::uint8_t>() + kDataPageOffset;
    std::memset(page, 0, kIdentifySize);
    if (!from_device) {
      std::memcpy(page, data.data(), data.size());
    }
    cmd.prp1 = dma::to_u64(admin_mem_->iova_at(kDataPageOffset));
    VFE_TRY_ASSIGN(const Cqe cqe, admin(cmd, what));
    if (from_device) {
      std::memcpy(data.data(), page, data.size());
    }
    return cqe;
  }
  return admin_transfer_large(cmd, data, from_device, what);
}

// More than a page: memory of its own, with the PRP list pages after the data.
Result<Cqe> Controller::admin_transfer_large(Sqe cmd, std::span<std::uint8_t> data, bool from_device,
                                             const char* what) {
  if (data.size() > max_transfer_) {
    return Error::invalid(what, fmt::format("{} bytes is more than one command carries ({})", data.size(),
                                            max_transfer_));
  }
  const std::uint64_t list_at = align_up(data.size(), page_size());
  const std::uint64_t list_bytes = prp_list_pages(data.size() / page_size() + 1, page_size()) * page_size();
  VFE_TRY_ASSIGN(auto mem, dma::DmaBuffer::allocate(*space_, list_at + list_bytes));
  auto* bytes = mem.as<std::uint8_t>();
  std::memset(bytes, 0, data.size());
  if (!from_device) {
    std::memcpy(bytes, data.data(), data.size());
  }
  const DataSegment seg{mem.iova(), data.size()};
  const PrpPointers p = build_prps(std::span(&seg, 1), page_size(), 0, data.size(),
                                   reinterpret_cast<std::uint64_t*>(bytes + list_at),
                                   dma::to_u64(mem.iova_at(list_at)));
  cmd.prp1 = p.prp1;
  cmd.prp2 = p.prp2;
  auto cqe = admin(cmd, what);
  if (!cqe && admin_->broken()) {
    // No answer (or a foreign one): the controller may still write there until it is reset,
    // so the memory is never handed back.
    log_error("nvme: {}: its {} bytes of DMA memory are abandoned after the timeout", what, mem.size());
    mem.abandon();
  } else if (cqe && from_device) {
    std::memcpy(data.data(), bytes, data.size());
  }
  return cqe;
}

Result<std::vector<std::uint8_t>> Controller::identify_page(const IdentifyQuery& q, const char* what) {
  Sqe cmd{};
  cmd.opcode = admin::kIdentify;
  cmd.nsid = q.nsid;
  cmd.cdw10 = q.cns | (std::uint32_t{q.cntid} << 16);
  cmd.cdw11 = q.set_id | (std::uint32_t{q.csi} << 24);
  std::vector<std::uint8_t> page(kIdentifySize);
  VFE_TRY(admin_transfer(cmd, page, true, what));
  return page;
}

// §5.14 Get Log Page, for an event: the first `bytes` (a multiple of 4, at most a page) of log
// `lid`, with Retain Asynchronous Event clear, so reading it lets the controller report the next.
Result<std::vector<std::uint8_t>> Controller::read_log(std::uint8_t lid, std::uint32_t bytes) {
  return get_log_page(LogPageQuery{.lid = lid, .bytes = bytes, .retain_event = false});
}

Result<std::vector<std::uint8_t>> Controller::identify(const IdentifyQuery& q) { return identify_page(q, "identify"); }

Result<std::vector<std::uint8_t>> Controller::get_log_page(const LogPageQuery& q) {
  VFE_TRY(check_log_query(q, max_transfer_));
  const std::uint32_t numd = q.bytes / 4 - 1;  // 0's based dwords
  Sqe cmd{};
  cmd.opcode = admin::kGetLogPage;
  cmd.nsid = q.nsid;
  cmd.cdw10 = q.lid | (std::uint32_t{q.lsp & 0xfU} << 8) | (q.retain_event ? 1U << 15 : 0U) | (numd << 16);
  cmd.cdw11 = (numd >> 16) | (std::uint32_t{q.lsi} << 16);  // NUMDU, LSI
  cmd.cdw12 = static_cast<std::uint32_t>(q.offset);        // LPOL
  cmd.cdw13 = static_cast<std::uint32_t>(q.offset >> 32);  // LPOU
  cmd.cdw14 = std::uint32_t{q.csi} << 24;
  std::vector<std::uint8_t> out(q.bytes);
  VFE_TRY(admin_transfer(cmd, out, true, "get log page"));
  return out;
}

Result<std::vector<ErrorLogEntry>> Controller::error_log() {
  // ELPE + 1 entries of 64 bytes: what the controller keeps (§5.14.1.1).
  // (at most what one command carries; the rest are the oldest)
  const auto whole = static_cast<std::uint64_t>(identity_.elpe + 1U) * kErrorLogEntrySize;
  const auto bytes = static_cast<std::uint32_t>(std::min(whole, max_transfer_ / kErrorLogEntrySize * kErrorLogEntrySize));
  VFE_TRY_ASSIGN(const auto log, get_log_page(LogPageQuery{.lid = log_page::kError, .bytes = bytes}));
  return parse_error_log(log);
}

Result<HealthLog> Controller::health_log(std::uint32_t nsid) {
  VFE_TRY_ASSIGN(const auto log, get_log_page(LogPageQuery{
                                     .lid = log_page::kHealth, .bytes = kHealthLogSize, .nsid = nsid}));
  return parse_health_log(log);
}

Result<FirmwareSlotLog> Controller::firmware_slot_log() {
  VFE_TRY_ASSIGN(const auto log,
                 get_log_page(LogPageQuery{.lid = log_page::kFirmwareSlot, .bytes = kFirmwareSlotLogSize}));
  return parse_firmware_slot_log(log);
}

Result<FeatureValue> Controller::get_features(const FeatureQuery& q) {
  if (q.data_bytes > kIdentifySize) {
    return Error::invalid("get features", fmt::format("feature {:#04x}: {} bytes of data; no feature has more "
                                                      "than {}",
                                                      q.fid, q.data_bytes, kIdentifySize));
  }
  Sqe cmd{};
  cmd.opcode = admin::kGetFeatures;
  cmd.nsid = q.nsid;
  cmd.cdw10 = q.fid | (static_cast<std::uint32_t>(q.select) << 8);
  cmd.cdw11 = q.cdw11;
  FeatureValue v;
  v.data.resize(q.data_bytes);
  VFE_TRY_ASSIGN(const Cqe cqe, admin_transfer(cmd, v.data, true, "get features"));
  v.dw0 = cqe.dw0;
  return v;
}

Result<FeatureValue> Controller::set_features(const FeatureChange& c) {
  if (const char* why = owned_by_driver(c.fid); why != nullptr) {
    return Error::from_errno(EPERM, "set features",
                             fmt::format("feature {:#04x} belongs to the driver ({}); it is not changed from outside",
                                         c.fid, why));
  }
  if (c.data.size() > kIdentifySize) {
    return Error::invalid("set features", fmt::format("feature {:#04x}: {} bytes of data; no feature takes more "
                                                      "than {}",
                                                      c.fid, c.data.size(), kIdentifySize));
  }
  Sqe cmd{};
  cmd.opcode = admin::kSetFeatures;
  cmd.nsid = c.nsid;
  cmd.cdw10 = c.fid | (c.save ? 1U << 31 : 0U);
  cmd.cdw11 = c.cdw11;
  cmd.cdw12 = c.cdw12;
  cmd.cdw13 = c.cdw13;
  cmd.cdw14 = c.cdw14;
  cmd.cdw15 = c.cdw15;
  std::vector<std::uint8_t> data(c.data.begin(), c.data.end());
  VFE_TRY_ASSIGN(const Cqe cqe, admin_transfer(cmd, data, false, "set features"));
  return FeatureValue{cqe.dw0, {}};
}

}  // namespace vfe::nvme
