// Controller options that cannot work are refused with a clear error before any device is
// touched (the BDF below does not exist: the options are checked first).
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "drivers/nvme/controller.hpp"

namespace vfe::nvme {
namespace {

void expect_refused(const ControllerOptions& o, const std::string& words) {
  auto c = Controller::create("0000:ff:1f.7", o);
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().is(EINVAL)) << c.error().message();
  EXPECT_NE(c.error().message().find(words), std::string::npos) << c.error().message();
}

TEST(ControllerOptions, AZeroWatchdogPeriodOrTimeoutIsRefused) {
  ControllerOptions o;
  o.watchdog_period = std::chrono::milliseconds(0);
  expect_refused(o, "watchdog_period (0 ms) and io_timeout (30000 ms) must be positive");
  o = {};
  o.io_timeout = std::chrono::milliseconds(-1);
  expect_refused(o, "must be positive");
}

TEST(ControllerOptions, MoreRetriesThanARequestCanCountAreRefused) {
  ControllerOptions o;
  o.retries = kMaxRetries + 1;
  expect_refused(o, "retries = 256: at most 255");
}

}  // namespace
}  // namespace vfe::nvme
