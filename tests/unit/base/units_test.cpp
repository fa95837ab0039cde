#include "base/units.hpp"

#include <gtest/gtest.h>

namespace vfe {
namespace {

TEST(Units, Pow2) {
  EXPECT_FALSE(is_pow2(0));
  EXPECT_TRUE(is_pow2(1));
  EXPECT_TRUE(is_pow2(4096));
  EXPECT_FALSE(is_pow2(4095));
  EXPECT_TRUE(is_pow2(std::uint64_t{1} << 63));
}

TEST(Units, Align) {
  EXPECT_EQ(align_up(0, 4096), 0U);
  EXPECT_EQ(align_up(1, 4096), 4096U);
  EXPECT_EQ(align_up(4096, 4096), 4096U);
  EXPECT_EQ(align_down(8191, 4096), 4096U);
  EXPECT_TRUE(is_aligned(2 * kMiB, 2 * kMiB));
  EXPECT_FALSE(is_aligned(2 * kMiB + 4096, 2 * kMiB));
}

TEST(Units, AlignUpOverflowIsDetected) {
  constexpr std::uint64_t kTop = ~std::uint64_t{0};
  EXPECT_FALSE(align_up_overflows(kTop - 4095, 4096));  // already aligned: stays
  EXPECT_TRUE(align_up_overflows(kTop - 4094, 4096));
  EXPECT_TRUE(align_up_overflows(kTop, 2));
  EXPECT_FALSE(align_up_overflows(kTop, 1));
}

}  // namespace
}  // namespace vfe
