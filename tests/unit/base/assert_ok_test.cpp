// VFE_ASSERT_OK and VFE_ASSERT_OK_AND_ASSIGN (tests/unit/support/assert_ok.hpp): an Error is a
// fatal failure carrying the expression and the error's message, and nothing after it runs.
#include "tests/unit/support/assert_ok.hpp"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <memory>

namespace vfe {
namespace {

Result<int> parse(bool good) {
  if (!good) {
    return Error::invalid("parse", "not a number");
  }
  return 7;
}

Result<void> check(bool good) {
  if (!good) {
    return Error::invalid("check", "out of range");
  }
  return ok();
}

// Set by the statement after the check: EXPECT_FATAL_FAILURE's statement cannot see locals.
bool reached = false;
int assigned = 0;

void assign_then_continue(bool good) {
  VFE_ASSERT_OK_AND_ASSIGN(assigned, parse(good));
  reached = true;
}

void check_then_continue(bool good) {
  VFE_ASSERT_OK(check(good)) << "with context";
  reached = true;
}

TEST(AssertOk, AssignsTheValueAndGoesOn) {
  VFE_ASSERT_OK_AND_ASSIGN(const int declared, parse(true));
  EXPECT_EQ(declared, 7);
  VFE_ASSERT_OK_AND_ASSIGN(auto moved, Result<std::unique_ptr<int>>(std::make_unique<int>(3)));
  ASSERT_NE(moved, nullptr);
  EXPECT_EQ(*moved, 3);
  VFE_ASSERT_OK(parse(true));
  reached = false;
  check_then_continue(true);
  EXPECT_TRUE(reached);
}

TEST(AssertOk, AnErrorIsAFatalFailureWithTheExpressionAndTheMessage) {
  reached = false;
  assigned = 0;
  EXPECT_FATAL_FAILURE(assign_then_continue(false),
                       "parse(good) failed: parse: not a number (Invalid argument)");
  EXPECT_FALSE(reached) << "the statement after a failed VFE_ASSERT_OK_AND_ASSIGN ran";
  EXPECT_EQ(assigned, 0);

  EXPECT_FATAL_FAILURE(check_then_continue(false), "check(good) failed: check: out of range");
  EXPECT_FATAL_FAILURE(check_then_continue(false), "with context");
  EXPECT_FALSE(reached) << "the statement after a failed VFE_ASSERT_OK ran";
}

}  // namespace
}  // namespace vfe
