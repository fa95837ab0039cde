#include "base/error.hpp"

#include <fmt/format.h>

namespace vfe {

Error Error::from_errno(int err, const char* op, std::string detail) {
  return Error{std::error_code(err, std::generic_category()), op, std::move(detail)};
}

Error Error::invalid(const char* op, std::string detail) {
  return from_errno(EINVAL, op, std::move(detail));
}

Error Error::not_supported(const char* op, std::string detail) {
  return from_errno(ENOTSUP, op, std::move(detail));
}

std::string Error::message() const {
  std::string out = op;
  if (!detail.empty()) {
    out += out.empty() ? detail : fmt::format(": {}", detail);
  }
  if (code) {
    out += fmt::format(" ({})", code.message());
  }
  return out;
}

}  // namespace vfe
