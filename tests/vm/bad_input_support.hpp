#pragma once
// What the bad-input matrix (bad_input_*_test.cpp) shares: checking an error's errno and
// wording, a guard that compares the process's resources before and after a case, and the
// process-wide settings some cases change (RLIMIT_MEMLOCK, CAP_IPC_LOCK), restored on exit.

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <set>
#include <string>

#include "base/error.hpp"
#include "tests/vm/resources.hpp"

namespace vfe::vmtest {

/// Success when `error` carries errno `err` and its message contains each of `words`. Prints
/// the message either way, so the log shows what a user of each case would read.
inline ::testing::AssertionResult is_error(const Error& error, int err,
                                           std::initializer_list<std::string> words) {
  const std::string msg = error.message();
  std::printf("  error: %s\n", msg.c_str());
  if (!error.is(err)) {
    return ::testing::AssertionFailure() << "expected " << std::strerror(err) << ", got: " << msg;
  }
  for (const auto& w : words) {
    if (msg.find(w) == std::string::npos) {
      return ::testing::AssertionFailure() << "the message lacks '" << w << "': " << msg;
    }
  }
  return ::testing::AssertionSuccess() << msg;
}

/// The call must fail: `result` is a Result<T> (evaluated once); checks as `is_error`.
#define EXPECT_FAILS_WITH(result, err, ...)                                          \
  do {                                                                               \
    const auto& vfe_r_ = (result);                                                   \
    ASSERT_FALSE(vfe_r_) << "the call succeeded; expected " << std::strerror(err);   \
    EXPECT_TRUE(::vfe::vmtest::is_error(vfe_r_.error(), err, __VA_ARGS__));          \
  } while (0)

/// Declared first in a test (so destroyed last, after every object of the case): compares a
/// snapshot of the process's resources taken at construction with one taken at destruction and
/// fails the test on any difference. `warm_up`, run once per process per `key` before the first
/// snapshot, makes the lazily created, process-lifetime state a case would create (a thread's
/// cached stack, a malloc arena) exist already, so it does not count as a leak.
class NoLeaks {
 public:
  NoLeaks() : before_(Resources::snapshot()) {}
  NoLeaks(const char* key, const std::function<void()>& warm_up) : before_((warm(key, warm_up), Resources::snapshot())) {}
  NoLeaks(const NoLeaks&) = delete;
  NoLeaks& operator=(const NoLeaks&) = delete;
  ~NoLeaks() {
    const std::string changes = resource_changes(before_, Resources::snapshot());
    EXPECT_EQ(changes, "") << "the case left resources behind:\n" << changes;
  }

 private:
  static void warm(const char* key, const std::function<void()>& warm_up) {
    static std::set<std::string> done;
    if (done.insert(key).second) {
      warm_up();
    }
  }
  Resources before_;
};

/// Lowers the soft RLIMIT_MEMLOCK to `bytes` and drops CAP_IPC_LOCK from the effective set (it
/// stays permitted), so that both the library's check and the kernel's apply to this root
/// process; restores both on destruction.
class LowMemlock {
 public:
  explicit LowMemlock(rlim_t bytes) {
    // Only what was saved is changed, and only what was changed is restored.
    if (::getrlimit(RLIMIT_MEMLOCK, &saved_limit_) != 0 || !capget(saved_caps_)) {
      return;
    }
    rlimit low = saved_limit_;
    low.rlim_cur = bytes;
    limit_changed_ = ::setrlimit(RLIMIT_MEMLOCK, &low) == 0;
    __user_cap_data_struct caps[2];
    std::memcpy(caps, saved_caps_, sizeof(caps));
    caps[CAP_IPC_LOCK / 32].effective &= ~(1U << (CAP_IPC_LOCK % 32));
    caps_changed_ = limit_changed_ && capset(caps);
    ok_ = caps_changed_;
  }
  LowMemlock(const LowMemlock&) = delete;
  LowMemlock& operator=(const LowMemlock&) = delete;
  ~LowMemlock() {
    if (caps_changed_) {
      EXPECT_TRUE(capset(saved_caps_)) << std::strerror(errno);
    }
    if (limit_changed_) {
      EXPECT_EQ(::setrlimit(RLIMIT_MEMLOCK, &saved_limit_), 0) << std::strerror(errno);
    }
  }
  /// False when the limit or the capability could not be changed.
  [[nodiscard]] bool ok() const noexcept { return ok_; }

 private:
  static bool capget(__user_cap_data_struct (&data)[2]) {
    __user_cap_header_struct head{_LINUX_CAPABILITY_VERSION_3, 0};
    return ::syscall(SYS_capget, &head, data) == 0;
  }
  static bool capset(const __user_cap_data_struct (&data)[2]) {
    __user_cap_header_struct head{_LINUX_CAPABILITY_VERSION_3, 0};
    return ::syscall(SYS_capset, &head, data) == 0;
  }

  rlimit saved_limit_{};
  __user_cap_data_struct saved_caps_[2]{};
  bool ok_ = false;
  bool limit_changed_ = false;
  bool caps_changed_ = false;
};

}  // namespace vfe::vmtest
