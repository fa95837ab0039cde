#pragma once
// Shared by the e1000e unit tests: a PacketPool over test memory at a made-up IOVA.

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "drivers/e1000e/packet_pool.hpp"

namespace vfe::e1000e {

inline constexpr std::uint64_t kTestIova = 0x8000'0000;
inline constexpr std::size_t kBuf = PacketPool::kBufferSize;

/// A pool over `memory` (which must outlive it); null, with a test failure, when that fails.
inline std::unique_ptr<PacketPool> make_pool(std::vector<std::byte>& memory, std::uint64_t iova = kTestIova) {
  auto r = PacketPool::over(memory, dma::Iova{iova});
  EXPECT_TRUE(r.has_value()) << r.error().message();
  return r.has_value() ? std::move(r).value() : nullptr;
}

}  // namespace vfe::e1000e
