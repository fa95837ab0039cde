#pragma once
/// \file
/// `NvmeTarget`: a ublk queue's requests as NVMe commands on one `nvme::IoQueue` (same worker).

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/result.hpp"
#include "dma/dma_buffer.hpp"
#include "dma/dma_pool.hpp"
#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/io_queue.hpp"
#include "drivers/nvme/io_request.hpp"
#include "frontends/ublk/target.hpp"

namespace vfe::ublk_tool {

/// Each tag owns a DMA buffer of max_io_bytes: the kernel copies a request's data into it (or out
/// of it), and the controller reads (or writes) it directly, so a request costs the kernel's one
/// copy and no other. Requests go to the queue from its worker; while the controller resets they
/// wait in the queue, and -EAGAIN (its ring full) makes the ublk queue ask again.
class NvmeTarget final : public ublk::BlockTarget {
 public:
  [[nodiscard]] static Result<std::unique_ptr<NvmeTarget>> create(nvme::IoQueue& queue, const nvme::NamespaceInfo& ns,
                                                                  std::uint16_t depth, std::uint32_t max_io_bytes,
                                                                  dma::DmaPool& pool);
  [[nodiscard]] void* buffer(std::uint16_t tag) noexcept override { return slots_[tag]->buf->data(); }
  [[nodiscard]] int submit(const ublk::BlockIo& io) noexcept override;

 private:
  struct Slot : nvme::IoRequest {
    NvmeTarget* target = nullptr;
    std::uint16_t tag = 0;
    std::optional<dma::DmaBuffer> buf;
    nvme::DataSegment segment;
  };
  NvmeTarget(nvme::IoQueue& queue, const nvme::NamespaceInfo& ns) noexcept;
  static void on_complete(engine::Request* req, int status) noexcept;

  nvme::IoQueue* queue_;
  std::uint32_t block_size_;
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace vfe::ublk_tool
