// SequenceTracker: in-order, late and duplicate arrivals, and its bounded memory.
#include "drivers/e1000e/sequence_tracker.hpp"

#include <gtest/gtest.h>

namespace vfe::e1000e {
namespace {

using Arrival = SequenceTracker::Arrival;

TEST(SequenceTracker, InOrderArrivalsLeaveNoGaps) {
  SequenceTracker t;
  for (std::uint64_t s = 0; s < 100; ++s) {
    EXPECT_EQ(t.accept(s), Arrival::in_order);
  }
  EXPECT_EQ(t.expected(), 100U);
  EXPECT_EQ(t.gaps(), 0U);
}

TEST(SequenceTracker, ASkippedNumberArrivingLaterIsReorderedOnce) {
  SequenceTracker t;
  EXPECT_EQ(t.accept(0), Arrival::in_order);
  EXPECT_EQ(t.accept(3), Arrival::in_order) << "a jump ahead";
  EXPECT_EQ(t.gaps(), 2U) << "1 and 2 are missing";
  EXPECT_EQ(t.accept(2), Arrival::late);
  EXPECT_EQ(t.accept(1), Arrival::late);
  EXPECT_EQ(t.gaps(), 0U);
  EXPECT_EQ(t.accept(1), Arrival::duplicate) << "filled already";
  EXPECT_EQ(t.accept(4), Arrival::in_order);
}

TEST(SequenceTracker, ARepeatedNumberIsADuplicate) {
  SequenceTracker t;
  EXPECT_EQ(t.accept(0), Arrival::in_order);
  EXPECT_EQ(t.accept(1), Arrival::in_order);
  EXPECT_EQ(t.accept(1), Arrival::duplicate);
  EXPECT_EQ(t.accept(0), Arrival::duplicate);
  EXPECT_EQ(t.expected(), 2U);
}

TEST(SequenceTracker, RemembersAtMostMaxGapsAndCountsTheRest) {
  SequenceTracker t(4);
  EXPECT_EQ(t.accept(10), Arrival::in_order);
  EXPECT_EQ(t.gaps(), 4U);
  EXPECT_EQ(t.untracked(), 6U);
  EXPECT_EQ(t.accept(0), Arrival::late) << "among the remembered gaps";
  EXPECT_EQ(t.accept(9), Arrival::duplicate) << "not remembered: reads as a duplicate";
  EXPECT_EQ(t.accept(12), Arrival::in_order);
  EXPECT_EQ(t.gaps(), 4U) << "room for the one freed: 11 is remembered";
  EXPECT_EQ(t.untracked(), 6U);
  EXPECT_EQ(t.accept(11), Arrival::late);
}

}  // namespace
}  // namespace vfe::e1000e
