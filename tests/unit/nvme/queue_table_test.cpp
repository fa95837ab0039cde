// The controller's queue table: IDs handed out lowest first within what the controller granted
// (and, for interrupt-driven queues, below the MSI-X vector count), freed IDs reused, and the
// live queues listed for the watchdog and recovery.
#include "drivers/nvme/queue_table.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace vfe::nvme {
namespace {

// A queue that only has an ID: enough for the table.
class IdOnly final : public HostedQueue {
 public:
  explicit IdOnly(std::uint16_t id) : id_(id) {}
  std::uint16_t queue_id() const noexcept override { return id_; }
  Result<void> create_on_device(std::uint64_t) override { return ok(); }
  Result<void> delete_on_device() override { return ok(); }
  std::uint64_t device_generation() const noexcept override { return 0; }
  Result<void> fail_requests(int) override { return ok(); }
  Result<void> requeue_requests(int) override { return ok(); }
  Result<void> restart_requests() override { return ok(); }
  void post_age_check(std::uint32_t) noexcept override {}
  std::optional<std::uint16_t> late_command() const noexcept override { return std::nullopt; }

 private:
  std::uint16_t id_;
};

TEST(QueueTable, HandsOutTheLowestFreeIdWithinTheGrant) {
  QueueTable t;
  t.reset(3);
  EXPECT_EQ(*t.claim(false, 0), 1);
  EXPECT_EQ(*t.claim(false, 0), 2);
  EXPECT_EQ(*t.claim(false, 0), 3);
  const auto full = t.claim(false, 0);
  ASSERT_FALSE(full);
  EXPECT_TRUE(full.error().is(EBUSY));
  EXPECT_NE(full.error().message().find("all 3 I/O queues"), std::string::npos) << full.error().message();
  t.release(2);
  EXPECT_EQ(*t.claim(false, 0), 2) << "a freed ID is used again";
}

TEST(QueueTable, AnInterruptDrivenQueueNeedsAVectorAsHighAsItsId) {
  QueueTable t;
  t.reset(4);
  EXPECT_EQ(*t.claim(true, 3), 1);  // vectors 0..2: queue IDs 1 and 2 have one
  EXPECT_EQ(*t.claim(true, 3), 2);
  const auto none = t.claim(true, 3);
  ASSERT_FALSE(none);
  EXPECT_TRUE(none.error().is(EBUSY));
  EXPECT_NE(none.error().message().find("with an MSI-X vector"), std::string::npos) << none.error().message();
  EXPECT_EQ(*t.claim(false, 3), 3) << "a polled queue needs no vector";
  const auto no_msix = QueueTable{}.claim(true, 0);
  EXPECT_TRUE(no_msix.error().is(ENOTSUP)) << no_msix.error().message();
}

TEST(QueueTable, ListsTheLiveQueues) {
  QueueTable t;
  t.reset(4);
  IdOnly a(1), b(2);
  t.add(a);
  t.add(b);
  EXPECT_EQ(t.size(), 2U);
  t.remove(a);
  std::vector<std::uint16_t> seen;
  t.for_each([&](HostedQueue& q) { seen.push_back(q.queue_id()); });
  EXPECT_EQ(seen, std::vector<std::uint16_t>{2});
  t.remove(a);  // not listed: nothing happens
  EXPECT_EQ(t.size(), 1U);
}

}  // namespace
}  // namespace vfe::nvme
