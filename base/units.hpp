#pragma once
/// \file
/// Sizes and alignment helpers used by every layer.

#include <cstddef>
#include <cstdint>

namespace vfe {

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = 1024 * kKiB;
inline constexpr std::uint64_t kGiB = 1024 * kMiB;

/// The line size two threads must not share (g++ 12 warns on
/// std::hardware_destructive_interference_size, so the value is ours).
inline constexpr std::size_t kCacheLine = 64;

/// True for 1, 2, 4, ...; false for 0.
[[nodiscard]] constexpr bool is_pow2(std::uint64_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }

/// `v` rounded down to a multiple of `align`, which must be a power of two.
[[nodiscard]] constexpr std::uint64_t align_down(std::uint64_t v, std::uint64_t align) noexcept {
  return v & ~(align - 1);
}

/// `v` rounded up to a multiple of `align` (a power of two). Wraps to 0 past the top of the
/// 64-bit space; callers that take sizes from outside check with `align_up_overflows` first.
[[nodiscard]] constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t align) noexcept {
  return (v + align - 1) & ~(align - 1);
}

/// True when `align_up(v, align)` would not fit in 64 bits.
[[nodiscard]] constexpr bool align_up_overflows(std::uint64_t v, std::uint64_t align) noexcept {
  return v > ~std::uint64_t{0} - (align - 1);
}

[[nodiscard]] constexpr bool is_aligned(std::uint64_t v, std::uint64_t align) noexcept {
  return (v & (align - 1)) == 0;
}

}  // namespace vfe
