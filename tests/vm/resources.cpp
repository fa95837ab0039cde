#include "tests/vm/resources.hpp"

#include <dirent.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

namespace vfe::vmtest {
namespace {

std::map<int, std::string> open_fds() {
  std::map<int, std::string> out;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    return out;
  }
  const int own = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == own) {
      continue;  // "." and "..", and the descriptor this listing reads with
    }
    char target[512];
    const ssize_t n = ::readlinkat(own, e->d_name, target, sizeof(target) - 1);
    out[static_cast<int>(fd)] = n < 0 ? "?" : std::string(target, static_cast<std::size_t>(n));
  }
  ::closedir(dir);
  return out;
}

// "start-end perms offset dev inode path": the size, and whether it is [heap] or [stack].
std::uint64_t span_of(const std::string& line, bool& grows_alone) {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64, &start, &end) != 2 || end < start) {
    return 0;
  }
  grows_alone = line.find("[heap]") != std::string::npos || line.find("[stack]") != std::string::npos;
  return end - start;
}

std::uint64_t status_kb(const std::string& status, const char* key) {
  const auto at = status.find(key);
  return at == std::string::npos ? 0 : std::strtoull(status.c_str() + at + std::string(key).size(), nullptr, 10);
}

// Lines of `a` not in `b` (both sorted), at most `limit` of them, each prefixed.
void list_difference(const std::vector<std::string>& a, const std::vector<std::string>& b, const char* prefix,
                     std::string& out, std::size_t limit = 16) {
  std::vector<std::string> only;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only));
  for (std::size_t i = 0; i < only.size() && i < limit; ++i) {
    out += fmt::format("  {}{}\n", prefix, only[i]);
  }
  if (only.size() > limit) {
    out += fmt::format("  ... and {} more\n", only.size() - limit);
  }
}

}  // namespace

Resources Resources::without_private_anonymous() const {
  Resources r = *this;
  r.maps.clear();
  r.mapped_bytes = 0;
  for (const std::string& line : maps) {
    char perms[8] = {};
    char path[2] = {};
    // "start-end perms offset dev inode [path]": private (p) with no path is anonymous memory.
    const int n = std::sscanf(line.c_str(), "%*x-%*x %7s %*s %*s %*s %1s", perms, path);
    if (n >= 1 && perms[3] == 'p' && n < 2) {
      continue;
    }
    bool grows_alone = false;
    r.mapped_bytes += span_of(line, grows_alone);
    r.maps.push_back(line);
  }
  return r;
}

Resources Resources::snapshot() {
  Resources r;
  r.fds = open_fds();
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    bool grows_alone = false;
    const std::uint64_t bytes = span_of(line, grows_alone);
    if (!grows_alone) {
      r.mapped_bytes += bytes;
      r.maps.push_back(line);
    }
  }
  std::sort(r.maps.begin(), r.maps.end());
  std::ifstream status_file("/proc/self/status");
  std::stringstream status;
  status << status_file.rdbuf();
  r.locked_kb = status_kb(status.str(), "VmLck:");
  r.pinned_kb = status_kb(status.str(), "VmPin:");
  return r;
}

std::string resource_changes(const Resources& before, const Resources& after) {
  std::string out;
  for (const auto& [fd, target] : after.fds) {
    const auto it = before.fds.find(fd);
    if (it == before.fds.end() || it->second != target) {
      out += fmt::format("  fd {} -> {} was opened\n", fd, target);
    }
  }
  for (const auto& [fd, target] : before.fds) {
    const auto it = after.fds.find(fd);
    if (it == after.fds.end() || it->second != target) {
      out += fmt::format("  fd {} -> {} was closed\n", fd, target);
    }
  }
  if (after.mapped_bytes != before.mapped_bytes) {
    out += fmt::format("  mapped bytes {} -> {} ({:+})\n", before.mapped_bytes, after.mapped_bytes,
                       static_cast<std::int64_t>(after.mapped_bytes - before.mapped_bytes));
    list_difference(after.maps, before.maps, "mapping added: ", out);
    list_difference(before.maps, after.maps, "mapping gone: ", out);
  }
  if (after.locked_kb != before.locked_kb) {
    out += fmt::format("  VmLck {} -> {} kB\n", before.locked_kb, after.locked_kb);
  }
  if (after.pinned_kb != before.pinned_kb) {
    out += fmt::format("  VmPin {} -> {} kB\n", before.pinned_kb, after.pinned_kb);
  }
  return out;
}

}  // namespace vfe::vmtest
