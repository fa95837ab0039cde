#pragma once
/// \file
/// `Progress`: a status line once a second on a terminal while a job runs.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace vfe::bench {

/// While alive, prints "label: N ops/s, N MiB/s so far, N s left" to stderr once a second,
/// overwriting the line; erases it when destroyed. Does nothing when `enabled` is false
/// (vfio-bench turns it on only when stderr is a terminal).
class Progress {
 public:
  /// `ops_done` and `bytes_done` are read from the progress thread (make them atomics' loads);
  /// `total` is the job's length (time), or zero when it ends by a count.
  Progress(bool enabled, std::string label, std::function<std::uint64_t()> ops_done,
           std::function<std::uint64_t()> bytes_done, std::chrono::duration<double> total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

 private:
  void run();

  std::string label_;
  std::function<std::uint64_t()> ops_;
  std::function<std::uint64_t()> bytes_;
  std::chrono::duration<double> total_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace vfe::bench
