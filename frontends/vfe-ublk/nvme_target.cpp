#include "frontends/vfe-ublk/nvme_target.hpp"

#include <cerrno>
#include <cstdint>

namespace vfe::ublk_tool {

NvmeTarget::NvmeTarget(nvme::IoQueue& queue, const nvme::NamespaceInfo& ns) noexcept
    : queue_(&queue), block_size_(ns.block_size) {}

Result<std::unique_ptr<NvmeTarget>> NvmeTarget::create(nvme::IoQueue& queue, const nvme::NamespaceInfo& ns,
                                                       std::uint16_t depth, std::uint32_t max_io_bytes,
                                                       dma::DmaPool& pool) {
  std::unique_ptr<NvmeTarget> t(new NvmeTarget(queue, ns));
  for (std::uint16_t tag = 0; tag < depth; ++tag) {
    auto slot = std::make_unique<Slot>();
    VFE_TRY_ASSIGN(auto buf, pool.allocate(max_io_bytes, 4096));
    slot->buf.emplace(std::move(buf));
    slot->target = t.get();
    slot->tag = tag;
    slot->nsid = ns.nsid;
    slot->on_complete = &NvmeTarget::on_complete;
    t->slots_.push_back(std::move(slot));
  }
  return t;
}

int NvmeTarget::submit(const ublk::BlockIo& io) noexcept {
  Slot& s = *slots_[io.tag];
  if (io.offset % block_size_ != 0 || io.bytes % block_size_ != 0) {
    return -EINVAL;  // the kernel sends whole logical blocks; anything else is refused
  }
  s.lba = io.offset / block_size_;
  s.blocks = io.bytes / block_size_;
  s.fua = io.fua;
  s.data = {};
  switch (io.op) {
    case ublk::BlockOp::read:
    case ublk::BlockOp::write:
      s.opcode = io.op == ublk::BlockOp::read ? nvme::IoOpcode::read : nvme::IoOpcode::write;
      s.segment = {s.buf->iova(), io.bytes};
      s.data = {&s.segment, 1};
      break;
    case ublk::BlockOp::flush:
      s.opcode = nvme::IoOpcode::flush;
      s.blocks = 0;
      s.fua = false;
      break;
    case ublk::BlockOp::write_zeroes:
      s.opcode = nvme::IoOpcode::write_zeroes;
      break;
    case ublk::BlockOp::discard:
      // The range goes in the tag's own DMA buffer, which a discard carries no data in.
      if (s.blocks == 0 || s.blocks > UINT32_MAX) {
        return -EINVAL;
      }
      *static_cast<nvme::DsmRange*>(s.buf->data()) = {.attributes = 0, .blocks = static_cast<std::uint32_t>(s.blocks),
                                                      .lba = s.lba};
      s.opcode = nvme::IoOpcode::dataset_management;
      s.segment = {s.buf->iova(), sizeof(nvme::DsmRange)};
      s.data = {&s.segment, 1};
      s.lba = 0;
      s.blocks = 0;
      s.fua = false;
      break;
  }
  return queue_->submit(s);
}

void NvmeTarget::on_complete(engine::Request* req, int status) noexcept {
  auto& s = *static_cast<Slot*>(req);
  s.target->finish(s.tag, status);
}

}  // namespace vfe::ublk_tool
