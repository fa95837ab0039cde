#include "base/log.hpp"

#include <gtest/gtest.h>

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
