#pragma once
// Helpers several VM test files share: a device of the rig, a worker of a given mode, an e1000e
// of the rig, and waiting for a condition. Those that can fail return a Result, which a test
// takes with VFE_ASSERT_OK_AND_ASSIGN (tests/unit/support/assert_ok.hpp): a failed setup ends
// that test, with the error, and the run goes on with the next.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "base/result.hpp"
#include "drivers/e1000e/nic.hpp"
#include "engine/worker.hpp"
#include "tests/unit/support/assert_ok.hpp"
#include "tests/vm/vm_env.hpp"
#include "vfio/device.hpp"

namespace vfe::vmtest {

/// Device `bdf` opened in the rig's IOMMU mode.
inline Result<vfio::Device> open_device(const vfio::Bdf& bdf) {
  return vfio::Device::open(bdf.to_string(), {.mode = mode(), .sys = nullptr});
}

/// The rig's device `index` (in bus order) of `kind` ("nvme", "edu", "e1000e"), opened in the
/// rig's IOMMU mode.
inline Result<vfio::Device> open_device(const std::string& kind, unsigned index = 0) {
  VFE_TRY_ASSIGN(const vfio::Bdf bdf, device_of(kind, index));
  return open_device(bdf);
}

/// A worker in `mode`.
inline Result<std::unique_ptr<engine::Worker>> start_worker(engine::WorkerMode mode) {
  engine::WorkerOptions o;
  o.mode = mode;
  return engine::Worker::start(std::move(o));
}

/// The rig's e1000e `index` (in bus order) in the rig's IOMMU mode.
inline Result<std::unique_ptr<e1000e::Nic>> open_nic(unsigned index, e1000e::NicOptions options = {}) {
  VFE_TRY_ASSIGN(const vfio::Bdf bdf, device_of("e1000e", index));
  options.mode = mode();
  return e1000e::Nic::create(bdf.to_string(), options);
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
