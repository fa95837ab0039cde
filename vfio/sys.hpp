#pragma once
/// \file
/// `Sys`: the kernel seam. Every system call vfio-engine makes on VFIO and iommufd nodes, the
/// memory they map and the eventfds they signal goes through this interface, one line each in
/// `linux_sys()`. Unit tests substitute a scripted fake; the VM tests use the real kernel. MMIO
/// loads and stores through mapped BARs and the data-path rings never come here.

#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>

namespace vfe::vfio {

/// The calls, with the C library's contract: each returns what the system call returns, and on
/// failure -1 (MAP_FAILED for mmap) with errno set. Implementations are stateless or internally
/// synchronised, so one instance serves every thread. Descriptors returned by `open` and
/// `eventfd` are real descriptors the caller owns (a fake hands out real placeholder fds), so
/// `Fd` closes them with close(2) directly.
class Sys {
 public:
  virtual ~Sys() = default;

  virtual int open(const char* path, int flags) noexcept = 0;
  /// ioctl with a pointer argument (most VFIO and every iommufd command).
  virtual int ioctl_ptr(int fd, unsigned long request, void* arg) noexcept = 0;
  /// ioctl with a plain value argument (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU, ...).
  virtual int ioctl_val(int fd, unsigned long request, unsigned long arg) noexcept = 0;
  virtual ssize_t pread(int fd, void* buf, std::size_t count, off_t offset) noexcept = 0;
  virtual ssize_t pwrite(int fd, const void* buf, std::size_t count, off_t offset) noexcept = 0;
  virtual void* mmap(void* addr, std::size_t length, int prot, int flags, int fd,
                     off_t offset) noexcept = 0;
  virtual int munmap(void* addr, std::size_t length) noexcept = 0;
  virtual int mlock(const void* addr, std::size_t length) noexcept = 0;
  virtual int munlock(const void* addr, std::size_t length) noexcept = 0;
  virtual int eventfd(unsigned initval, int flags) noexcept = 0;
  virtual int getrlimit(int resource, struct rlimit* limit) noexcept = 0;
  /// True when the process may lock memory beyond RLIMIT_MEMLOCK (CAP_IPC_LOCK in its
  /// effective set, as root usually has).
  virtual bool can_lock_beyond_limit() noexcept = 0;

 protected:
  Sys() = default;
  Sys(const Sys&) = default;
  Sys& operator=(const Sys&) = default;
};

/// The real kernel. A process-wide instance that lives until exit; thread-safe.
[[nodiscard]] Sys& linux_sys() noexcept;

}  // namespace vfe::vfio
