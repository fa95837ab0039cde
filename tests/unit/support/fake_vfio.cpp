#include "tests/unit/support/fake_vfio.hpp"

#include <algorithm>
#include <cassert>

namespace vfe::test {

CapChain& CapChain::add(std::uint16_t id, std::uint16_t version, std::vector<std::uint8_t> body) {
  caps_.push_back({id, version, std::move(body)});
  return *this;
}

std::vector<std::uint8_t> CapChain::bytes(std::uint32_t base) const {
  assert(base % 8 == 0);
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < caps_.size(); ++i) {
    const std::size_t at = out.size();
    const std::size_t size = (sizeof(vfio_info_cap_header) + caps_[i].body.size() + 7) / 8 * 8;
    const bool last = i + 1 == caps_.size();
    const vfio_info_cap_header header{
        caps_[i].id, caps_[i].version,
        last ? 0U : static_cast<std::uint32_t>(base + at + size)};
    out.resize(at + size, 0);
    std::memcpy(out.data() + at, &header, sizeof(header));
    std::copy(caps_[i].body.begin(), caps_[i].body.end(), out.begin() + at + sizeof(header));
  }
  return out;
}

void VfioFixture::SetUp() {
  ASSERT_NO_FATAL_FAILURE(FakeSysfs::SetUp());
  add_device(kDeviceName, "vfio-pci", "7");
  script_type1();
  script_device();
}

void VfioFixture::script_type1() {
  sys_.on_val(VFIO_GET_API_VERSION, [](int, unsigned long) { return VFIO_API_VERSION; });
  sys_.on_val(VFIO_CHECK_EXTENSION, [](int, unsigned long type) {
    return type == VFIO_TYPE1v2_IOMMU || type == VFIO_NOIOMMU_IOMMU ? 1 : 0;
  });
  sys_.on_ptr(VFIO_GROUP_GET_STATUS, [](int, void* arg) {
    static_cast<vfio_group_status*>(arg)->flags = VFIO_GROUP_FLAGS_VIABLE;
    return 0;
  });
  sys_.on_ptr(VFIO_GROUP_SET_CONTAINER, [](int, void*) { return 0; });
  sys_.on_val(VFIO_SET_IOMMU, [](int, unsigned long) { return 0; });
  sys_.on_ptr(VFIO_GROUP_GET_DEVICE_FD, [this](int, void* arg) {
    device_fd_names_.emplace_back(static_cast<const char*>(arg));
    return sys_.new_fd(device_path(device_fd_names_.back()));
  });
}

void VfioFixture::script_device() {
  sys_.on_ptr(VFIO_DEVICE_GET_INFO, [this](int, void* arg) {
    auto* info = static_cast<vfio_device_info*>(arg);
    info->flags = device_flags_;
    info->num_regions = num_regions_;
    info->num_irqs = num_irqs_;
    return 0;
  });
  sys_.on_ptr(VFIO_DEVICE_GET_REGION_INFO, [this](int, void* arg) {
    vfio_region_info asked{};
    std::memcpy(&asked, arg, sizeof(asked));
    const auto it = regions_.find(asked.index);
    if (it == regions_.end()) {
      return fail(EINVAL);
    }
    const auto caps = it->second.caps.bytes(sizeof(vfio_region_info));
    return reply_info(arg, it->second.info, VFIO_REGION_INFO_FLAG_CAPS, caps);
  });
  sys_.on_ptr(VFIO_DEVICE_GET_IRQ_INFO, [this](int, void* arg) {
    auto* info = static_cast<vfio_irq_info*>(arg);
    const auto it = irqs_.find(info->index);
    if (it == irqs_.end()) {
      return fail(EINVAL);
    }
    info->flags = it->second.flags;
    info->count = it->second.count;
    return 0;
  });
}

Result<std::shared_ptr<vfio::IommuBackend>> VfioFixture::type1() {
  return vfio::make_backend(vfio::IommuMode::type1, sys_);
}

Result<vfio::Device> VfioFixture::open_device() {
  VFE_TRY_ASSIGN(auto backend, type1());
  return vfio::Device::open(kDevice, std::move(backend));
}

void VfioFixture::add_region(std::uint32_t index, std::uint32_t flags, std::uint64_t size,
                             std::uint64_t offset, CapChain caps) {
  vfio_region_info info{};
  info.flags = flags;
  info.index = index;
  info.size = size;
  info.offset = offset;
  regions_[index] = {info, std::move(caps)};
}

void VfioFixture::add_irq(std::uint32_t index, std::uint32_t flags, std::uint32_t count) {
  vfio_irq_info info{};
  info.argsz = sizeof(info);
  info.flags = flags;
  info.index = index;
  info.count = count;
  irqs_[index] = info;
}

}  // namespace vfe::test
