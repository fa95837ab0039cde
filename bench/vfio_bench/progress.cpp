#include "bench/vfio_bench/progress.hpp"

#include <fmt/format.h>

#include <cstdio>

namespace vfe::bench {

Progress::Progress(bool enabled, std::string label, std::function<std::uint64_t()> ops_done,
                   std::function<std::uint64_t()> bytes_done, std::chrono::duration<double> total)
    : label_(std::move(label)), ops_(std::move(ops_done)), bytes_(std::move(bytes_done)), total_(total) {
  if (enabled) {
    thread_ = std::thread([this] { run(); });
  }
}

Progress::~Progress() {
  if (!thread_.joinable()) {
    return;
  }
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  fmt::print(stderr, "\r\033[K");
  std::fflush(stderr);
}

void Progress::run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double ops = static_cast<double>(ops_());
    const double mib = static_cast<double>(bytes_()) / (1 << 20);
    std::string line = fmt::format("{}: {:.0f} ops/s", label_, ops / elapsed);
    if (mib > 0) {
      line += fmt::format(", {:.1f} MiB/s", mib / elapsed);
    }
    if (total_.count() > 0) {
      line += fmt::format(", {:.0f} s left", std::max(0.0, total_.count() - elapsed));
    }
    fmt::print(stderr, "\r\033[K{}", line);
    std::fflush(stderr);
  }
}

}  // namespace vfe::bench
