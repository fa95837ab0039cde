#include "vfio/iommu_mode.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>

#include "vfio/sysfs.hpp"

namespace vfe::vfio {

std::string_view to_string(IommuMode mode) noexcept {
  switch (mode) {
    case IommuMode::type1:
      return "type1";
    case IommuMode::iommufd:
      return "iommufd";
    case IommuMode::noiommu:
      return "noiommu";
  }
  return "?";
}

Result<IommuMode> parse_iommu_mode(std::string_view text) {
  for (const auto m : {IommuMode::type1, IommuMode::iommufd, IommuMode::noiommu}) {
    if (text == to_string(m)) {
      return m;
    }
  }
  return Error::invalid("parse IOMMU mode",
                        fmt::format("'{}' is not a mode; use type1, iommufd or noiommu", text));
}

Result<IommuMode> select_iommu_mode(const Bdf& bdf) {
  if (const char* forced = std::getenv(kIommuModeEnv); forced != nullptr && *forced != '\0') {
    auto mode = parse_iommu_mode(forced);
    if (!mode) {
      return Error::invalid(kIommuModeEnv, std::move(mode).error().detail);
    }
    return mode;
  }
  std::error_code ec;
  const bool has_cdev = vfio_cdev(bdf).has_value() && std::filesystem::exists("/dev/iommu", ec);
  return has_cdev ? IommuMode::iommufd : IommuMode::type1;
}

}  // namespace vfe::vfio
