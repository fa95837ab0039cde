#pragma once
/// \file
/// A scripted VFIO kernel for host unit tests: capability chains as the kernel lays them out, the
/// two-call "get info" protocol, and `VfioFixture`, a fake sysfs plus a `FakeSys` that answers
/// like a type1 kernel with one PCI function.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/result.hpp"
#include "tests/unit/support/fake_sys.hpp"
#include "tests/unit/support/fake_sysfs.hpp"
#include "vfio/device.hpp"
#include "vfio/iommu_backend.hpp"
#include "vfio/uapi.hpp"

namespace vfe::test {

/// The function every VfioFixture starts with: bound to vfio-pci, alone in IOMMU group 7.
inline constexpr const char* kDeviceName = "0000:00:04.0";
inline constexpr vfio::Bdf kDevice{0, 0, 4, 0};

/// The error of `r`; when `r` succeeded, a test failure and an empty Error. A test expecting an
/// error then fails cleanly instead of asserting inside Result::error().
template <class T>
Error error_of(const Result<T>& r) {
  if (r) {
    ADD_FAILURE() << "expected an error, but the call succeeded";
    return Error{};
  }
  return r.error();
}

/// The object representations of `values`, one after another (a capability's body).
template <class... T>
std::vector<std::uint8_t> pack(const T&... values) {
  static_assert((std::is_trivially_copyable_v<T> && ...));
  std::vector<std::uint8_t> out;
  (out.insert(out.end(), reinterpret_cast<const std::uint8_t*>(&values),
              reinterpret_cast<const std::uint8_t*>(&values) + sizeof(T)),
   ...);
  return out;
}

/// A VFIO capability chain as the kernel builds it (vfio_info_cap_add): each capability a
/// struct vfio_info_cap_header followed by its body, 8-byte aligned, `next` holding the offset of
/// the following one from the start of the info buffer (0 ends the chain).
class CapChain {
 public:
  /// Appends a capability; `body` is what follows its header.
  CapChain& add(std::uint16_t id, std::uint16_t version, std::vector<std::uint8_t> body = {});
  /// The chain laid out to start at offset `base` of the info buffer (8-byte aligned).
  [[nodiscard]] std::vector<std::uint8_t> bytes(std::uint32_t base) const;

 private:
  struct Cap {
    std::uint16_t id;
    std::uint16_t version;
    std::vector<std::uint8_t> body;
  };
  std::vector<Cap> caps_;
};

/// Answers a VFIO "get info" ioctl (VFIO_IOMMU_GET_INFO, VFIO_DEVICE_GET_REGION_INFO) the way the
/// kernel does: `info` is the fixed struct to return, `caps` the chain laid out from
/// sizeof(Info). When there are capabilities, `caps_flag` is set in flags; if the caller's argsz
/// leaves no room for them, argsz is raised to the size needed, cap_offset stays 0 and only the
/// fixed struct is written, so the caller asks again with a larger buffer.
template <class Info>
int reply_info(void* arg, Info info, std::uint32_t caps_flag, std::span<const std::uint8_t> caps) {
  std::uint32_t argsz = 0;
  std::memcpy(&argsz, arg, sizeof(argsz));
  if (argsz < sizeof(Info)) {
    return fail(EINVAL);
  }
  info.argsz = argsz;
  info.cap_offset = 0;
  if (!caps.empty()) {
    info.flags |= caps_flag;
    if (argsz < sizeof(Info) + caps.size()) {
      info.argsz = static_cast<std::uint32_t>(sizeof(Info) + caps.size());
    } else {
      std::memcpy(static_cast<std::uint8_t*>(arg) + sizeof(Info), caps.data(), caps.size());
      info.cap_offset = sizeof(Info);
    }
  }
  std::memcpy(arg, &info, sizeof(Info));
  return 0;
}

/// A fake sysfs with kDevice bound to vfio-pci in group 7, and `sys_` scripted as a type1 kernel
/// that accepts everything and offers that device with the regions and IRQs a test adds. A test
/// overrides single answers with sys_.on_ptr / on_val.
class VfioFixture : public FakeSysfs {
 protected:
  void SetUp() override;

  /// What the fake hands out as the device fd of `bdf` (see FakeSys::path_of).
  [[nodiscard]] static std::string device_path(const std::string& bdf) {
    return "vfio-device " + bdf;
  }
  /// A type1 backend over `sys_` (for VFE_ASSERT_OK_AND_ASSIGN).
  [[nodiscard]] Result<std::shared_ptr<vfio::IommuBackend>> type1();
  /// kDevice opened through a fresh type1 backend.
  [[nodiscard]] Result<vfio::Device> open_device();

  /// Region `index` as VFIO_DEVICE_GET_REGION_INFO reports it, with capabilities `caps`.
  void add_region(std::uint32_t index, std::uint32_t flags, std::uint64_t size,
                  std::uint64_t offset, CapChain caps = {});
  /// IRQ index `index` as VFIO_DEVICE_GET_IRQ_INFO reports it.
  void add_irq(std::uint32_t index, std::uint32_t flags, std::uint32_t count);

  FakeSys sys_;
  // VFIO_DEVICE_GET_INFO's answer.
  std::uint32_t device_flags_ = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
  std::uint32_t num_regions_ = VFIO_PCI_NUM_REGIONS;
  std::uint32_t num_irqs_ = VFIO_PCI_NUM_IRQS;
  /// The names passed to VFIO_GROUP_GET_DEVICE_FD, in order.
  std::vector<std::string> device_fd_names_;

 private:
  void script_type1();
  void script_device();

  struct FakeRegion {
    vfio_region_info info;
    CapChain caps;
  };
  std::map<std::uint32_t, FakeRegion> regions_;
  std::map<std::uint32_t, vfio_irq_info> irqs_;
};

}  // namespace vfe::test
