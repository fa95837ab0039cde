#include "irq/irq_set.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "tests/unit/support/fake_vfio.hpp"

namespace vfe::irq {
namespace {

using vfe::test::error_of;
using namespace std::chrono_literals;
using test::fail;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::Each;
using ::testing::HasSubstr;

constexpr std::uint32_t kTrigger = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
constexpr std::uint32_t kAttach = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// How many descriptors this process has open.
std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n;
}

// One VFIO_DEVICE_SET_IRQS as the fake kernel saw it.
struct SetIrqs {
  std::uint32_t argsz, flags, index, start, count;
  std::vector<std::int32_t> fds;
  bool enabled_fds_open;  // were the eventfds of the last enable still open at this call?
};

class IrqSetTest : public test::VfioFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(VfioFixture::SetUp());
    add_irq(VFIO_PCI_INTX_IRQ_INDEX,
            VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1);
    add_irq(VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 0);
    add_irq(VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 4);
    add_irq(VFIO_PCI_REQ_IRQ_INDEX, 0, 1);  // no eventfd signalling
    sys_.on_ptr(VFIO_DEVICE_SET_IRQS, [this](int fd, void* arg) { return set_irqs(fd, arg); });
    auto dev = open_device();
    ASSERT_TRUE(dev) << dev.error().message();
    dev_.emplace(std::move(*dev));
  }
  void TearDown() override {
    dev_.reset();
    VfioFixture::TearDown();
  }

  // Records the call; a software trigger signals the vector's eventfd as the kernel would.
  int set_irqs(int fd, void* arg) {
    EXPECT_EQ(sys_.path_of(fd), device_path(test::kDeviceName));
    vfio_irq_set head{};
    std::memcpy(&head, arg, sizeof(head));
    SetIrqs call{head.argsz, head.flags, head.index, head.start, head.count, {}, true};
    call.fds.resize((head.argsz - sizeof(head)) / sizeof(std::int32_t));
    if (!call.fds.empty()) {
      std::memcpy(call.fds.data(), static_cast<std::uint8_t*>(arg) + sizeof(head),
                  call.fds.size() * sizeof(std::int32_t));
    }
    for (const int e : enabled_) {
      call.enabled_fds_open = call.enabled_fds_open && is_open(e);
    }
    if (head.flags == kAttach && head.start == 0 && head.count != 0) {
      enabled_ = call.fds;
    }
    if (head.flags == kTrigger && head.count == 1 && head.start < enabled_.size()) {
      const std::uint64_t one = 1;
      EXPECT_EQ(::write(enabled_[head.start], &one, sizeof(one)), 8);
    }
    calls_.push_back(call);
    return next_error_ != 0 ? fail(std::exchange(next_error_, 0)) : 0;
  }

  std::optional<vfio::Device> dev_;
  std::vector<SetIrqs> calls_;
  std::vector<std::int32_t> enabled_;
  int next_error_ = 0;  // the next SET_IRQS fails with it
};

TEST(BuildIrqSet, HeaderThenOneInt32PerVector) {
  const std::int32_t fds[] = {7, 8, -1};
  const auto buf = build_irq_set(kAttach, IrqIndex::msix, 2, 3, fds);
  ASSERT_EQ(buf.size(), sizeof(vfio_irq_set) + 3 * sizeof(std::int32_t));
  vfio_irq_set head{};
  std::memcpy(&head, buf.data(), sizeof(head));
  EXPECT_EQ(head.argsz, buf.size());
  EXPECT_EQ(head.flags, kAttach);
  EXPECT_EQ(head.index, VFIO_PCI_MSIX_IRQ_INDEX);
  EXPECT_EQ(head.start, 2U);
  EXPECT_EQ(head.count, 3U);
  std::int32_t data[3] = {};
  std::memcpy(data, buf.data() + offsetof(vfio_irq_set, data), sizeof(data));
  EXPECT_THAT(data, ElementsAre(7, 8, -1));
}

TEST(BuildIrqSet, DataNoneCarriesNoPayload) {
  const std::int32_t fds[] = {7};
  const auto buf = build_irq_set(kTrigger, IrqIndex::intx, 0, 1, fds);
  ASSERT_EQ(buf.size(), sizeof(vfio_irq_set));
  vfio_irq_set head{};
  std::memcpy(&head, buf.data(), sizeof(head));
  EXPECT_EQ(head.argsz, sizeof(vfio_irq_set));
  EXPECT_EQ(head.index, VFIO_PCI_INTX_IRQ_INDEX);
}

TEST_F(IrqSetTest, CountZeroEnablesEveryVectorEachWithItsOwnEventfd) {
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix);
  ASSERT_TRUE(set) << set.error().message();
  EXPECT_EQ(set->index(), IrqIndex::msix);
  ASSERT_EQ(set->count(), 4U);
  ASSERT_EQ(calls_.size(), 1U);
  const SetIrqs& c = calls_[0];
  EXPECT_EQ(c.argsz, sizeof(vfio_irq_set) + 4 * sizeof(std::int32_t));
  EXPECT_EQ(c.flags, kAttach);
  EXPECT_EQ(c.index, VFIO_PCI_MSIX_IRQ_INDEX);
  EXPECT_EQ(c.start, 0U);
  EXPECT_EQ(c.count, 4U);
  EXPECT_THAT(c.fds, ElementsAre(set->eventfd(0), set->eventfd(1), set->eventfd(2),
                                 set->eventfd(3)));
  for (const int fd : c.fds) {
    EXPECT_EQ(sys_.path_of(fd), "eventfd");
    EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
  }
  EXPECT_EQ(set->eventfd(4), -1);
}

TEST_F(IrqSetTest, FewerVectorsThanOfferedMayBeEnabled) {
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix, 2);
  ASSERT_TRUE(set);
  EXPECT_EQ(set->count(), 2U);
  EXPECT_EQ(calls_.at(0).count, 2U);
}

TEST_F(IrqSetTest, MoreVectorsThanOfferedAreRefusedBeforeAnyEventfd) {
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix, 5);
  ASSERT_FALSE(set);
  EXPECT_TRUE(set.error().is(EINVAL));
  EXPECT_EQ(set.error().detail, "0000:00:04.0 has 4 MSI-X vectors; 5 asked for");
  EXPECT_TRUE(calls_.empty());
}

TEST_F(IrqSetTest, AbsentIndexIsNotSupported) {
  const auto msi = IrqSet::enable(*dev_, IrqIndex::msi);
  ASSERT_FALSE(msi);
  EXPECT_TRUE(msi.error().is(ENOTSUP));
  EXPECT_EQ(msi.error().detail, "0000:00:04.0 has no MSI interrupts");
  EXPECT_EQ(error_of(IrqSet::enable(*dev_, IrqIndex::req)).detail,
            "0000:00:04.0 has no REQ interrupts");  // offered, but not through an eventfd
  EXPECT_EQ(error_of(IrqSet::enable(*dev_, IrqIndex::err)).message(),
            "VFIO_DEVICE_GET_IRQ_INFO: 0000:00:04.0 irq index 3 (Invalid argument)");
  EXPECT_TRUE(calls_.empty());
}

TEST_F(IrqSetTest, FailedEnableClosesTheEventfdsAndDisablesNothing) {
  next_error_ = EINVAL;
  const auto before = open_fds();
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix);
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().message(),
            "VFIO_DEVICE_SET_IRQS: enable 0000:00:04.0 MSI-X: 4 vector(s) from 0 (Invalid argument)");
  ASSERT_EQ(calls_.size(), 1U);
  for (const int fd : calls_[0].fds) {
    EXPECT_FALSE(is_open(fd)) << fd;
  }
  EXPECT_EQ(open_fds(), before);
}

TEST_F(IrqSetTest, EventfdFailurePartWayClosesTheOnesMade) {
  sys_.eventfd_errno = EMFILE;
  sys_.eventfd_ok = 2;
  const auto before = open_fds();
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix);
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().message(), "eventfd: interrupt vector (Too many open files)");
  EXPECT_TRUE(calls_.empty());
  EXPECT_EQ(open_fds(), before);
}

TEST_F(IrqSetTest, DestructorDisablesTheIndexBeforeClosingTheEventfds) {
  std::vector<std::int32_t> fds;
  {
    auto set = IrqSet::enable(*dev_, IrqIndex::msix);
    ASSERT_TRUE(set);
    fds = calls_.at(0).fds;
  }
  ASSERT_EQ(calls_.size(), 2U);
  const SetIrqs& off = calls_[1];
  EXPECT_EQ(off.flags, kTrigger);
  EXPECT_EQ(off.index, VFIO_PCI_MSIX_IRQ_INDEX);
  EXPECT_EQ(off.start, 0U);
  EXPECT_EQ(off.count, 0U);
  EXPECT_EQ(off.argsz, sizeof(vfio_irq_set));
  EXPECT_TRUE(off.enabled_fds_open) << "an eventfd was closed while still attached";
  for (const int fd : fds) {
    EXPECT_FALSE(is_open(fd)) << fd;
  }
}

TEST_F(IrqSetTest, AMovedFromSetDisablesNothing) {
  std::optional<IrqSet> a;
  {
    auto r = IrqSet::enable(*dev_, IrqIndex::msix);
    ASSERT_TRUE(r);
    a.emplace(std::move(*r));
  }  // the moved-from set inside `r` goes here
  EXPECT_EQ(calls_.size(), 1U);
  {
    const IrqSet b(std::move(*a));
    EXPECT_EQ(b.count(), 4U);
  }
  EXPECT_EQ(calls_.size(), 2U);  // b disabled the index
  a.reset();
  EXPECT_EQ(calls_.size(), 2U);
}

std::vector<std::string>& warnings() {
  static std::vector<std::string> lines;
  return lines;
}
void capture(LogLevel level, std::string_view message) noexcept {
  if (level == LogLevel::warn) {
    warnings().emplace_back(message);
  }
}

TEST_F(IrqSetTest, AFailedDisableIsLogged) {
  warnings().clear();
  const LogLevel saved = log_level();
  set_log_level(LogLevel::warn);
  set_log_sink(capture);
  {
    auto set = IrqSet::enable(*dev_, IrqIndex::msix);
    ASSERT_TRUE(set);
    next_error_ = EIO;
  }
  set_log_sink(nullptr);
  set_log_level(saved);
  EXPECT_THAT(warnings(),
              ElementsAre("VFIO_DEVICE_SET_IRQS: disable 0000:00:04.0 MSI-X (Input/output error)"));
}

TEST_F(IrqSetTest, TriggerFiresOneVectorInSoftware) {
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix);
  ASSERT_TRUE(set);
  ASSERT_TRUE(set->trigger(2));
  const SetIrqs& c = calls_.back();
  EXPECT_EQ(c.flags, kTrigger);
  EXPECT_EQ(c.start, 2U);
  EXPECT_EQ(c.count, 1U);
  EXPECT_EQ(c.argsz, sizeof(vfio_irq_set));
  EXPECT_EQ(set->wait(2, 0ms).value(), 1U);
  const auto none = set->wait(1, 0ms);
  ASSERT_FALSE(none);
  EXPECT_TRUE(none.error().is(ETIMEDOUT));
  EXPECT_EQ(none.error().detail, "no MSI-X vector 1 within 0 ms");
}

TEST_F(IrqSetTest, DetachAndReattachOneVector) {
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix);
  ASSERT_TRUE(set);
  ASSERT_TRUE(set->set_attached(3, false));
  EXPECT_EQ(calls_.back().flags, kAttach);
  EXPECT_EQ(calls_.back().start, 3U);
  EXPECT_EQ(calls_.back().count, 1U);
  EXPECT_THAT(calls_.back().fds, ElementsAre(-1));
  ASSERT_TRUE(set->set_attached(3, true));
  EXPECT_THAT(calls_.back().fds, ElementsAre(set->eventfd(3)));
}

TEST_F(IrqSetTest, MaskAndUnmaskWhereTheIndexIsMaskable) {
  const auto intx = IrqSet::enable(*dev_, IrqIndex::intx);
  ASSERT_TRUE(intx);
  ASSERT_TRUE(intx->mask(0));
  EXPECT_EQ(calls_.back().flags, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK);
  EXPECT_EQ(calls_.back().index, VFIO_PCI_INTX_IRQ_INDEX);
  EXPECT_EQ(calls_.back().start, 0U);
  EXPECT_EQ(calls_.back().count, 1U);
  ASSERT_TRUE(intx->unmask(0));
  EXPECT_EQ(calls_.back().flags, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK);
}

TEST_F(IrqSetTest, MaskIsRefusedWhereTheIndexIsNotMaskable) {
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix);
  ASSERT_TRUE(set);
  const auto r = set->mask(0);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(ENOTSUP));
  EXPECT_EQ(r.error().detail, "MSI-X vectors can't be masked through VFIO");
  EXPECT_TRUE(error_of(set->unmask(0)).is(ENOTSUP));
  EXPECT_EQ(calls_.size(), 1U);
}

TEST_F(IrqSetTest, VectorsBeyondTheEnabledOnesAreRefused) {
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix, 2);
  ASSERT_TRUE(set);
  const auto r = set->trigger(2);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "trigger interrupt: MSI-X vector 2 is beyond the 2 enabled (Invalid argument)");
  std::vector<bool> refused{!set->set_attached(2, true), !set->mask(7), !set->unmask(2),
                            !set->wait(2, 0ms)};
  EXPECT_THAT(refused, Each(true));
  EXPECT_EQ(calls_.size(), 1U);
}

TEST_F(IrqSetTest, KernelErrorsNameTheAction) {
  const auto set = IrqSet::enable(*dev_, IrqIndex::msix);
  ASSERT_TRUE(set);
  next_error_ = EINVAL;
  EXPECT_THAT(error_of(set->trigger(1)).message(),
              HasSubstr("trigger 0000:00:04.0 MSI-X: 1 vector(s) from 1"));
  next_error_ = EINVAL;
  EXPECT_THAT(error_of(set->set_attached(0, false)).message(), HasSubstr("detach 0000:00:04.0"));
}

}  // namespace
}  // namespace vfe::irq
