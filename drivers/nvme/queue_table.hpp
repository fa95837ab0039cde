#pragma once
/// \file
/// `QueueTable`: the I/O queue IDs a controller hands out, and the queues live on it.

#include <cstdint>
#include <mutex>
#include <vector>

#include "base/result.hpp"
#include "drivers/nvme/queue_host.hpp"

namespace vfe::nvme {

/// Queue IDs 1..granted (0 is the admin queue) and the queues that hold them, listed once they
/// exist on the device. Thread-safe. `for_each` holds the table's lock while it runs `f` on each
/// listed queue, so `f` must not add or remove queues.
class QueueTable {
 public:
  /// After Set Features, Number of Queues: IDs 1..granted, none taken.
  void reset(std::uint32_t granted);
  /// The lowest free ID; with `needs_vector`, one below `vectors` too (its MSI-X vector is the
  /// queue ID). EBUSY when none is free, ENOTSUP when a vector is needed and there are none.
  [[nodiscard]] Result<std::uint16_t> claim(bool needs_vector, std::uint32_t vectors);
  void release(std::uint16_t qid) noexcept;
  void add(HostedQueue& q) noexcept;
  void remove(HostedQueue& q) noexcept;
  [[nodiscard]] std::size_t size() const;
  template <class F>
  void for_each(F&& f) {
    std::lock_guard lock(mu_);
    for (HostedQueue* q : live_) {
      f(*q);
    }
  }

 private:
  mutable std::mutex mu_;
  std::vector<HostedQueue*> live_;
  std::vector<bool> used_;  // index = queue ID
};

}  // namespace vfe::nvme
