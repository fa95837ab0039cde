#include "tests/unit/support/fake_sys.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

namespace vfe::test {

FakeSys::~FakeSys() {
  for (const Mapping& m : mappings_) {
    ::munmap(m.addr, m.length);
  }
}

std::vector<std::uint8_t>& FakeSys::back(const std::string& path, off_t base, std::size_t size) {
  auto& bytes = files_[path][base];
  bytes.assign(size, 0);
  return bytes;
}

int FakeSys::new_fd(const std::string& path) {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  if (fd >= 0) {
    fd_paths_[fd] = path;  // descriptor numbers are reused after close: the newest owner wins
  }
  return fd;
}

std::size_t FakeSys::open_count(const std::string& path) const {
  return static_cast<std::size_t>(std::count(opened_.begin(), opened_.end(), path));
}

std::string FakeSys::path_of(int fd) const {
  const auto it = fd_paths_.find(fd);
  return it == fd_paths_.end() ? std::string() : it->second;
}

std::size_t FakeSys::count(unsigned long request) const {
  return static_cast<std::size_t>(std::count_if(
      ioctls_.begin(), ioctls_.end(), [&](const Ioctl& c) { return c.request == request; }));
}

bool FakeSys::untouched() const noexcept {
  return opened_.empty() && ioctls_.empty() && accesses_.empty() && mmaps_made_ == 0;
}

int FakeSys::open(const char* path, int /*flags*/) noexcept {
  opened_.emplace_back(path);
  if (const auto it = open_errors_.find(path); it != open_errors_.end()) {
    return fail(it->second);
  }
  return new_fd(path);
}

int FakeSys::ioctl_ptr(int fd, unsigned long request, void* arg) noexcept {
  ioctls_.push_back({fd, path_of(fd), request});
  const auto it = ptr_handlers_.find(request);
  return it == ptr_handlers_.end() ? fail(ENOTTY) : it->second(fd, arg);
}

int FakeSys::ioctl_val(int fd, unsigned long request, unsigned long arg) noexcept {
  ioctls_.push_back({fd, path_of(fd), request});
  const auto it = val_handlers_.find(request);
  return it == val_handlers_.end() ? fail(ENOTTY) : it->second(fd, arg);
}

std::uint8_t* FakeSys::backing(const std::string& path, off_t offset, std::size_t count) {
  const auto file = files_.find(path);
  if (file == files_.end()) {
    return nullptr;
  }
  for (auto& [base, bytes] : file->second) {
    if (offset >= base && static_cast<std::size_t>(offset - base) <= bytes.size() &&
        bytes.size() - static_cast<std::size_t>(offset - base) >= count) {
      return bytes.data() + (offset - base);
    }
  }
  return nullptr;
}

ssize_t FakeSys::pread(int fd, void* buf, std::size_t count, off_t offset) noexcept {
  const std::string path = path_of(fd);
  accesses_.push_back({false, path, offset, count});
  if (const auto it = pread_handlers_.find(path); it != pread_handlers_.end()) {
    return it->second(buf, count, offset);
  }
  const std::uint8_t* src = backing(path, offset, count);
  if (src == nullptr) {
    return fail(EINVAL);
  }
  std::memcpy(buf, src, count);
  return static_cast<ssize_t>(count);
}

ssize_t FakeSys::pwrite(int fd, const void* buf, std::size_t count, off_t offset) noexcept {
  const std::string path = path_of(fd);
  accesses_.push_back({true, path, offset, count});
  std::uint8_t* dst = backing(path, offset, count);
  if (dst == nullptr) {
    return fail(EINVAL);
  }
  std::memcpy(dst, buf, count);
  return static_cast<ssize_t>(count);
}

void* FakeSys::mmap(void* addr, std::size_t length, int prot, int flags, int fd, off_t offset) noexcept {
  if (mmap_errno != 0 && mmaps_made_ >= mmap_ok) {
    errno = mmap_errno;
    return MAP_FAILED;
  }
  const bool fixed = (flags & MAP_FIXED) != 0;
  void* p = ::mmap(fixed ? addr : nullptr, length, prot, MAP_PRIVATE | MAP_ANONYMOUS | (flags & MAP_FIXED), -1, 0);
  if (p != MAP_FAILED) {
    ++mmaps_made_;
    if (fixed) {  // replaces what was mapped there, as the kernel does
      std::erase_if(mappings_, [&](const Mapping& m) { return m.addr == addr && m.length == length; });
    }
    mappings_.push_back({p, length, prot, fd, offset});
  }
  return p;
}

int FakeSys::munmap(void* addr, std::size_t length) noexcept {
  munmaps_.emplace_back(addr, length);
  const auto it = std::find_if(mappings_.begin(), mappings_.end(), [&](const Mapping& m) {
    return m.addr == addr && m.length == length;
  });
  if (it == mappings_.end()) {
    return fail(EINVAL);  // not something this fake mapped, or already unmapped
  }
  ::munmap(addr, length);
  mappings_.erase(it);
  return 0;
}

int FakeSys::mlock(const void* addr, std::size_t length) noexcept {
  mlocks_.emplace_back(addr, length);
  return mlock_errno != 0 ? fail(mlock_errno) : 0;
}

int FakeSys::munlock(const void* addr, std::size_t length) noexcept {
  munlocks_.emplace_back(addr, length);
  return 0;
}

int FakeSys::eventfd(unsigned initval, int flags) noexcept {
  if (eventfd_errno != 0 && eventfds_made_ >= eventfd_ok) {
    return fail(eventfd_errno);
  }
  const int fd = ::eventfd(initval, flags | EFD_CLOEXEC);
  if (fd >= 0) {
    ++eventfds_made_;
    fd_paths_[fd] = "eventfd";
  }
  return fd;
}

int FakeSys::getrlimit(int /*resource*/, struct rlimit* out) noexcept {
  if (getrlimit_errno != 0) {
    return fail(getrlimit_errno);
  }
  *out = rlimit_value;
  return 0;
}

}  // namespace vfe::test
