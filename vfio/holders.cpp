#include "vfio/holders.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "vfio/sysfs.hpp"

namespace vfe::vfio {
namespace fs = std::filesystem;

namespace {

std::string proc_root() {
  const char* env = std::getenv("VFE_PROC_ROOT");
  return env != nullptr && *env != '\0' ? env : "/proc";
}

// The pid a /proc entry names, or 0 for the entries that are not processes ("self", "sys").
int pid_of(const std::string& name) {
  if (name.empty() || name.size() > 9 ||
      !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return 0;
  }
  return std::atoi(name.c_str());
}

// True when one of the descriptors in `fd_dir` links to `path`. Iterates with error codes
// throughout (a range-for would throw from operator++ when the process exits mid-walk).
bool has_fd_on(const fs::path& fd_dir, const std::string& path) {
  std::error_code ec;
  for (fs::directory_iterator it(fd_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code link_ec;  // read_symlink gives an empty path on error
    if (fs::read_symlink(it->path(), link_ec) == path) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<Holder> processes_holding(const std::string& path) {
  std::vector<Holder> out;
  std::error_code ec;
  for (fs::directory_iterator it(proc_root(), ec), end; !ec && it != end; it.increment(ec)) {
    const int pid = pid_of(it->path().filename().string());
    if (pid > 0 && has_fd_on(it->path() / "fd", path)) {
      out.push_back({pid, read_line((it->path() / "comm").string()).value_or("?")});
    }
  }
  std::sort(out.begin(), out.end(), [](const Holder& a, const Holder& b) { return a.pid < b.pid; });
  return out;
}

std::string describe_holders(const std::vector<Holder>& holders) {
  std::string out;
  for (const Holder& h : holders) {
    out += out.empty() ? "" : ", ";
    out += h.pid == ::getpid() ? fmt::format("this process (pid {})", h.pid)
                               : fmt::format("process {} ({})", h.pid, h.name);
  }
  return out;
}

std::string held_by(const std::string& path) {
  const std::string who = describe_holders(processes_holding(path));
  return who.empty() ? who : path + " is held by " + who;
}

}  // namespace vfe::vfio
