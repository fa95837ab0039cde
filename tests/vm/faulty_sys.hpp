#pragma once
// The real kernel, except for the calls a test arms to fail: a device that will not let its
// DMA be stopped, for the NVMe driver's failure paths (ControllerOptions::sys).

#include <linux/vfio.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "vfio/sys.hpp"

namespace vfe::vmtest {

class FaultySys final : public vfio::Sys {
 public:
  /// pwrite to PCI config space (vfio-pci's region 7, at fd offset 7 << 40) fails with EIO:
  /// Bus Master Enable cannot be cleared.
  std::atomic<bool> fail_config_writes{false};
  /// VFIO_DEVICE_RESET fails with EIO: no function level reset.
  std::atomic<bool> fail_device_reset{false};
  /// MAP_FIXED mappings fail with ENOMEM: a BAR cannot be detached (mmio::Region), so the
  /// device cannot be given back to the kernel.
  std::atomic<bool> fail_fixed_maps{false};

  int open(const char* path, int flags) noexcept override { return real_.open(path, flags); }
  int ioctl_ptr(int fd, unsigned long request, void* arg) noexcept override {
    return real_.ioctl_ptr(fd, request, arg);
  }
  int ioctl_val(int fd, unsigned long request, unsigned long arg) noexcept override {
    if (request == VFIO_DEVICE_RESET && fail_device_reset.load()) {
      errno = EIO;
      return -1;
    }
    return real_.ioctl_val(fd, request, arg);
  }
  ssize_t pread(int fd, void* buf, std::size_t count, off_t offset) noexcept override {
    return real_.pread(fd, buf, count, offset);
  }
  ssize_t pwrite(int fd, const void* buf, std::size_t count, off_t offset) noexcept override {
    if (fail_config_writes.load() && (static_cast<std::uint64_t>(offset) >> kRegionShift) == VFIO_PCI_CONFIG_REGION_INDEX) {
      errno = EIO;
      return -1;
    }
    return real_.pwrite(fd, buf, count, offset);
  }
  void* mmap(void* addr, std::size_t length, int prot, int flags, int fd, off_t offset) noexcept override {
    if (fail_fixed_maps.load() && (flags & MAP_FIXED) != 0) {
      errno = ENOMEM;
      return MAP_FAILED;
    }
    return real_.mmap(addr, length, prot, flags, fd, offset);
  }
  int munmap(void* addr, std::size_t length) noexcept override { return real_.munmap(addr, length); }
  int mlock(const void* addr, std::size_t length) noexcept override { return real_.mlock(addr, length); }
  int munlock(const void* addr, std::size_t length) noexcept override { return real_.munlock(addr, length); }
  int eventfd(unsigned initval, int flags) noexcept override { return real_.eventfd(initval, flags); }
  int getrlimit(int resource, struct rlimit* limit) noexcept override { return real_.getrlimit(resource, limit); }
  bool can_lock_beyond_limit() noexcept override { return real_.can_lock_beyond_limit(); }

 private:
  static constexpr unsigned kRegionShift = 40;  // vfio-pci: region index << 40 in the device fd
  vfio::Sys& real_ = vfio::linux_sys();
};

}  // namespace vfe::vmtest
