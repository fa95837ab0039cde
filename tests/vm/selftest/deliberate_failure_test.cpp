// The rig's self-test: a binary with one passing and one failing test. Run through
// tests/vm/run.sh it must make the rig exit 1 ("a test failed"), never 0 and never 2; see
// selftest/check.sh.
#include <gtest/gtest.h>

TEST(RigSelfTest, Passes) { EXPECT_EQ(1 + 1, 2); }

TEST(RigSelfTest, FailsOnPurpose) { ADD_FAILURE() << "deliberate failure: the rig must report it"; }
