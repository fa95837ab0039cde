#pragma once
// Helpers several VM test files share: a worker of a given mode, an e1000e of the rig, and
// waiting for a condition. Each reports its own failure (ADD_FAILURE) and returns nothing or
// false, so a test only asserts the result.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "drivers/e1000e/nic.hpp"
#include "engine/worker.hpp"
#include "tests/vm/vm_env.hpp"

namespace vfe::vmtest {

/// A worker in `mode`, or nullptr (the failure is reported).
inline std::unique_ptr<engine::Worker> start_worker(engine::WorkerMode mode) {
  engine::WorkerOptions o;
  o.mode = mode;
  auto w = engine::Worker::start(std::move(o));
  if (!w) {
    ADD_FAILURE() << w.error().message();
    return nullptr;
  }
  return std::move(w).value();
}

/// The rig's e1000e `index` (in bus order) in the rig's IOMMU mode, or nullptr (reported).
inline std::unique_ptr<e1000e::Nic> open_nic(unsigned index, e1000e::NicOptions options = {}) {
  const auto nics = devices_of("e1000e");
  if (nics.size() <= index) {
    ADD_FAILURE() << "the rig has no e1000e #" << index;
    return nullptr;
  }
  options.mode = mode();
  auto nic = e1000e::Nic::create(nics[index].to_string(), options);
  if (!nic) {
    ADD_FAILURE() << nic.error().message();
    return nullptr;
  }
  return std::move(nic).value();
}

/// Polls `done()` every millisecond for up to `limit`; true when it held in time.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace vfe::vmtest
