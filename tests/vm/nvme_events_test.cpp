// Asynchronous events from the real controller: QEMU's reports a SMART / health event when its
// temperature is at or above the over-temperature threshold set through Set Features. The driver
// keeps event requests waiting, reads the health log the event names and hands both to the
// application, and does the same after a controller reset (which drops the waiting requests).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using std::chrono::milliseconds;

// The events an on_event callback saw.
class Events {
 public:
  void add(const nvme::AsyncEvent& e) {
    std::lock_guard lock(mu_);
    seen_.push_back(e);
    cv_.notify_all();
  }
  // Waits until `n` events arrived; the n-th, or nullopt after `limit`.
  std::optional<nvme::AsyncEvent> wait(std::size_t n, milliseconds limit) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, limit, [&] { return seen_.size() >= n; })) {
      return std::nullopt;
    }
    return seen_[n - 1];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<nvme::AsyncEvent> seen_;
};

// §5.21.1.4 Temperature Threshold: the composite sensor's over-temperature threshold, in kelvin.
Result<nvme::Cqe> set_over_temperature(nvme::Controller& c, std::uint16_t kelvin) {
  nvme::Sqe cmd{};
  cmd.opcode = nvme::admin::kSetFeatures;
  cmd.cdw10 = nvme::feature::kTemperatureThreshold;
  cmd.cdw11 = kelvin;  // TMPSEL 0 (composite), THSEL 0 (over)
  return c.admin(cmd, "set features: temperature threshold");
}

TEST(NvmeEvents, ATemperatureOverItsThresholdIsReportedWithTheHealthLogAlsoAfterAReset) {
  Events events;
  nvme::ControllerOptions opts;
  opts.watchdog_period = milliseconds(20);
  opts.on_event = [&](const nvme::AsyncEvent& e) { events.add(e); };
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0, opts));
  std::printf("AERL %u: %u event requests wait\n", c->identity().aerl, std::min(c->identity().aerl + 1U, 4U));
  for (std::uint64_t round = 1; round <= 2; ++round) {
    if (round == 2) {
      ASSERT_TRUE(c->device().reset());  // an FLR: the controller drops the waiting requests
      ASSERT_NO_FATAL_FAILURE(wait_for_reset(*c, 1));
    }
    VFE_ASSERT_OK(set_over_temperature(*c, 273));  // 0 °C: the controller is warmer
    const auto e = events.wait(round, milliseconds(5000));
    ASSERT_TRUE(e) << "no event within 5 s in round " << round;
    EXPECT_EQ(e->type, nvme::AsyncEventType::health) << e->describe();
    EXPECT_EQ(e->info, 1) << "temperature threshold: " << e->describe();
    EXPECT_EQ(e->log_page, nvme::log_page::kHealth);
    ASSERT_EQ(e->log.size(), 512U) << "the health log was read for the event";
    EXPECT_NE(e->log[0] & 0x02, 0) << "critical warning bit 1: temperature";
    const unsigned kelvin = e->log[1] | (e->log[2] << 8);  // composite temperature, bytes 2:1
    EXPECT_GT(kelvin, 273U);
    std::printf("event %llu: %s, composite temperature %u K\n", static_cast<unsigned long long>(round),
                e->describe().c_str(), kelvin);
    VFE_ASSERT_OK(set_over_temperature(*c, 343));  // QEMU's default again
  }
  EXPECT_EQ(c->stats().events.load(), 2U);
  EXPECT_EQ(c->state(), nvme::ControllerState::running) << c->failure();
}

}  // namespace
}  // namespace vfe::vmtest
