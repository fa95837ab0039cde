// AdminQueue over a fake BAR 0 and plain memory: the test plays the controller by writing
// completion entries, so what happens to posted commands (Asynchronous Event Requests) around a
// synchronous command and a controller reset can be checked exactly.
#include "drivers/nvme/admin_queue.hpp"

#include <gtest/gtest.h>
#include <linux/vfio.h>

#include <array>
#include <chrono>
#include <optional>

#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_vfio.hpp"

namespace vfe::nvme {
namespace {

using std::chrono::milliseconds;

constexpr std::uint32_t kBar0 = VFIO_PCI_BAR0_REGION_INDEX;
constexpr std::uint64_t kBarSize = 0x2000;  // registers and the doorbells
constexpr std::uint16_t kEntries = 8;

class AdminQueueTest : public test::VfioFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(VfioFixture::SetUp());
    const auto offset = static_cast<std::uint64_t>(kBar0) << 40;
    sys_.back(device_path(test::kDeviceName), static_cast<off_t>(offset), kBarSize);
    add_region(kBar0, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
               kBarSize, offset);
    VFE_ASSERT_OK_AND_ASSIGN(auto dev, open_device());
    dev_.emplace(std::move(dev));
    VFE_ASSERT_OK_AND_ASSIGN(auto bar, mmio::Bar::open(*dev_, kBar0));
    bar_.emplace(std::move(bar));
    admin_.emplace(*bar_, 4, sq_.data(), cq_.data(), kEntries);
    admin_->reset();
  }

  // The controller's answer to command `cid` in the next completion slot (phase 1: first pass).
  void complete(std::uint16_t cid, std::uint32_t dw0 = 0) {
    cq_.at(next_cqe_++) = Cqe{.dw0 = dw0, .dw1 = 0, .sqhd = 0, .sqid = 0, .cid = cid, .status = 1};
  }

  static Sqe event_request() {
    Sqe cmd{};
    cmd.opcode = admin::kAsyncEventRequest;
    return cmd;
  }

  std::optional<vfio::Device> dev_;
  std::optional<mmio::Bar> bar_;
  std::array<Sqe, kEntries> sq_{};
  std::array<Cqe, kEntries> cq_{};
  std::optional<AdminQueue> admin_;
  std::size_t next_cqe_ = 0;
};

TEST_F(AdminQueueTest, AnEventThatArrivesDuringACommandIsHandedOutAfterIt) {
  ASSERT_TRUE(admin_->post(event_request(), "asynchronous event request"));  // command id 0
  complete(0, 0x00010102);  // the event, before the answer to the command below (id 1)
  complete(1);
  VFE_ASSERT_OK(admin_->execute(Sqe{}, milliseconds(100), "identify"));
  EXPECT_EQ(admin_->posted(), 0U);
  const auto events = admin_->take_posted();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].dw0, 0x00010102U);
  EXPECT_TRUE(admin_->take_posted().empty()) << "handed out once";
}

// A reset takes the outstanding requests away (the controller forgets them), but an event that
// already arrived happened: it is still handed out.
TEST_F(AdminQueueTest, AResetKeepsEventsThatArrivedAndDropsOutstandingRequests) {
  ASSERT_TRUE(admin_->post(event_request(), "asynchronous event request"));  // id 0
  ASSERT_TRUE(admin_->post(event_request(), "asynchronous event request"));  // id 1
  complete(0, 0x00020001);
  complete(2);
  VFE_ASSERT_OK(admin_->execute(Sqe{}, milliseconds(100), "get features"));
  admin_->reset();
  EXPECT_EQ(admin_->posted(), 0U) << "request 1 went with the reset";
  const auto events = admin_->take_posted();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].cid, 0U);
  EXPECT_EQ(events[0].dw0, 0x00020001U);
}

// The event was written to the completion queue but not reaped (no command ran, no watchdog tick
// came) when the controller was reset: it is found there and handed out all the same.
TEST_F(AdminQueueTest, AResetKeepsAnEventLeftInTheCompletionQueue) {
  ASSERT_TRUE(admin_->post(event_request(), "asynchronous event request"));  // id 0
  ASSERT_TRUE(admin_->post(event_request(), "asynchronous event request"));  // id 1
  complete(1, 0x00030002);
  admin_->reset();
  EXPECT_EQ(admin_->posted(), 0U);
  const auto events = admin_->take_posted();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].cid, 1U);
  EXPECT_EQ(events[0].dw0, 0x00030002U);
  // The queue starts over: the next answer is expected in the first slot, phase 1.
  next_cqe_ = 0;
  complete(0);
  VFE_ASSERT_OK(admin_->execute(Sqe{}, milliseconds(100), "identify"));
}

TEST_F(AdminQueueTest, ATimeoutBreaksTheQueueUntilAReset) {
  const auto r = admin_->execute(Sqe{}, milliseconds(1), "identify");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ETIMEDOUT));
  EXPECT_TRUE(admin_->broken());
  EXPECT_TRUE(test::error_of(admin_->post(event_request(), "asynchronous event request")).is(EIO));
  admin_->reset();
  EXPECT_FALSE(admin_->broken());
}

}  // namespace
}  // namespace vfe::nvme
