#include "drivers/nvme/reset_budget.hpp"

#include <gtest/gtest.h>

namespace vfe::nvme {
namespace {

using std::chrono::milliseconds;
using Clock = ResetBudget::Clock;

TEST(ResetBudget, AllowsMaxWithinTheWindowThenRefuses) {
  ResetBudget b(3, milliseconds(1000));
  const Clock::time_point t0{};
  EXPECT_TRUE(b.spend(t0));
  EXPECT_TRUE(b.spend(t0 + milliseconds(10)));
  EXPECT_TRUE(b.spend(t0 + milliseconds(20)));
  EXPECT_FALSE(b.spend(t0 + milliseconds(30)));
  EXPECT_FALSE(b.spend(t0 + milliseconds(999))) << "the first reset is still within the window";
}

TEST(ResetBudget, AResetLeavesTheWindowAfterItsLength) {
  ResetBudget b(2, milliseconds(1000));
  const Clock::time_point t0{};
  ASSERT_TRUE(b.spend(t0));
  ASSERT_TRUE(b.spend(t0 + milliseconds(500)));
  EXPECT_FALSE(b.spend(t0 + milliseconds(900)));
  EXPECT_TRUE(b.spend(t0 + milliseconds(1000))) << "the one at t0 left the window";
  EXPECT_FALSE(b.spend(t0 + milliseconds(1100))) << "those at 500 and 1000 are within it";
  EXPECT_TRUE(b.spend(t0 + milliseconds(2000)));
}

TEST(ResetBudget, ARefusalIsNotCounted) {
  ResetBudget b(1, milliseconds(100));
  const Clock::time_point t0{};
  ASSERT_TRUE(b.spend(t0));
  for (int i = 1; i < 10; ++i) {
    EXPECT_FALSE(b.spend(t0 + milliseconds(i)));
  }
  EXPECT_TRUE(b.spend(t0 + milliseconds(100))) << "refusals must not keep the window full";
}

TEST(ResetBudget, ZeroMaxNeverResets) {
  ResetBudget b(0, milliseconds(100));
  EXPECT_FALSE(b.spend(Clock::time_point{}));
}

}  // namespace
}  // namespace vfe::nvme
