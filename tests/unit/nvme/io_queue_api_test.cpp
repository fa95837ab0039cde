// What IoQueue lets an application do, checked at compile time: requests go in through `submit`
// only, never through the engine's unvalidated `try_submit` / `submit_bulk`; and what only its
// controller may do (re-create it, requeue or fail its requests) is out of reach.
#include <gtest/gtest.h>

#include <type_traits>

#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/io_queue.hpp"

namespace vfe::nvme {
namespace {

template <class Q>
concept HasTrySubmit = requires(Q& q, engine::Request* r) { q.try_submit(r); };
template <class Q>
concept HasSubmitBulk = requires(Q& q, std::span<engine::Request* const> r) { q.submit_bulk(r); };
template <class Q>
concept HasSubmit = requires(Q& q, IoRequest& r) { q.submit(r); };

template <class Q>
concept HasRequeue = requires(Q& q) { q.requeue_requests(0); };
template <class Q>
concept HasCreateOnDevice = requires(Q& q) { q.create_on_device(0); };
template <class C>
concept HasRetire = requires(C& c, HostedQueue& q) { c.retire(q); };

TEST(IoQueueApi, WhatOnlyTheControllerMayDoIsPrivate) {
  static_assert(!HasRequeue<IoQueue>);
  static_assert(!HasCreateOnDevice<IoQueue>);
  static_assert(!std::is_convertible_v<IoQueue*, HostedQueue*>, "the controller's view is not the application's");
  static_assert(!HasRetire<Controller>);
  static_assert(!std::is_convertible_v<Controller*, QueueHost*>, "the queues' view is not the application's");
  // The concepts see a public member where there is one:
  EXPECT_TRUE(HasRequeue<HostedQueue>);
  EXPECT_TRUE(HasRetire<QueueHost>);
}

TEST(IoQueueApi, OnlyValidatedSubmissionIsOffered) {
  static_assert(HasSubmit<IoQueue>);
  static_assert(!HasTrySubmit<IoQueue>, "try_submit would skip submit's validation");
  static_assert(!HasSubmitBulk<IoQueue>, "submit_bulk would skip submit's validation");
  static_assert(!std::is_convertible_v<IoQueue*, engine::QueuePair*>,
                "through a QueuePair pointer, try_submit would be reachable again");
  // The checks above are compile-time; that the concepts can see a public member at all:
  EXPECT_TRUE(HasTrySubmit<engine::QueuePair>);
  EXPECT_TRUE(HasSubmit<IoQueue>);
}

// [SQ | CQ | PRP list pages per command slot]: as many list pages as MDTS needs (chained past
// one), as far as the queue stays within one 2 MiB hugepage.
TEST(IoQueueMemory, ChainedListPagesWhileTheQueueFitsOneHugepage) {
  EXPECT_EQ(IoQueue::memory_bytes(256, 4096, 512U << 10), 20480U + 255U * 4096) << "MDTS 512 KiB: a page a slot";
  EXPECT_EQ(IoQueue::memory_bytes(32, 4096, 4U << 20), 8192U + 31U * 2 * 4096) << "4 MiB, 1023 entries: two pages";
  EXPECT_EQ(IoQueue::memory_bytes(256, 4096, 4U << 20), 20480U + 255U * 4096)
      << "two pages a slot would pass 2 MiB: one page, and the queue carries 2 MiB and a page a command";
  EXPECT_EQ(IoQueue::memory_bytes(64, 4096, 8U << 20), 8192U + 63U * 5 * 4096) << "8 MiB: five pages a slot";
}

}  // namespace
}  // namespace vfe::nvme
