#include "drivers/e1000e/packet_pool.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/log.hpp"
#include "base/units.hpp"

namespace vfe::e1000e {
namespace {

constexpr std::uint64_t kChunkBytes = 2 * kMiB;  // one hugepage: contiguous even without an IOMMU
constexpr std::uint32_t kPerChunk = kChunkBytes / PacketPool::kBufferSize;
constexpr std::uint32_t kMaxPackets = 1U << 20;

}  // namespace

Result<std::unique_ptr<PacketPool>> PacketPool::create(dma::DmaSpace& space, std::uint32_t count, int numa_node) {
  if (count == 0 || count > kMaxPackets) {
    return Error::invalid("create packet pool", fmt::format("{} buffers requested; use 1 to {}", count, kMaxPackets));
  }
  std::unique_ptr<PacketPool> pool(new PacketPool());
  const std::uint32_t chunks = (count + kPerChunk - 1) / kPerChunk;
  pool->chunks_.reserve(chunks);
  pool->packets_.reserve(static_cast<std::size_t>(chunks) * kPerChunk);
  for (std::uint32_t i = 0; i < chunks; ++i) {
    VFE_TRY_ASSIGN(auto chunk, dma::DmaBuffer::allocate(space, kChunkBytes, {.hugepages = true, .numa_node = numa_node}));
    pool->carve(chunk.as<std::byte>(), chunk.iova(), chunk.size());
    pool->chunks_.push_back(std::move(chunk));
  }
  pool->finish();
  return pool;
}

Result<std::unique_ptr<PacketPool>> PacketPool::over(std::span<std::byte> memory, dma::Iova iova) {
  if (memory.size() < kBufferSize) {
    return Error::invalid("create packet pool",
                          fmt::format("{} bytes hold no {}-byte buffer", memory.size(), kBufferSize));
  }
  std::unique_ptr<PacketPool> pool(new PacketPool());
  pool->packets_.reserve(memory.size() / kBufferSize);
  pool->carve(memory.data(), iova, memory.size());
  pool->finish();
  return pool;
}

PacketPool::~PacketPool() {
  if (top_ != packets_.size()) {
    // Not an error in itself (the application may tear down with frames in hand), but a hint when
    // a test expects every buffer back.
    log_debug("packet pool destroyed with {} of {} buffers outside it", packets_.size() - top_, packets_.size());
  }
}

void PacketPool::carve(std::byte* base, dma::Iova iova, std::uint64_t bytes) {
  for (std::uint64_t off = 0; off + kBufferSize <= bytes; off += kBufferSize) {
    // ixy's habit: fill fresh buffers with a pattern, so a frame the device never wrote shows up.
    std::memset(base + off, 0xff, kBufferSize);
    packets_.push_back(Packet{.data = base + off,
                              .iova = iova + off,
                              .length = 0,
                              .index = static_cast<std::uint32_t>(packets_.size()),
                              .pool = this,
                              .in_pool = true});
  }
}

void PacketPool::finish() noexcept {
  free_.resize(packets_.size());
  // Hand out low addresses first (LIFO stack: the last pushed is taken first).
  for (std::size_t i = 0; i < packets_.size(); ++i) {
    free_[i] = &packets_[packets_.size() - 1 - i];
  }
  top_ = free_.size();
}

Packet* PacketPool::alloc() noexcept {
  if (top_ == 0) {
    return nullptr;
  }
  Packet* p = free_[--top_];
  p->in_pool = false;
  p->length = 0;
  return p;
}

std::size_t PacketPool::alloc_bulk(std::span<Packet*> out) noexcept {
  const std::size_t n = std::min(out.size(), top_);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = alloc();
  }
  return n;
}

void PacketPool::free(Packet* p) noexcept {
  if (p == nullptr || p->pool != this || p->in_pool || p->in_flight) {
    ++bad_frees_;
    return;
  }
  p->in_pool = true;
  free_[top_++] = p;
}

void PacketPool::free_bulk(std::span<Packet* const> packets) noexcept {
  for (Packet* p : packets) {
    free(p);
  }
}

}  // namespace vfe::e1000e
