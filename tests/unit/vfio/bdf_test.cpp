#include "vfio/bdf.hpp"

#include <gtest/gtest.h>

namespace vfe::vfio {
namespace {

TEST(Bdf, ParsesFullForm) {
  const auto b = Bdf::parse("0000:81:00.1");
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(b->domain, 0U);
  EXPECT_EQ(b->bus, 0x81);
  EXPECT_EQ(b->device, 0);
  EXPECT_EQ(b->function, 1);
  EXPECT_EQ(b->to_string(), "0000:81:00.1");
}

TEST(Bdf, ParsesShortFormAsDomainZero) {
  const auto b = Bdf::parse("81:1f.7");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->to_string(), "0000:81:1f.7");
}

TEST(Bdf, AcceptsUpperCaseAndWideDomains) {
  EXPECT_EQ(Bdf::parse("ABCD:EF:0A.3")->to_string(), "abcd:ef:0a.3");
  EXPECT_EQ(Bdf::parse("10000:00:02.0")->to_string(), "10000:00:02.0");
}

TEST(Bdf, OrdersByAddress) {
  EXPECT_LT(*Bdf::parse("00:04.0"), *Bdf::parse("80:00.0"));
  EXPECT_EQ(*Bdf::parse("0000:00:04.0"), *Bdf::parse("00:04.0"));
}

class BadBdf : public ::testing::TestWithParam<const char*> {};

TEST_P(BadBdf, IsRejectedWithTheExpectedForm) {
  const auto b = Bdf::parse(GetParam());
  ASSERT_FALSE(b) << GetParam() << " parsed as " << b->to_string();
  EXPECT_TRUE(b.error().is(EINVAL));
  EXPECT_NE(b.error().detail.find("e.g. 0000:81:00.0"), std::string::npos) << b.error().message();
  EXPECT_NE(b.error().detail.find(GetParam()), std::string::npos);
}

TEST(Bdf, ControlCharactersAreShownEscaped) {
  const auto b = Bdf::parse("81:00.0\n");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().detail.rfind("'81:00.0\\n' is not a PCI address (", 0), 0U) << b.error().detail;
  const auto c = Bdf::parse("81:00.\t\x01\xff");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().detail.rfind("'81:00.\\t\\x01\\xff' is not", 0), 0U) << c.error().detail;
}

INSTANTIATE_TEST_SUITE_P(Malformed, BadBdf,
                         ::testing::Values("", "81:00", "8100.0", "81:00.8", "81:20.0", "1:00.0",
                                           "081:00.0", "81:0.0", "81:00.00", "000:81:00.0",
                                           "123456789:81:00.0", "0000:81:00.g", "0x81:00.0",
                                           " 81:00.0", "81:00.0 ", ":00.0", "0000::00.0",
                                           "a:b:81:00.0", "+1:00.0"));

}  // namespace
}  // namespace vfe::vfio
