#include "drivers/nvme/queue_table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

namespace vfe::nvme {

void QueueTable::reset(std::uint32_t granted) {
  std::lock_guard lock(mu_);
  used_.assign(granted + 1, false);
  used_[0] = true;  // the admin queue
  live_.reserve(granted);  // add() never allocates: each live queue holds one of these IDs
}

Result<std::uint16_t> QueueTable::claim(bool needs_vector, std::uint32_t vectors) {
  std::lock_guard lock(mu_);
  for (std::size_t qid = 1; qid < used_.size(); ++qid) {
    if (!used_[qid]) {
      if (needs_vector && qid >= vectors) {
        break;
      }
      used_[qid] = true;
      return static_cast<std::uint16_t>(qid);
    }
  }
  if (needs_vector && vectors == 0) {
    return Error::not_supported("create I/O queue", "the controller has no MSI-X; use polling completion");
  }
  return Error::from_errno(EBUSY, "create I/O queue",
                           fmt::format("all {} I/O queues the controller granted{} are in use",
                                       used_.empty() ? 0 : used_.size() - 1,
                                       needs_vector ? " (with an MSI-X vector)" : ""));
}

void QueueTable::release(std::uint16_t qid) noexcept {
  std::lock_guard lock(mu_);
  if (qid < used_.size()) {
    used_[qid] = false;
  }
}

void QueueTable::add(HostedQueue& q) noexcept {
  std::lock_guard lock(mu_);
  live_.push_back(&q);
}

void QueueTable::remove(HostedQueue& q) noexcept {
  std::lock_guard lock(mu_);
  live_.erase(std::remove(live_.begin(), live_.end(), &q), live_.end());
}

std::size_t QueueTable::size() const {
  std::lock_guard lock(mu_);
  return live_.size();
}

}  // namespace vfe::nvme
