#include "base/log.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <string>
#include <vector>

namespace vfe {
namespace {

std::vector<std::pair<LogLevel, std::string>>& captured() {
  static std::vector<std::pair<LogLevel, std::string>> lines;
  return lines;
}

void capture_sink(LogLevel level, std::string_view message) noexcept {
  captured().emplace_back(level, std::string(message));
}

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = log_level();
    captured().clear();
    set_log_sink(capture_sink);
  }
  void TearDown() override {
    set_log_sink(nullptr);
    set_log_level(saved_);
  }
  LogLevel saved_ = LogLevel::warn;
};

TEST_F(LogTest, WritesEnabledLevelsOnly) {
  set_log_level(LogLevel::warn);
  log_error("e{}", 1);
  log_warn("w{}", 2);
  log_info("i{}", 3);
  log_debug("d{}", 4);
  ASSERT_EQ(captured().size(), 2U);
  EXPECT_EQ(captured()[0], std::make_pair(LogLevel::error, std::string("e1")));
  EXPECT_EQ(captured()[1], std::make_pair(LogLevel::warn, std::string("w2")));
}

TEST_F(LogTest, DebugLevelLetsEverythingButTraceThrough) {
  set_log_level(LogLevel::debug);
  log_debug("x");
  log(LogLevel::trace, "y");
  ASSERT_EQ(captured().size(), 1U);
  EXPECT_EQ(captured()[0].second, "x");
}

TEST(LogLevelNames, RoundTrip) {
  for (const auto level : {LogLevel::error, LogLevel::warn, LogLevel::info, LogLevel::debug,
                           LogLevel::trace}) {
    EXPECT_EQ(parse_log_level(log_level_name(level)), level);
  }
  EXPECT_EQ(parse_log_level("verbose"), std::nullopt);
  EXPECT_EQ(parse_log_level(""), std::nullopt);
}

}  // namespace
}  // namespace vfe

namespace vfe {
namespace {

std::atomic<int> g_lines{0};
void counting_sink(LogLevel, std::string_view message) noexcept {
  if (message.rfind("thread ", 0) == 0) {
    g_lines.fetch_add(1, std::memory_order_relaxed);
  }
}

// Logging, level changes and sink changes from several threads at once (run under TSan in the
// tsan preset): every enabled message reaches the sink exactly once.
TEST(LogThreads, ConcurrentLoggingReachesTheSinkOnce) {
  const LogLevel saved = log_level();
  set_log_level(LogLevel::info);
  set_log_sink(counting_sink);
  g_lines = 0;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kPerThread; ++i) {
        log_info("thread {} line {}", t, i);
        log_debug("thread {} hidden {}", t, i);  // below the level: never reaches the sink
        set_log_level(LogLevel::info);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  set_log_sink(nullptr);
  set_log_level(saved);
  EXPECT_EQ(g_lines.load(), kThreads * kPerThread);
}

}  // namespace
}  // namespace vfe
