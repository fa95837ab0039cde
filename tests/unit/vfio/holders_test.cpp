#include "vfio/holders.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/unit/support/fake_sysfs.hpp"

namespace vfe::vfio {
namespace {

using test::FakeSysfs;

TEST_F(FakeSysfs, HoldersAreTheProcessesWithAnFdOnThePathInPidOrder) {
  add_holder(300, "b", 4, "/dev/vfio/7");
  add_holder(20, "a", 9, "/dev/vfio/7");
  add_holder(21, "other", 3, "/dev/vfio/8");
  add_holder(22, "prefix", 3, "/dev/vfio/70");
  std::filesystem::create_directories(root_ / "proc/self/fd");  // not a pid: skipped
  const auto holders = processes_holding("/dev/vfio/7");
  ASSERT_EQ(holders.size(), 2U);
  EXPECT_EQ(holders[0].pid, 20);
  EXPECT_EQ(holders[0].name, "a");
  EXPECT_EQ(holders[1].pid, 300);
  EXPECT_EQ(describe_holders(holders), "process 20 (a), process 300 (b)");
  EXPECT_EQ(held_by("/dev/vfio/7"), "/dev/vfio/7 is held by process 20 (a), process 300 (b)");
}

TEST_F(FakeSysfs, NoHolderMeansAnEmptyDescription) {
  EXPECT_TRUE(processes_holding("/dev/vfio/7").empty());
  EXPECT_EQ(held_by("/dev/vfio/7"), "");
}

TEST_F(FakeSysfs, TheCallerItselfIsCalledThisProcess) {
  add_holder(::getpid(), "me", 5, "/dev/iommu");
  EXPECT_EQ(held_by("/dev/iommu"),
            "/dev/iommu is held by this process (pid " + std::to_string(::getpid()) + ")");
}

TEST_F(FakeSysfs, AProcessWithoutCommOrReadableFdsIsHandled) {
  std::filesystem::create_directories(root_ / "proc/55");  // no fd folder: not readable
  std::filesystem::create_directories(root_ / "proc/56/fd");
  std::filesystem::create_symlink("/dev/vfio/7", root_ / "proc/56/fd/3");  // no comm
  const auto holders = processes_holding("/dev/vfio/7");
  ASSERT_EQ(holders.size(), 1U);
  EXPECT_EQ(holders[0].pid, 56);
  EXPECT_EQ(holders[0].name, "?");
}

// The real /proc: this process holds what it opens.
TEST(Holders, FindsThisProcessInTheRealProc) {
  char path[] = "/tmp/vfe-holders-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const auto holders = processes_holding(path);
  ::close(fd);
  ::unlink(path);
  ASSERT_EQ(holders.size(), 1U);
  EXPECT_EQ(holders[0].pid, ::getpid());
}

}  // namespace
}  // namespace vfe::vfio
