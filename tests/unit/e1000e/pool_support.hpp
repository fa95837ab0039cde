#pragma once
// Shared by the e1000e unit tests: a PacketPool over test memory at a made-up IOVA.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/result.hpp"
#include "drivers/e1000e/packet_pool.hpp"

namespace vfe::e1000e {

inline constexpr std::uint64_t kTestIova = 0x8000'0000;
inline constexpr std::size_t kBuf = PacketPool::kBufferSize;

/// A pool over `memory` (which must outlive it), for VFE_ASSERT_OK_AND_ASSIGN.
inline Result<std::unique_ptr<PacketPool>> make_pool(std::vector<std::byte>& memory,
                                                     std::uint64_t iova = kTestIova) {
  return PacketPool::over(memory, dma::Iova{iova});
}

}  // namespace vfe::e1000e
