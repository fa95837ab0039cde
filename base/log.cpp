#include "base/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace vfe {
namespace {

constexpr std::string_view kNames[] = {"error", "warn", "info", "debug", "trace"};

LogLevel level_from_env() noexcept {
  const char* env = std::getenv("VFE_LOG");
  if (env == nullptr) {
    return LogLevel::warn;
  }
  return parse_log_level(env).value_or(LogLevel::warn);
}

// Function-local statics: initialised on first use, so logging from another static's
// constructor sees a valid level.
std::atomic<LogLevel>& level_var() noexcept {
  static std::atomic<LogLevel> level{level_from_env()};
  return level;
}

std::atomic<LogSink>& sink_var() noexcept {
  static std::atomic<LogSink> sink{nullptr};
  return sink;
}

void stderr_sink(LogLevel level, std::string_view message) noexcept {
  // One write() per line keeps lines from different threads whole.
  std::string line;
  try {
    line.reserve(message.size() + 16);
    line.append("vfe: ").append(log_level_name(level)).append(": ").append(message).append("\n");
  } catch (...) {
    return;
  }
  const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  static_cast<void>(n);  // nowhere left to report a failed write to stderr
}

}  // namespace

std::optional<LogLevel> parse_log_level(std::string_view name) noexcept {
  for (std::size_t i = 0; i < std::size(kNames); ++i) {
    if (kNames[i] == name) {
      return static_cast<LogLevel>(i);
    }
  }
  return std::nullopt;
}

std::string_view log_level_name(LogLevel level) noexcept {
  const auto i = static_cast<std::size_t>(level);
  return i < std::size(kNames) ? kNames[i] : "?";
}

void set_log_level(LogLevel level) noexcept { level_var().store(level, std::memory_order_relaxed); }

LogLevel log_level() noexcept { return level_var().load(std::memory_order_relaxed); }

void set_log_sink(LogSink sink) noexcept { sink_var().store(sink, std::memory_order_release); }

void log_write(LogLevel level, std::string_view message) noexcept {
  if (!log_enabled(level)) {
    return;
  }
  LogSink sink = sink_var().load(std::memory_order_acquire);
  (sink != nullptr ? sink : stderr_sink)(level, message);
}

}  // namespace vfe
