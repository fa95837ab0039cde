#include "base/fd.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace vfe {

void Fd::reset(int fd) noexcept {
  const int old = std::exchange(fd_, fd);
  if (old >= 0 && ::close(old) != 0) {
    // EBADF means someone else closed a descriptor we owned: a bug worth seeing.
    log_warn("close({}) failed: {}", old, std::strerror(errno));
  }
}

}  // namespace vfe
