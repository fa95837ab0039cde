#include "dma/host_memory.hpp"

#include <fmt/format.h>
#include <hwloc.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "base/fd.hpp"
#include "base/log.hpp"
#include "base/units.hpp"

namespace vfe::dma {
namespace {

const std::uint64_t kSmallPage = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));  // 4 KiB on x86
constexpr std::uint64_t kHugePage = 2 * kMiB;

// One hwloc topology for memory binding, loaded on first use and kept for the process.
hwloc_topology_t topology() {
  static hwloc_topology_t topo = [] {
    hwloc_topology_t t = nullptr;
    if (hwloc_topology_init(&t) != 0 || hwloc_topology_load(t) != 0) {
      log_warn("hwloc could not load the topology; NUMA binding is unavailable");
      return static_cast<hwloc_topology_t>(nullptr);
    }
    return t;
  }();
  return topo;
}

Result<void> bind_to_node(void* data, std::uint64_t size, int node) {
  hwloc_topology_t topo = topology();
  hwloc_obj_t obj = topo != nullptr ? hwloc_get_numanode_obj_by_os_index(topo, static_cast<unsigned>(node))
                                    : nullptr;
  if (obj == nullptr) {
    return Error::invalid("bind DMA memory", fmt::format("there is no NUMA node {} on this machine",
                                                         node));
  }
  if (hwloc_set_area_membind(topo, data, size, obj->nodeset, HWLOC_MEMBIND_BIND,
                             HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT) != 0) {
    return Error::from_errno(errno, "hwloc_set_area_membind", fmt::format("node {}", node));
  }
  return ok();
}

// A number from a sysfs file, or -1 when the kernel does not say.
long read_count(const std::string& path) {
  std::ifstream f(path);
  long n = -1;
  return (f >> n) ? n : -1;
}

// Free 2 MiB hugepages on NUMA node `node`, or -1 when the kernel does not say.
long free_hugepages_on(int node) {
  return read_count(fmt::format("/sys/devices/system/node/node{}/hugepages/hugepages-2048kB/free_hugepages", node));
}

// The error for hugepage-only memory when none could be had: how many to reserve, or, when the
// pool has enough free ones, why the kernel refused (`err`: another process took them, a hugetlb
// cgroup limit). Free pages that another mapping has reserved (resv_hugepages) are not to be had.
Error no_hugepages(std::uint64_t bytes, int err) {
  const std::string pool = "/sys/kernel/mm/hugepages/hugepages-2048kB/";
  const long total = read_count(pool + "nr_hugepages");
  if (total < 0) {
    return Error::not_supported("allocate DMA memory",
                                "this kernel has no 2 MiB hugepages (CONFIG_HUGETLBFS), and this memory must be on them");
  }
  const long usable = std::max(read_count(pool + "free_hugepages") - std::max(read_count(pool + "resv_hugepages"), 0L), 0L);
  const auto needed = static_cast<long>(bytes / kHugePage);
  if (usable >= needed) {
    return Error::from_errno(err, "allocate DMA memory",
                             fmt::format("{} bytes of 2 MiB hugepages ({} of {} are free)", bytes, usable, total));
  }
  return Error::from_errno(ENOMEM, "allocate DMA memory",
                           fmt::format("{} bytes need {} free 2 MiB hugepage(s) and {} of {} are free; reserve "
                                       "more as root: echo {} >{}nr_hugepages",
                                       bytes, needed, usable, total, total + needed - usable, pool));
}

// Hugepage memory is reserved from the global pool when it is mapped, but a fault under a strict
// binding to a node without free hugepages kills the process (SIGBUS): bind only where there are
// enough. (Another process may still take them in between; the kernel offers no way to reserve
// on one node.)
bool node_has_hugepages(int node, std::uint64_t bytes) {
  const long free = free_hugepages_on(node);
  const auto needed = static_cast<long>(bytes / kHugePage);
  if (free >= 0 && free < needed) {
    log_warn("NUMA node {} has {} free 2 MiB hugepages and {} are needed: this DMA memory is not bound to "
             "it (reserve them there: /sys/devices/system/node/node{}/hugepages/hugepages-2048kB/nr_hugepages)",
             node, free, needed, node);
    return false;
  }
  return true;
}

// Maps `size` bytes backed by 2 MiB hugepages, or nothing (nullptr, errno set) when none can be had.
void* map_hugepages(std::uint64_t size) {
  Fd fd(::memfd_create("vfe-dma", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB));
  if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return nullptr;
  }
  // MAP_SHARED of a hugetlb memfd reserves the pages now: no SIGBUS on first touch later.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  return p == MAP_FAILED ? nullptr : p;  // closing the memfd (it succeeds) leaves errno as it is
}

}  // namespace

Result<HostMemory> HostMemory::allocate(std::uint64_t size, const MemoryOptions& options) {
  if (size == 0 || align_up_overflows(size, kHugePage)) {
    return Error::invalid("allocate DMA memory", fmt::format("{} bytes is not a usable size", size));
  }
  std::uint64_t page = kSmallPage;
  void* data = nullptr;
  if (options.hugepages || options.hugepages_only) {
    data = map_hugepages(align_up(size, kHugePage));
    page = data != nullptr ? kHugePage : kSmallPage;
  }
  if (data == nullptr && options.hugepages_only) {
    return no_hugepages(align_up(size, kHugePage), errno);
  }
  if (data == nullptr) {
    data = ::mmap(nullptr, align_up(size, kSmallPage), PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) {
      return Error::from_errno(errno, "mmap", fmt::format("{} bytes of DMA memory", size));
    }
  }
  HostMemory mem(data, align_up(size, page), page);
  if (options.numa_node >= 0 && (page != kHugePage || node_has_hugepages(options.numa_node, mem.size_))) {
    VFE_TRY(bind_to_node(mem.data_, mem.size_, options.numa_node));  // before the first touch
  }
  // Touch every page now so the memory is there (and on the bound node) before it is pinned.
  std::memset(mem.data_, 0, mem.size_);
  return mem;
}

HostMemory::HostMemory(HostMemory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      page_size_(other.page_size_) {}

HostMemory& HostMemory::operator=(HostMemory&& other) noexcept {
  if (this != &other) {
    HostMemory old(std::move(*this));
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    page_size_ = other.page_size_;
  }
  return *this;
}

HostMemory::~HostMemory() {
  if (data_ != nullptr && ::munmap(data_, size_) != 0) {
    log_warn("munmap of {} bytes of DMA memory failed: {}", size_, std::strerror(errno));
  }
}

}  // namespace vfe::dma
