#include "mmio/region.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd.hpp"
#include "base/log.hpp"

namespace vfe::mmio {

Region::Region(const vfio::Device& device, const vfio::RegionInfo& info) noexcept
    : released_(&device.released_flag()),
      sys_(&device.sys()),
      device_fd_(device.fd()),
      index_(info.index),
      size_(info.size),
      fd_offset_(info.offset),
      readable_(info.readable()),
      writable_(info.writable()) {}

Region::Region(Region&& other) noexcept
    : released_(other.released_),
      sys_(other.sys_),
      device_fd_(other.device_fd_),
      index_(other.index_),
      size_(other.size_),
      fd_offset_(other.fd_offset_),
      readable_(other.readable_),
      writable_(other.writable_),
      areas_(std::move(other.areas_)) {
  other.areas_.clear();
}

Region::~Region() {
  for (const Area& a : areas_) {
    if (sys_->munmap(a.base, a.size) != 0) {
      log_warn("munmap of region {} area at {:#x} failed: errno {}", index_, a.offset, errno);
    }
  }
}

Result<Region> Region::open(const vfio::Device& device, std::uint32_t index) {
  VFE_TRY_ASSIGN(const vfio::RegionInfo info, device.region_info(index));
  if (info.size == 0) {
    return Error::invalid("map region", fmt::format("{} has no region {} (the BAR is not "
                                                    "implemented)",
                                                    device.bdf().to_string(), index));
  }
  Region region(device, info);
  for (const vfio::SparseArea& a : info.areas) {
    if (a.offset > info.size || info.size - a.offset < a.size) {
      return Error::invalid("map region", fmt::format("sparse area {:#x}+{:#x} lies outside the "
                                                      "{:#x}-byte region {}",
                                                      a.offset, a.size, info.size, index));
    }
    const int prot = (info.readable() ? PROT_READ : 0) | (info.writable() ? PROT_WRITE : 0);
    void* base = device.sys().mmap(nullptr, a.size, prot, MAP_SHARED, device.fd(),
                                   static_cast<off_t>(info.offset + a.offset));
    if (base == MAP_FAILED) {
      return Error::from_errno(errno, "mmap", fmt::format("{} region {} at {:#x}+{:#x}",
                                                          device.bdf().to_string(), index,
                                                          a.offset, a.size));
    }
    region.areas_.push_back({a.offset, a.size, base});  // unmapped by ~Region on failure
  }
  return region;
}

Result<void> Region::detach() noexcept {
  for (const Area& a : areas_) {
    VFE_TRY(replace_with_ones(a));
  }
  return ok();
}

// The replacement is a private map of a memory file already full of ones, so that a racing
// register read sees the device or all ones, never the zeros of fresh memory (a CSTS of zero
// would look like a controller that stopped). Not through Sys: a memory file is no VFIO call.
Result<void> Region::replace_with_ones(const Area& a) noexcept {
  const auto failed = [&](const char* what) {
    return Error::from_errno(errno, "detach region",
                             fmt::format("region {} area at {:#x}+{:#x}: {}", index_, a.offset, a.size, what));
  };
  const Fd ones(::memfd_create("vfe-detached-bar", MFD_CLOEXEC));
  if (!ones || ::ftruncate(ones.get(), static_cast<off_t>(a.size)) != 0) {
    return failed("memfd");
  }
  void* fill = ::mmap(nullptr, a.size, PROT_READ | PROT_WRITE, MAP_SHARED, ones.get(), 0);
  if (fill == MAP_FAILED) {
    return failed("mmap of the memfd");
  }
  std::memset(fill, 0xff, a.size);
  ::munmap(fill, a.size);
  void* p = sys_->mmap(a.base, a.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, ones.get(), 0);
  if (p == MAP_FAILED) {
    return failed("mmap over the BAR");
  }
  std::memset(p, 0xff, a.size);  // the same ones (a fake Sys maps fresh memory instead)
  return ok();
}

bool Region::is_mapped(std::uint64_t offset, std::uint64_t len) const noexcept {
  return address(offset, len) != nullptr;
}

volatile void* Region::address(std::uint64_t offset, std::uint64_t len) const noexcept {
  for (const Area& a : areas_) {
    if (offset >= a.offset && offset - a.offset <= a.size && a.size - (offset - a.offset) >= len) {
      return static_cast<volatile std::uint8_t*>(a.base) + (offset - a.offset);
    }
  }
  return nullptr;
}

bool Region::slow_read(std::uint64_t offset, void* out, std::size_t len) const noexcept {
  if (!readable_ || offset > size_ || size_ - offset < len) {
    complain("read of {} bytes at {:#x} outside readable region {}", len, offset, index_);
    return false;
  }
  if (released_->load(std::memory_order_acquire)) {
    complain("read of region {} at {:#x}: the device was given back to the kernel", index_, offset);
    return false;
  }
  const ssize_t n = sys_->pread(device_fd_, out, len, static_cast<off_t>(fd_offset_ + offset));
  if (n != static_cast<ssize_t>(len)) {
    complain("pread of region {} at {:#x} failed: errno {}", index_, offset, errno);
    return false;
  }
  return true;
}

void Region::slow_write(std::uint64_t offset, const void* in, std::size_t len) noexcept {
  if (!writable_ || offset > size_ || size_ - offset < len) {
    complain("write of {} bytes at {:#x} outside writable region {}", len, offset, index_);
    return;
  }
  if (released_->load(std::memory_order_acquire)) {
    complain("write of region {} at {:#x} dropped: the device was given back to the kernel", index_, offset);
    return;
  }
  const ssize_t n = sys_->pwrite(device_fd_, in, len, static_cast<off_t>(fd_offset_ + offset));
  if (n != static_cast<ssize_t>(len)) {
    complain("pwrite of region {} at {:#x} failed: errno {}", index_, offset, errno);
  }
}

}  // namespace vfe::mmio
