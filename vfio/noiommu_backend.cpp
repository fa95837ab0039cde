#include "vfio/noiommu_backend.hpp"

#include <fcntl.h>
#include <linux/kernel-page-flags.h>
#include <unistd.h>
#include <fmt/format.h>

#include <cerrno>
#include <vector>

#include "base/log.hpp"
#include "base/units.hpp"
#include "vfio/uapi.hpp"

namespace vfe::vfio {
namespace {

// /proc/self/pagemap has one entry per base page of the kernel (4 KiB on x86, 16 or 64 KiB on
// some arm64 kernels); a hugepage shows as that many entries with consecutive frame numbers.
const std::uint64_t kPage = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
constexpr std::uint64_t kPfnMask = (std::uint64_t{1} << 55) - 1;  // pagemap bits 0-54
constexpr std::uint64_t kPresent = std::uint64_t{1} << 63;

}  // namespace

Result<std::shared_ptr<NoIommuBackend>> NoIommuBackend::create(Sys& sys) {
  VFE_TRY_ASSIGN(auto container, LegacyContainer::create(sys, VFIO_NOIOMMU_IOMMU));
  log_warn(
      "no-IOMMU mode: devices opened here are NOT isolated; their DMA reaches all physical "
      "memory, and a faulty device or driver can corrupt the kernel. Use it only on machines "
      "without an IOMMU, for development.");
  return std::make_shared<NoIommuBackend>(sys, std::move(container));
}

Result<Fd> NoIommuBackend::open_device(const Bdf& bdf) { return container_.open_device(bdf); }

Result<std::vector<std::uint64_t>> NoIommuBackend::read_entries(const char* path, std::uint64_t first,
                                                                 std::uint64_t count) {
  Fd file(sys().open(path, O_RDONLY));
  if (!file) {
    return Error::from_errno(errno, "open", path);
  }
  std::vector<std::uint64_t> entries(count);
  const auto bytes = static_cast<ssize_t>(count * sizeof(std::uint64_t));
  const ssize_t got = sys().pread(file.get(), entries.data(), static_cast<std::size_t>(bytes),
                                  static_cast<off_t>(first * sizeof(std::uint64_t)));
  if (got != bytes) {
    return Error::from_errno(got < 0 ? errno : EIO, "pread", fmt::format("{}: {} of {} bytes", path, got, bytes));
  }
  return entries;
}

Result<std::uint64_t> NoIommuBackend::physical_address(const void* vaddr, std::uint64_t size) {
  const auto va = reinterpret_cast<std::uintptr_t>(vaddr);
  const std::uint64_t pages = size / kPage;
  VFE_TRY_ASSIGN(const auto entries, read_entries("/proc/self/pagemap", va / kPage, pages));
  const std::uint64_t first_pfn = entries[0] & kPfnMask;
  if ((entries[0] & kPresent) == 0 || first_pfn == 0) {
    return Error::from_errno(EPERM, "read /proc/self/pagemap",
                             "the kernel hides physical addresses without CAP_SYS_ADMIN; no-IOMMU "
                             "mode must run as root");
  }
  for (std::uint64_t i = 1; i < pages; ++i) {
    if ((entries[i] & kPresent) == 0 || (entries[i] & kPfnMask) != first_pfn + i) {
      return Error::invalid("map DMA (no-IOMMU)",
                            fmt::format("the {} bytes at {:#x} are not physically contiguous "
                                        "(page {} breaks the run); use one hugepage per buffer",
                                        size, va, i));
    }
  }
  return first_pfn * kPage + va % kPage;
}

Result<void> NoIommuBackend::check_hugetlb(const void* vaddr, std::uint64_t phys, std::uint64_t size) {
  const std::uint64_t pages = size / kPage;
  VFE_TRY_ASSIGN(const auto flags, read_entries("/proc/kpageflags", phys / kPage, pages));
  for (std::uint64_t i = 0; i < pages; ++i) {
    if ((flags[i] & (std::uint64_t{1} << KPF_HUGE)) == 0) {
      return Error::invalid("map DMA (no-IOMMU)",
                            fmt::format("the {} bytes at {:#x} are not hugepage memory (page {} is not): "
                                        "without an IOMMU the kernel may move ordinary pages under the "
                                        "device even while they are locked; allocate with DmaBuffer or "
                                        "DmaPool, or map memory from hugetlbfs or an MFD_HUGETLB memfd",
                                        size, reinterpret_cast<std::uintptr_t>(vaddr), i));
    }
  }
  return ok();
}

Result<void> NoIommuBackend::check_no_overlap(std::uintptr_t va, std::uint64_t size) const {
  for (const auto& [phys, pinned] : pinned_) {
    const auto start = reinterpret_cast<std::uintptr_t>(pinned.vaddr);
    if (va < start + pinned.size && start < va + size) {
      return Error::from_errno(EEXIST, "map DMA (no-IOMMU)",
                               fmt::format("{} bytes at {:#x} overlap the mapping of {} bytes at "
                                           "{:#x} (physical {:#x}); unmap that one first",
                                           size, va, pinned.size, start, phys));
    }
  }
  return ok();
}

Result<std::uint64_t> NoIommuBackend::map(const void* vaddr, std::uint64_t size,
                                          std::uint64_t /*iova*/) {
  const auto va = reinterpret_cast<std::uintptr_t>(vaddr);
  if (size == 0 || !is_aligned(va, kPage) || !is_aligned(size, kPage)) {
    return Error::invalid("map DMA (no-IOMMU)",
                          fmt::format("{} bytes at {:#x}: address and size must be non-zero "
                                      "multiples of {}",
                                      size, va, kPage));
  }
  // One lock over the whole call: the overlap check must still hold when the range is recorded.
  const std::lock_guard lock(mu_);
  VFE_TRY(check_no_overlap(va, size));
  // Lock first: it faults the pages in, so pagemap has their frames, and keeps them resident.
  if (sys().mlock(vaddr, size) != 0) {
    return Error::from_errno(errno, "mlock",
                             fmt::format("{} bytes: raise RLIMIT_MEMLOCK (ulimit -l) to cover "
                                         "all DMA memory",
                                         size));
  }
  auto phys = physical_address(vaddr, size);
  if (phys) {
    if (auto huge = check_hugetlb(vaddr, *phys, size); !huge) {
      phys = std::move(huge).error();
    }
  }
  if (!phys) {
    sys().munlock(vaddr, size);
    return phys;
  }
  // The same pages at another virtual address (memory mapped twice): as above, but found only
  // now. mlock counts per virtual range, so this range is unlocked again; the pages stay locked
  // through the mapping that has them.
  if (!pinned_.emplace(*phys, Pinned{vaddr, size}).second) {
    sys().munlock(vaddr, size);
    return Error::from_errno(EEXIST, "map DMA (no-IOMMU)",
                             fmt::format("the memory at physical {:#x} is already mapped", *phys));
  }
  return phys;
}

Result<void> NoIommuBackend::unmap(std::uint64_t iova, std::uint64_t size) {
  const std::lock_guard lock(mu_);
  const auto it = pinned_.find(iova);
  if (it == pinned_.end() || it->second.size != size) {
    return Error::from_errno(ENOENT, "unmap DMA (no-IOMMU)",
                             fmt::format("{} bytes at {:#x} are not mapped (double unmap?)", size,
                                         iova));
  }
  sys().munlock(it->second.vaddr, it->second.size);
  pinned_.erase(it);
  return ok();
}

Result<std::vector<IovaRange>> NoIommuBackend::iova_ranges() {
  return std::vector<IovaRange>{{0, (std::uint64_t{1} << 52) - 1}};
}

}  // namespace vfe::vfio
