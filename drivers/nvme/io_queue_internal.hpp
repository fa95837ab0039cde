#pragma once
/// \file
/// What io_queue.cpp, io_queue_commands.cpp and io_queue_recovery.cpp share; not part of the driver's interface.

#include <atomic>
#include <cstdint>

#include "drivers/nvme/io_queue.hpp"

namespace vfe::nvme::detail {

/// A command ID: generation in bits 15:12, slot in 11:0 (kMaxIoQueueEntries - 1 slots at most).
inline constexpr unsigned kCidSlotBits = 12;
inline constexpr std::uint16_t kCidSlotMask = (1U << kCidSlotBits) - 1;
static_assert(kMaxIoQueueEntries - 1 <= kCidSlotMask + 1U);

/// Counters have one writer (the worker): a plain load and store, no locked instruction.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace vfe::nvme::detail
