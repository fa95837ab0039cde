// IoQueue: what goes in a command. A request is checked at submit (validate), and each of its
// commands is built on the worker (issue_next): read, write, compare, write zeroes, flush,
// dataset management, or the caller's own (passthrough).
#include <cerrno>
#include <cstring>

#include "drivers/nvme/io_queue.hpp"
#include "drivers/nvme/io_queue_internal.hpp"

namespace vfe::nvme {
namespace {

using detail::kCidSlotBits;

constexpr std::uint64_t kMaxBlocksPerCommand = 65536;  // NLB is a 0's based 16-bit field
constexpr std::uint32_t kFua = 1U << 30;                // Command Dword 12: Force Unit Access
constexpr std::uint32_t kDeallocate = 1U << 2;          // Dataset Management, Command Dword 11: AD

std::uint64_t data_bytes(std::span<const DataSegment> data) noexcept {
  std::uint64_t bytes = 0;
  for (const DataSegment& s : data) {
    bytes += s.length;
  }
  return bytes;
}

// Dataset Management with Attribute Deallocate (NVMe 1.4 §6.7): NR (the range list goes by PRPs).
void fill_deallocate(const IoRequest& req, Sqe& cmd) noexcept {
  cmd.cdw10 = static_cast<std::uint32_t>(data_bytes(req.data) / sizeof(DsmRange) - 1);  // NR, 0's based
  cmd.cdw11 = kDeallocate;
}

// A passthrough command as its caller composed it (its data, at most one command's worth, goes by
// PRPs).
void fill_passthrough(const IoRequest& req, Sqe& cmd) noexcept {
  const PassthroughCommand& pt = *req.passthrough;
  cmd.opcode = pt.opcode;
  cmd.cdw2 = pt.cdw2;
  cmd.cdw3 = pt.cdw3;
  cmd.cdw10 = pt.cdw10;
  cmd.cdw11 = pt.cdw11;
  cmd.cdw12 = pt.cdw12;
  cmd.cdw13 = pt.cdw13;
  cmd.cdw14 = pt.cdw14;
  cmd.cdw15 = pt.cdw15;
  if (req.metadata.length != 0) {
    cmd.mptr = dma::to_u64(req.metadata.iova);
  }
}

// PRACT and PRCHK only where the namespace has protection information, and only as the command
// and the protection type allow (NVM Command Set §5.2.1): write zeroes may have the controller
// generate the protection information but has none to check, and type 3 has no reference tag to
// check. Tags without PRACT or PRCHK are not looked at. Only the 16-bit guard format is known.
int check_protection(const IoRequest& req, const NamespaceInfo& ns) noexcept {
  const IoRequest::Protection& p = req.protection;
  if (!p.pract && p.check == 0) {
    return 0;
  }
  if (ns.pi_type == 0 || (p.check & ~pi::kCheckAll) != 0) {
    return -EINVAL;
  }
  if (ns.pi_format != 0) {
    return -EOPNOTSUPP;  // a 32- or 64-bit guard: other tags, other tuple sizes
  }
  switch (req.opcode) {
    case IoOpcode::write_zeroes:
      return p.check == 0 ? 0 : -EINVAL;
    case IoOpcode::read:
    case IoOpcode::write:
    case IoOpcode::compare:
      return ns.pi_type == 3 && (p.check & pi::kCheckRef) != 0 ? -EINVAL : 0;
    default:
      return -EINVAL;
  }
}

}  // namespace

int IoQueue::validate(const IoRequest& req, const NamespaceInfo& ns) const noexcept {
  if (ns.pi_type > 3) {
    return -EOPNOTSUPP;  // a protection type the specification reserves
  }
  if (req.passthrough != nullptr) {
    return validate_passthrough(req, ns);
  }
  if (const int err = check_protection(req, ns); err != 0) {
    return err;
  }
  if (req.metadata.length != 0 && req.opcode != IoOpcode::read && req.opcode != IoOpcode::write &&
      req.opcode != IoOpcode::compare) {
    return -EINVAL;
  }
  switch (req.opcode) {
    case IoOpcode::flush:
      return req.blocks == 0 && req.data.empty() && !req.fua ? 0 : -EINVAL;
    case IoOpcode::write_zeroes:
      if (!host_->supports_write_zeroes()) {
        return -EOPNOTSUPP;
      }
      return req.blocks != 0 && req.data.empty() && req.lba + req.blocks > req.lba ? 0 : -EINVAL;
    case IoOpcode::dataset_management: {
      if (!host_->supports_dataset_management()) {
        return -EOPNOTSUPP;
      }
      const std::uint64_t bytes = data_bytes(req.data);
      const bool ok = req.blocks == 0 && !req.fua && bytes != 0 && bytes % sizeof(DsmRange) == 0 &&
                      bytes <= kMaxDsmRanges * sizeof(DsmRange) &&
                      check_prp_layout(req.data, page_size_) == PrpLayoutError::none;
      return ok ? 0 : -EINVAL;
    }
    case IoOpcode::compare:
      if (!host_->supports_compare()) {
        return -EOPNOTSUPP;
      }
      [[fallthrough]];
    case IoOpcode::read:
    case IoOpcode::write:
      return validate_blocks(req, ns);
  }
  return -EINVAL;
}

// Read, write, compare: blocks x the data a block takes, and, for a separate metadata buffer,
// blocks x MS of it in one dword-aligned piece (MPTR, §4.2 figure 105), and none elsewhere.
int IoQueue::validate_blocks(const IoRequest& req, const NamespaceInfo& ns) const noexcept {
  const std::uint64_t unit = ns.data_unit(req.protection.pract);
  if (req.blocks == 0 || req.lba + req.blocks < req.lba || req.blocks > ~0ULL / (unit + ns.metadata_bytes)) {
    return -EINVAL;
  }
  const std::uint64_t meta = req.blocks * ns.metadata_unit(req.protection.pract);
  if (data_bytes(req.data) != req.blocks * unit || !data_layout_ok(req.data, meta != 0)) {
    return -EINVAL;
  }
  // A block size a command cannot start at a dword of (MS not a multiple of 4) in one command only.
  if ((unit & 3) != 0 && req.blocks * unit + page_size_ > layout_.max_transfer) {
    return -EINVAL;
  }
  if (req.metadata.length != meta || (meta != 0 && (dma::to_u64(req.metadata.iova) & 3) != 0)) {
    return -EINVAL;
  }
  return 0;
}

namespace {

constexpr std::uint32_t kPract = 1U << 29;  // Command Dword 12, PRINFO bit 3

// The bytes a command the driver knows the layout of moves, from its own dwords (0: not known).
std::uint64_t known_length(const PassthroughCommand& pt, const NamespaceInfo& ns) noexcept {
  switch (pt.opcode) {
    case static_cast<std::uint8_t>(IoOpcode::write):
    case static_cast<std::uint8_t>(IoOpcode::read):
    case static_cast<std::uint8_t>(IoOpcode::compare):
      return ((pt.cdw12 & 0xffffULL) + 1) * ns.data_unit((pt.cdw12 & kPract) != 0);  // NLB, 0's based
    case static_cast<std::uint8_t>(IoOpcode::dataset_management):
      return ((pt.cdw10 & 0xffULL) + 1) * sizeof(DsmRange);  // NR, 0's based
    default:
      return 0;
  }
}

}  // namespace

// PRPs describe the data, or, where the controller takes them, SGLs do (with a separate metadata
// buffer, only where it takes that as a contiguous buffer beside SGL data: SGLS bit 17).
bool IoQueue::data_layout_ok(std::span<const DataSegment> data, bool separate_metadata) const noexcept {
  return check_prp_layout(data, page_size_) == PrpLayoutError::none ||
         (sgl_ && (!separate_metadata || sgl_mptr_) && sgl_layout_ok(data, sgl_dword_));
}

// The data pointer of the command for the next `n` blocks of `req` (n is cut to what one command
// carries): PRPs, as many blocks as fit in layout_.max_transfer bytes' worth of pages counted from the
// page the first byte is in (a command never touches more than MDTS's pages: QEMU refuses one
// that maps more than 1024, whatever its byte count); or SGLs, layout_.max_transfer bytes in at most a
// page of descriptors. n = 0: a block does not fit.
void IoQueue::fill_data(IoRequest& req, std::uint16_t slot, std::uint64_t& n, Sqe& cmd) noexcept {
  const std::uint32_t unit = req.progress.data_unit;
  const std::uint64_t offset = req.progress.next_block * unit;
  if (req.progress.sgl) {
    n = std::min(n, layout_.max_transfer / unit);
    n = std::min(n, sgl_bytes_within(req.data, offset, n * unit, slot_sgl(slot).size()) / unit);
    if (n != 0) {
      SglDescriptor d;
      build_sgl(req.data, offset, n * unit, slot_sgl(slot), slot_list_iova(slot), d);
      cmd.flags = sgl::kPsdtSgl;
      cmd.prp1 = d.address;  // the 16-byte data pointer: address, then length, then type
      cmd.prp2 = d.length | (std::uint64_t{d.type} << 56);
    }
    return;
  }
  const std::uint64_t lead = data_address(req.data, offset) & (page_size_ - 1);
  n = std::min(n, (layout_.max_transfer - lead) / unit);
  if (n != 0) {
    const PrpPointers p = build_prps(req.data, page_size_, offset, n * unit, slot_list(slot), slot_list_iova(slot));
    cmd.prp1 = p.prp1;
    cmd.prp2 = p.prp2;
  }
}

namespace {

// The separate metadata of blocks [next_block, next_block + n) (MPTR), and the protection fields
// (NVM Command Set §3.2.4, §3.2.6: PRINFO in CDW12 29:26; ILBRT/EILBRT in CDW14, which counts up
// per block for types 1 and 2 and is the LBA itself for type 1; LBAT and LBATM in CDW15).
void fill_protection(const IoRequest& req, std::uint64_t slba, Sqe& cmd) noexcept {
  const IoRequest::Protection& p = req.protection;
  if (req.metadata.length != 0) {
    cmd.mptr = dma::to_u64(req.metadata.iova) + req.progress.next_block * req.progress.meta_unit;
  }
  if (req.progress.pi_type == 0) {
    return;
  }
  cmd.cdw12 |= (static_cast<std::uint32_t>(p.pract) << 29) | (std::uint32_t{p.check} << 26);
  switch (req.progress.pi_type) {
    case 1:
      cmd.cdw14 = static_cast<std::uint32_t>(slba);
      break;
    case 2:
      cmd.cdw14 = p.ref_tag + static_cast<std::uint32_t>(req.progress.next_block);
      break;
    default:
      cmd.cdw14 = p.ref_tag;
      break;
  }
  cmd.cdw15 = (std::uint32_t{p.app_mask} << 16) | p.app_tag;
}

}  // namespace

// All of `data` (at most one command's worth; none for no data) by PRPs, in `slot`'s list.
void IoQueue::put_prps(std::span<const DataSegment> data, std::uint16_t slot, Sqe& cmd) noexcept {
  if (const std::uint64_t bytes = data_bytes(data); bytes != 0) {
    const PrpPointers p = build_prps(data, page_size_, 0, bytes, slot_list(slot), slot_list_iova(slot));
    cmd.prp1 = p.prp1;
    cmd.prp2 = p.prp2;
  }
}

namespace {

// A passthrough command's separate metadata (MPTR): for read, write and compare exactly what
// NLB, PRACT and the format say, and none where the format has none; for other commands that
// move data on a format with a separate buffer, a buffer (the caller answers for its length);
// always dword aligned. Without it the controller would take MPTR 0 for an address.
bool passthrough_metadata_ok(const PassthroughCommand& pt, const NamespaceInfo& ns, const DataSegment& meta,
                             std::uint64_t bytes) noexcept {
  if ((dma::to_u64(meta.iova) & 3) != 0) {
    return false;
  }
  switch (pt.opcode) {
    case static_cast<std::uint8_t>(IoOpcode::write):
    case static_cast<std::uint8_t>(IoOpcode::read):
    case static_cast<std::uint8_t>(IoOpcode::compare):
      return meta.length == ((pt.cdw12 & 0xffffULL) + 1) * ns.metadata_unit((pt.cdw12 & kPract) != 0);
    case static_cast<std::uint8_t>(IoOpcode::dataset_management):
      return meta.length == 0;
    default:
      return ns.metadata_unit(false) == 0 ? meta.length == 0 : bytes == 0 || meta.length != 0;
  }
}

}  // namespace

// One command, as composed: data exactly where the opcode says it moves some (bits 1:0), no more
// than one command carries (the driver cannot split a command it does not know), and for the
// commands whose length the driver can read from their dwords, exactly that much, data and
// metadata: a command that moved more than its buffer would have the controller take PRP2 or
// stale list entries for addresses, and DMA where it should not.
int IoQueue::validate_passthrough(const IoRequest& req, const NamespaceInfo& ns) const noexcept {
  const PassthroughCommand& pt = *req.passthrough;
  const std::uint64_t bytes = data_bytes(req.data);
  const IoRequest::Protection& p = req.protection;
  if (p.pract || p.check != 0 || !passthrough_metadata_ok(pt, ns, req.metadata, bytes)) {
    return -EINVAL;  // the caller's own dwords say PRINFO
  }
  if (req.blocks != 0 || (bytes == 0) != ((pt.opcode & 3U) == 0) || (bytes == 0 && !req.data.empty())) {
    return -EINVAL;
  }
  if (bytes == 0) {
    return 0;
  }
  if (check_prp_layout(req.data, page_size_) != PrpLayoutError::none) {
    return -EINVAL;
  }
  const std::uint64_t known = known_length(pt, ns);
  if (known != 0 && known != bytes) {
    return -EINVAL;
  }
  const std::uint64_t lead = data_address(req.data, 0) & (page_size_ - 1);
  return lead + bytes <= layout_.max_transfer ? 0 : -EINVAL;
}

// Puts the next command of `req` in the submission queue (NVM Command Set §3.2: Flush, Read,
// Write, Compare, Write Zeroes, Dataset Management; or the caller's own). The doorbell is the caller's, once per batch.
IoQueue::Issue IoQueue::issue_next(IoRequest& req) noexcept {
  if (free_.empty()) {
    return Issue::no_slot;
  }
  const std::uint16_t slot = free_.back();
  Sqe cmd{};
  cmd.opcode = static_cast<std::uint8_t>(req.opcode);
  cmd.nsid = req.nsid;
  std::uint64_t n = 0;  // blocks in this command
  if (req.passthrough != nullptr) {
    fill_passthrough(req, cmd);
    put_prps(req.data, slot, cmd);
  } else if (req.opcode == IoOpcode::dataset_management) {
    fill_deallocate(req, cmd);
    put_prps(req.data, slot, cmd);
  } else if (req.opcode != IoOpcode::flush) {
    n = std::min(req.blocks - req.progress.next_block, kMaxBlocksPerCommand);
    if (req.opcode != IoOpcode::write_zeroes) {
      fill_data(req, slot, n, cmd);
      if (n == 0) {
        return Issue::refused;  // a block does not fit in one command from where its data starts
      }
    }
    const std::uint64_t slba = req.lba + req.progress.next_block;
    cmd.cdw10 = static_cast<std::uint32_t>(slba);
    cmd.cdw11 = static_cast<std::uint32_t>(slba >> 32);
    cmd.cdw12 = static_cast<std::uint32_t>(n - 1) | (req.fua ? kFua : 0U);  // NLB, 0's based
    fill_protection(req, slba, cmd);
  }
  free_.pop_back();
  Slot& s = slots_[slot];
  s.generation = static_cast<std::uint16_t>((s.generation + 1) & 0xfU);
  cmd.cid = static_cast<std::uint16_t>((s.generation << kCidSlotBits) | slot);
  req.progress.next_block += n;
  req.progress.issued_all = req.progress.next_block == req.blocks;
  std::memcpy(&sq_[sq_tail_], &cmd, sizeof(cmd));
  sq_tail_ = sq_tail_ + 1 == entries_ ? 0 : sq_tail_ + 1;
  s.req = &req;
  s.epoch = host_->epoch();
  ++req.progress.in_flight;
  return Issue::issued;
}


}  // namespace vfe::nvme
