#include "vfio/sys.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace vfe::vfio {
namespace {

// One line per call, nothing else: this is what tests replace.
class LinuxSys final : public Sys {
 public:
  int open(const char* path, int flags) noexcept override {
    return ::open(path, flags | O_CLOEXEC);
  }
  int ioctl_ptr(int fd, unsigned long request, void* arg) noexcept override {
    return ::ioctl(fd, request, arg);
  }
  int ioctl_val(int fd, unsigned long request, unsigned long arg) noexcept override {
    return ::ioctl(fd, request, arg);
  }
  ssize_t pread(int fd, void* buf, std::size_t count, off_t offset) noexcept override {
    return ::pread(fd, buf, count, offset);
  }
  ssize_t pwrite(int fd, const void* buf, std::size_t count, off_t offset) noexcept override {
    return ::pwrite(fd, buf, count, offset);
  }
  void* mmap(void* addr, std::size_t length, int prot, int flags, int fd,
             off_t offset) noexcept override {
    return ::mmap(addr, length, prot, flags, fd, offset);
  }
  int munmap(void* addr, std::size_t length) noexcept override { return ::munmap(addr, length); }
  int mlock(const void* addr, std::size_t length) noexcept override {
    return ::mlock(addr, length);
  }
  int munlock(const void* addr, std::size_t length) noexcept override {
    return ::munlock(addr, length);
  }
  int eventfd(unsigned initval, int flags) noexcept override {
    return ::eventfd(initval, flags | EFD_CLOEXEC);
  }
  int getrlimit(int resource, struct rlimit* limit) noexcept override {
    return ::getrlimit(static_cast<__rlimit_resource_t>(resource), limit);
  }
  bool can_lock_beyond_limit() noexcept override {
    __user_cap_header_struct head{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    return ::syscall(SYS_capget, &head, data) == 0 &&
           (data[CAP_IPC_LOCK / 32].effective & (1U << (CAP_IPC_LOCK % 32))) != 0;
  }
};

}  // namespace

Sys& linux_sys() noexcept {
  static LinuxSys sys;
  return sys;
}

}  // namespace vfe::vfio
