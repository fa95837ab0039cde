#pragma once
/// \file
/// Logging: levelled, one line per message, safe from any thread, never throws.
///
/// The level starts from the environment variable VFE_LOG (error, warn, info, debug, trace;
/// default warn). Messages go to stderr unless the embedding program installs its own sink.

#include <fmt/format.h>

#include <optional>
#include <string_view>

namespace vfe {

enum class LogLevel : int { error = 0, warn = 1, info = 2, debug = 3, trace = 4 };

/// Receives each enabled message, already formatted, without a trailing newline. May be called
/// from any thread at once, so it must be thread-safe itself; it must not throw.
using LogSink = void (*)(LogLevel level, std::string_view message) noexcept;

/// "error", "warn", "info", "debug" or "trace" to a level; nullopt for anything else.
[[nodiscard]] std::optional<LogLevel> parse_log_level(std::string_view name) noexcept;
[[nodiscard]] std::string_view log_level_name(LogLevel level) noexcept;

/// Sets the most verbose level that is written. Thread-safe.
void set_log_level(LogLevel level) noexcept;
[[nodiscard]] LogLevel log_level() noexcept;
[[nodiscard]] inline bool log_enabled(LogLevel level) noexcept { return level <= log_level(); }

/// Replaces the sink; nullptr restores the default (stderr, one write per line). Thread-safe.
void set_log_sink(LogSink sink) noexcept;

/// Hands one message to the sink if `level` is enabled.
void log_write(LogLevel level, std::string_view message) noexcept;

/// Formats (only when enabled) and writes one message. Never throws: a formatting failure is
/// reported in place of the message.
template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) noexcept {
  if (!log_enabled(level)) {
    return;
  }
  try {
    log_write(level, fmt::format(format, std::forward<Args>(args)...));
  } catch (...) {
    log_write(level, "(log message could not be formatted)");
  }
}

template <class... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) noexcept {
  log(LogLevel::error, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) noexcept {
  log(LogLevel::warn, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) noexcept {
  log(LogLevel::info, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) noexcept {
  log(LogLevel::debug, f, std::forward<Args>(args)...);
}

}  // namespace vfe
