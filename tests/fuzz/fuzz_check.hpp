#pragma once
/// \file
/// `VFE_FUZZ_CHECK(cond)`: a property a fuzz target asserts on every input. A violation prints
/// the condition and aborts, which libFuzzer reports as a crash and saves the input for.

#include <cstdio>
#include <cstdlib>

#define VFE_FUZZ_CHECK(cond)                                                               \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "%s:%d: fuzz property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                        \
    }                                                                                      \
  } while (false)

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace vfe::fuzz {

/// Runs `check` on the input as it is (libFuzzer's exact-size heap copy, so ASan reports any read
/// past it) and, when it is shorter than `page` bytes, again zero-padded to exactly `page`, so
/// that short inputs reach the field decoding of fixed-size structures.
template <class Check>
void as_is_and_padded(const std::uint8_t* data, std::size_t size, std::size_t page, Check check) {
  check(std::span<const std::uint8_t>(data, size));
  if (size < page) {
    std::vector<std::uint8_t> padded(page);
    std::copy_n(data, size, padded.begin());
    check(std::span<const std::uint8_t>(padded));
  }
}

}  // namespace vfe::fuzz
