#include "dma/dma_pool.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

#include "base/log.hpp"
#include "base/units.hpp"

namespace vfe::dma {

Result<std::unique_ptr<DmaPool>> DmaPool::create(DmaSpace& space, std::uint64_t arena_size,
                                                 const MemoryOptions& options) {
  if (arena_size < 4096 || !is_pow2(arena_size)) {
    return Error::invalid("create DMA pool",
                          fmt::format("arena size {} must be a power of two of at least 4096",
                                      arena_size));
  }
  return std::make_unique<DmaPool>(space, arena_size, space.memory_options(options));
}

DmaPool::~DmaPool() {
  if (in_use_ != 0) {
    log_error("DMA pool destroyed with {} bytes still handed out", in_use_);
  }
  for (Arena& a : arenas_) {
    if (auto r = space_->unmap(a.memory.data(), a.memory.size()); !r) {
      log_error("DMA pool arena stays allocated: {}", r.error().message());
      a.memory.leak();
    }
  }
}

Result<void> DmaPool::grow(std::uint64_t at_least) {
  const std::uint64_t size = std::max(arena_size_, align_up(at_least, arena_size_));
  VFE_TRY_ASSIGN(HostMemory memory, HostMemory::allocate(size, options_));
  VFE_TRY_ASSIGN(const Iova iova, space_->map(memory.data(), memory.size(), memory.page_size()));
  const std::uint64_t mapped = memory.size();
  arenas_.push_back(Arena{std::move(memory), iova, {{0, mapped}}});
  return ok();
}

Result<DmaBuffer> DmaPool::allocate(std::uint64_t size, std::uint64_t align) {
  if (size == 0 || align < 64 || align > 4096 || !is_pow2(align)) {
    return Error::invalid("allocate from DMA pool",
                          fmt::format("{} bytes aligned to {}: the size must be non-zero and the "
                                      "alignment a power of two from 64 to 4096",
                                      size, align));
  }
  size = align_up(size, align);
  const std::lock_guard lock(mu_);
  for (int pass = 0; pass < 2; ++pass) {
    for (Arena& a : arenas_) {
      for (auto it = a.free.begin(); it != a.free.end(); ++it) {
        const std::uint64_t start = align_up(it->first, align);
        const std::uint64_t end = it->first + it->second;
        if (start > end || end - start < size) {
          continue;
        }
        // Split the free extent into what is left before and after the slice.
        const std::uint64_t extent = it->first;
        a.free.erase(it);
        if (start > extent) {
          a.free.emplace(extent, start - extent);
        }
        if (end > start + size) {
          a.free.emplace(start + size, end - start - size);
        }
        in_use_ += size;
        return DmaBuffer(*this, static_cast<std::uint8_t*>(a.memory.data()) + start, size,
                         a.iova + start);
      }
    }
    if (pass == 0) {
      VFE_TRY(grow(size));
    }
  }
  return Error::from_errno(ENOMEM, "allocate from DMA pool", "a new arena had no room (bug)");
}

void DmaPool::release(void* data, std::uint64_t size) noexcept {
  const std::lock_guard lock(mu_);
  const std::uint64_t released = size;
  const auto p = reinterpret_cast<std::uintptr_t>(data);
  for (Arena& a : arenas_) {
    const auto base = reinterpret_cast<std::uintptr_t>(a.memory.data());
    if (p < base || p - base >= a.memory.size()) {
      continue;
    }
    std::uint64_t off = p - base;
    // Coalesce with the free neighbours on both sides.
    auto next = a.free.lower_bound(off);
    if (next != a.free.end() && off + size == next->first) {
      size += next->second;
      next = a.free.erase(next);
    }
    if (next != a.free.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        off = prev->first;
        size += prev->second;
        a.free.erase(prev);
      }
    }
    a.free.emplace(off, size);
    in_use_ -= released;
    return;
  }
  log_error("DMA pool: released {} bytes at {} that it never handed out", size, data);
}

std::size_t DmaPool::arena_count() const {
  const std::lock_guard lock(mu_);
  return arenas_.size();
}

std::uint64_t DmaPool::bytes_in_use() const {
  const std::lock_guard lock(mu_);
  return in_use_;
}

}  // namespace vfe::dma
