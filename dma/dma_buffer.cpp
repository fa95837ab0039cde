#include "dma/dma_buffer.hpp"

#include <fmt/format.h>

#include <utility>
#include <vector>

#include "base/log.hpp"
#include "dma/dma_pool.hpp"

namespace vfe::dma {
namespace {

// Without an IOMMU the allocator can't pick where memory lands; a few fresh tries usually find
// memory below a small DMA mask (the rejected blocks are held until the search ends, so the
// kernel does not hand the same pages back).
constexpr int kNoIommuAttempts = 16;

}  // namespace

DmaBuffer::DmaBuffer(DmaSpace& space, HostMemory memory, Iova iova) noexcept
    : space_(&space), memory_(std::move(memory)), iova_(iova) {
  data_ = memory_->data();
  size_ = memory_->size();
}

DmaBuffer::DmaBuffer(DmaPool& pool, void* data, std::uint64_t size, Iova iova) noexcept
    : pool_(&pool), data_(data), size_(size), iova_(iova) {}

DmaBuffer::DmaBuffer(DmaBuffer&& other) noexcept
    : space_(std::exchange(other.space_, nullptr)),
      pool_(std::exchange(other.pool_, nullptr)),
      memory_(std::move(other.memory_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      iova_(other.iova_) {
  other.memory_.reset();
}

DmaBuffer::~DmaBuffer() {
  if (pool_ != nullptr) {
    pool_->release(data_, size_);
  } else if (space_ != nullptr) {
    if (auto r = space_->unmap(data_, size_); !r) {
      // Never free memory a device may still reach: leak it instead, loudly.
      log_error("DMA buffer of {} bytes stays allocated: {}", size_, r.error().message());
      if (memory_) {
        memory_->leak();
      }
    }
  }
}

void DmaBuffer::abandon() noexcept {
  log_error("DMA buffer of {} bytes at IOVA {:#x} stays allocated and mapped for good: a device may still write it",
            size_, to_u64(iova_));
  if (memory_) {
    memory_->leak();
  }
  space_ = nullptr;
  pool_ = nullptr;
}

Result<DmaBuffer> DmaBuffer::allocate(DmaSpace& space, std::uint64_t size,
                                      const MemoryOptions& options) {
  const bool physical = space.backend().chooses_iova();
  const MemoryOptions usable = space.memory_options(options);
  std::vector<HostMemory> rejected;
  for (int attempt = 0;; ++attempt) {
    auto memory = HostMemory::allocate(size, usable);
    if (!memory) {
      if (rejected.empty()) {
        return std::move(memory).error();
      }
      // The blocks held aside took the pool: say why they were refused, too.
      return Error::from_errno(ERANGE, "allocate DMA memory",
                               fmt::format("{} block(s) lay beyond the device's DMA mask, then: {}", rejected.size(),
                                           memory.error().message()));
    }
    auto iova = space.map(memory->data(), memory->size(), memory->page_size());
    if (iova) {
      return DmaBuffer(space, std::move(*memory), *iova);
    }
    if (!physical || !iova.error().is(ERANGE) || attempt + 1 >= kNoIommuAttempts) {
      return std::move(iova).error();
    }
    rejected.push_back(std::move(*memory));
  }
}

}  // namespace vfe::dma
