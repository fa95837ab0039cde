#include "base/result.hpp"

#include <cstdio>
#include <cstdlib>

namespace vfe::detail {

void die_value_of_error(const Error& error) noexcept {
  // message() allocates; if that throws, noexcept ends the process all the same.
  std::fprintf(stderr, "Result::value() on an Error: %s\n", error.message().c_str());
  std::abort();
}

void die_error_of_value() noexcept {
  std::fputs("Result::error() on a value: the call succeeded, there is no Error to read\n", stderr);
  std::abort();
}

}  // namespace vfe::detail
