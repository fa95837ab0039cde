#include "base/scope_guard.hpp"

#include <gtest/gtest.h>

namespace vfe {
namespace {

TEST(ScopeGuard, RunsOnScopeExit) {
  int undone = 0;
  {
    ScopeGuard g([&]() noexcept { ++undone; });
  }
  EXPECT_EQ(undone, 1);
}

TEST(ScopeGuard, DismissedGuardDoesNothing) {
  int undone = 0;
  {
    ScopeGuard g([&]() noexcept { ++undone; });
    g.dismiss();
  }
  EXPECT_EQ(undone, 0);
}

TEST(ScopeGuard, UndoesInReverseOrder) {
  std::string order;
  {
    ScopeGuard first([&]() noexcept { order += "1"; });
    ScopeGuard second([&]() noexcept { order += "2"; });
  }
  EXPECT_EQ(order, "21");
}

}  // namespace
}  // namespace vfe
