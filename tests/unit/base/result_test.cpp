#include "base/result.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace vfe {
namespace {

Result<int> half(int v) {
  if (v % 2 != 0) {
    return Error::invalid("half", "odd input");
  }
  return v / 2;
}

Result<int> quarter(int v) {
  VFE_TRY_ASSIGN(const int h, half(v));
  VFE_TRY_ASSIGN(const int q, half(h));
  return q;
}

Result<void> check_even(int v) {
  VFE_TRY(half(v));
  return ok();
}

TEST(Result, HoldsValue) {
  const Result<int> r = half(8);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(*r, 4);
  EXPECT_EQ(r.value(), 4);
}

TEST(Result, HoldsError) {
  const Result<int> r = half(3);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is(EINVAL));
  EXPECT_STREQ(r.error().op, "half");
  EXPECT_EQ(r.error().detail, "odd input");
}

TEST(Result, TryAssignPropagatesTheFirstError) {
  EXPECT_EQ(*quarter(12), 3);
  const auto r = quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "odd input");
}

TEST(Result, TryOnVoid) {
  EXPECT_TRUE(check_even(2));
  const auto r = check_even(1);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(EINVAL));
}

TEST(Result, MoveOnlyValue) {
  Result<std::unique_ptr<int>> r(std::make_unique<int>(7));
  ASSERT_TRUE(r);
  std::unique_ptr<int> p = std::move(r).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
}

TEST(Result, ArrowReachesMembers) {
  const Result<std::string> r(std::string("abc"));
  EXPECT_EQ(r->size(), 3U);
}

// Reading the wrong alternative is a clear death in every build, release included: the error's
// message on stderr, then abort, instead of a read of whatever the variant holds.
TEST(ResultDeathTest, ValueOfAnErrorAbortsWithTheMessage) {
  const char* expected = "Result::value\\(\\) on an Error: half: odd input \\(Invalid argument\\)";
  EXPECT_DEATH(static_cast<void>(half(3).value()), expected);
  EXPECT_DEATH(static_cast<void>(*half(3)), expected);
  const Result<std::string> r(Error::invalid("half", "odd input"));
  EXPECT_DEATH(static_cast<void>(r->size()), expected);
  EXPECT_DEATH(check_even(1).value(), expected);
}

TEST(ResultDeathTest, ErrorOfAValueAborts) {
  EXPECT_DEATH(static_cast<void>(half(4).error()), "Result::error\\(\\) on a value");
  EXPECT_DEATH(static_cast<void>(check_even(2).error()), "Result::error\\(\\) on a value");
}

TEST(Error, MessageNamesOperationDetailAndReason) {
  const Error e = Error::from_errno(EACCES, "open", "/dev/vfio/7: run as root or chown the node");
  EXPECT_EQ(e.message(), "open: /dev/vfio/7: run as root or chown the node (Permission denied)");
  EXPECT_TRUE(e.is(EACCES));
  EXPECT_FALSE(e.is(EINVAL));
}

TEST(Error, MessageWithoutCodeOrDetail) {
  EXPECT_EQ((Error{{}, "probe", "no device"}).message(), "probe: no device");
  EXPECT_EQ((Error{{}, "probe", ""}).message(), "probe");
  EXPECT_EQ(Error::not_supported("map", "hugepages").message(),
            "map: hugepages (Operation not supported)");
}

}  // namespace
}  // namespace vfe
