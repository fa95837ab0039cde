#include "dma/dma_space.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include "base/log.hpp"
#include "base/scope_guard.hpp"
#include "base/units.hpp"

namespace vfe::dma {

DmaSpace::DmaSpace(std::shared_ptr<vfio::IommuBackend> backend, unsigned mask_bits,
                   std::optional<IovaAllocator> allocator) noexcept
    : backend_(std::move(backend)), mask_bits_(mask_bits), allocator_(std::move(allocator)) {}

Result<std::unique_ptr<DmaSpace>> DmaSpace::create(std::shared_ptr<vfio::IommuBackend> backend,
                                                   unsigned dma_mask_bits) {
  if (!backend) {
    return Error::invalid("create DMA space", "no IOMMU backend given");
  }
  if (dma_mask_bits < 12 || dma_mask_bits > 64) {
    return Error::invalid("create DMA space",
                          fmt::format("a DMA mask of {} bits; use 12 to 64", dma_mask_bits));
  }
  std::optional<IovaAllocator> allocator;
  if (!backend->chooses_iova()) {
    VFE_TRY_ASSIGN(const auto ranges, backend->iova_ranges());
    VFE_TRY_ASSIGN(auto a, IovaAllocator::create(ranges, dma_mask_bits));
    allocator.emplace(std::move(a));
  }
  return std::make_unique<DmaSpace>(std::move(backend), dma_mask_bits, std::move(allocator));
}

MemoryOptions DmaSpace::memory_options(MemoryOptions asked) const noexcept {
  if (backend_->chooses_iova()) {
    asked.hugepages = true;
    asked.hugepages_only = true;
  }
  return asked;
}

Result<Iova> DmaSpace::map(const void* vaddr, std::uint64_t size, std::uint64_t align) {
  const auto va = reinterpret_cast<std::uintptr_t>(vaddr);
  if (size == 0 || !is_aligned(va, 4096) || !is_aligned(size, 4096)) {
    return Error::invalid("map DMA", fmt::format("{} bytes at {:#x}: address and size must be "
                                                 "non-zero multiples of 4096",
                                                 size, va));
  }
  // Memory mapped already is refused first: the kernel would pin it a second time (type1 even
  // maps it at a second IOVA) before IovaMap::add noticed, and under a tight memlock limit the
  // error would blame the limit instead of the overlap.
  VFE_TRY(map_.check_unregistered(vaddr, size));
  VFE_TRY(check_memlock(size));
  if (!allocator_) {
    return map_at_chosen_iova(vaddr, size);
  }
  VFE_TRY_ASSIGN(const Iova iova, allocator_->allocate(size, align));
  ScopeGuard free_iova([&]() noexcept { static_cast<void>(allocator_->free(iova, size)); });
  VFE_TRY(backend_->map(vaddr, size, to_u64(iova)));
  ScopeGuard unmap([&]() noexcept { static_cast<void>(backend_->unmap(to_u64(iova), size)); });
  VFE_TRY(map_.add(vaddr, size, iova));
  unmap.dismiss();
  free_iova.dismiss();
  mappings_.fetch_add(1, std::memory_order_relaxed);
  pinned_bytes_.fetch_add(size, std::memory_order_relaxed);
  return iova;
}

Result<Iova> DmaSpace::map_at_chosen_iova(const void* vaddr, std::uint64_t size) {
  VFE_TRY_ASSIGN(const std::uint64_t phys, backend_->map(vaddr, size, 0));
  ScopeGuard unmap([&]() noexcept { static_cast<void>(backend_->unmap(phys, size)); });
  const std::uint64_t limit = mask_bits_ == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << mask_bits_) - 1;
  if (phys > limit || limit - phys < size - 1) {
    return Error::from_errno(ERANGE, "map DMA (no-IOMMU)",
                             fmt::format("the memory sits at physical {:#x}, beyond the device's "
                                         "{}-bit DMA mask; without an IOMMU the device can only "
                                         "reach low memory",
                                         phys, mask_bits_));
  }
  VFE_TRY(map_.add(vaddr, size, Iova{phys}));
  unmap.dismiss();
  mappings_.fetch_add(1, std::memory_order_relaxed);
  pinned_bytes_.fetch_add(size, std::memory_order_relaxed);
  return Iova{phys};
}

Result<void> DmaSpace::unmap(const void* vaddr, std::uint64_t size) {
  const auto iova = map_.translate(vaddr);
  if (!iova) {
    return Error::from_errno(ENOENT, "unmap DMA",
                             fmt::format("{} bytes at {} are not mapped (double unmap?)", size,
                                         vaddr));
  }
  // Out of the table first, so nothing new is translated to it; then out of the IOMMU, so the
  // device can't reach it; only then is the IOVA free for someone else.
  VFE_TRY(map_.remove(vaddr, size));
  if (auto r = backend_->unmap(to_u64(*iova), size); !r) {
    static_cast<void>(map_.add(vaddr, size, *iova));  // still mapped: keep it translatable
    return r;
  }
  if (allocator_) {
    if (auto r = allocator_->free(*iova, size); !r) {
      log_error("{}", r.error().message());  // a bookkeeping bug, not a mapping left behind
    }
  }
  mappings_.fetch_sub(1, std::memory_order_relaxed);
  pinned_bytes_.fetch_sub(size, std::memory_order_relaxed);
  return ok();
}

Result<void> DmaSpace::check_memlock(std::uint64_t size) const {
  vfio::Sys& sys = backend_->sys();
  rlimit limit{};
  if (sys.getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
      sys.can_lock_beyond_limit()) {
    return ok();
  }
  // Counts what this space pinned; other pins of the process (another DmaSpace, mlock) add to
  // it, and the kernel's own check stays the last word (ENOMEM from the map call).
  const std::uint64_t needed = pinned_bytes_.load(std::memory_order_relaxed) + size;
  if (needed <= limit.rlim_cur) {
    return ok();
  }
  return Error::from_errno(
      ENOMEM, "map DMA",
      fmt::format("RLIMIT_MEMLOCK is {} KiB, and DMA mappings pin their memory: {} KiB are needed "
                  "with this one. Raise the limit (ulimit -l {}, or memlock in "
                  "/etc/security/limits.conf) or give the process CAP_IPC_LOCK",
                  limit.rlim_cur / 1024, needed / 1024, (needed + 1023) / 1024));
}

std::uint64_t DmaSpace::free_iova_bytes() const {
  return allocator_ ? allocator_->free_bytes() : 0;
}

std::size_t DmaSpace::mapping_count() const noexcept {
  return mappings_.load(std::memory_order_relaxed);
}

}  // namespace vfe::dma
