#pragma once
/// \file
/// `HostMemory`: process memory suitable for DMA (populated, page aligned, optionally on 2 MiB
/// hugepages and on a chosen NUMA node).

#include <cstdint>

#include "base/result.hpp"

namespace vfe::dma {

/// How to allocate DMA memory.
struct MemoryOptions {
  /// Prefer 2 MiB hugepages (memfd with MFD_HUGETLB); fall back to 4 KiB pages when none are
  /// reserved (/proc/sys/vm/nr_hugepages). false: always 4 KiB pages.
  bool hugepages = true;
  /// Bind the memory to this NUMA node (through hwloc) before it is touched; -1: the kernel's
  /// default policy (usually the node of the allocating thread). Hugepage memory is bound only
  /// when the node has enough free hugepages (else a warning, and the kernel's default policy):
  /// a strictly bound hugepage fault on a node without any kills the process.
  int numa_node = -1;
  /// Fail (ENOMEM, saying how many hugepages to reserve) rather than fall back to base pages.
  /// Memory for a device without an IOMMU is always allocated so (see DmaSpace::memory_options):
  /// the kernel may migrate base pages under the device even while they are locked.
  bool hugepages_only = false;
};

/// A populated, page-aligned mapping of anonymous memory. Move-only; unmapped on destruction.
/// The size is rounded up to the page size used. Not pinned: mapping it for DMA pins it.
class HostMemory {
 public:
  [[nodiscard]] static Result<HostMemory> allocate(std::uint64_t size, const MemoryOptions& options);

  HostMemory(HostMemory&& other) noexcept;
  HostMemory& operator=(HostMemory&& other) noexcept;
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;
  ~HostMemory();

  [[nodiscard]] void* data() const noexcept { return data_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  /// Forgets the memory without unmapping it. Only for memory a device may still reach (its
  /// IOMMU mapping could not be removed): leaking it is safer than handing it back.
  void leak() noexcept {
    data_ = nullptr;
    size_ = 0;
  }
  /// The base page size (4096 on x86) or 2 MiB: what backs the memory.
  [[nodiscard]] std::uint64_t page_size() const noexcept { return page_size_; }

 private:
  HostMemory(void* data, std::uint64_t size, std::uint64_t page_size) noexcept
      : data_(data), size_(size), page_size_(page_size) {}

  void* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t page_size_ = 0;
};

}  // namespace vfe::dma
