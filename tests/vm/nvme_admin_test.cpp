// The NVMe driver's typed admin calls against QEMU's controller through the real kernel's VFIO:
// Identify of any CNS (§5.15), Get Log Page for the error, health and firmware slot logs and any
// log by ID (§5.14), Get/Set Features with and without data (§5.21, §5.22).
#include <gtest/gtest.h>

#include <chrono>

#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/log_pages.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_support.hpp"

namespace vfe::vmtest {
namespace {

using nvme::IoOpcode;

// Identify CNS 01h and 02h read again through the general call say what bring-up found; CNS 03h
// describes namespace 1; a CNS the controller does not know fails with its status.
TEST(NvmeAdminVm, IdentifyOfAnyCns) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(const auto ctrl, c->identify({.cns = nvme::cns::kController}));
  VFE_ASSERT_OK_AND_ASSIGN(const auto id, nvme::parse_identify_controller(ctrl));
  EXPECT_EQ(id.serial, c->identity().serial);
  EXPECT_EQ(id.oncs, c->identity().oncs);
  VFE_ASSERT_OK_AND_ASSIGN(const auto list, c->identify({.cns = nvme::cns::kActiveNamespaces}));
  VFE_ASSERT_OK_AND_ASSIGN(const auto ids, nvme::parse_active_namespace_list(list));
  ASSERT_EQ(ids.size(), c->namespaces().size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(ids[i], c->namespaces()[i].nsid);
  }
  // §5.15.2.3: a list of descriptors, each NIDT (byte 0), NIDL (byte 1), then the identifier.
  VFE_ASSERT_OK_AND_ASSIGN(const auto desc, c->identify({.cns = nvme::cns::kNamespaceDescriptors, .nsid = 1}));
  EXPECT_GE(desc[0], 1) << "a first descriptor (EUI64, NGUID, UUID or CSI)";
  EXPECT_GE(desc[1], 1) << "with a length";

  // CNS 06h, the NVM command set's limits: QEMU 7.2 answers it with VSL 7 (its `vsl` default) and
  // DMRSL 7FFFFE00h bytes in blocks of its namespaces' 512 bytes.
  ASSERT_TRUE(c->nvm_limits().has_value()) << "read at bring-up";
  EXPECT_EQ(c->nvm_limits()->vsl, 7);
  EXPECT_EQ(c->nvm_limits()->dmrsl, 0x7FFFFE00U / kBlock);
  VFE_ASSERT_OK_AND_ASSIGN(const auto nvm, c->identify({.cns = nvme::cns::kIoCommandSetController, .csi = 0}));
  VFE_ASSERT_OK_AND_ASSIGN(const auto again, nvme::parse_identify_nvm_controller(nvm));
  EXPECT_EQ(again.dmrsl, c->nvm_limits()->dmrsl);

  const auto unknown = c->identify({.cns = 0xff});
  ASSERT_FALSE(unknown);
  EXPECT_TRUE(unknown.error().is(EINVAL)) << unknown.error().message();
  EXPECT_NE(unknown.error().message().find("Invalid Field"), std::string::npos) << unknown.error().message();
}

// The health log counts the writes made since the last read; the error log and the firmware slot
// log decode; a log read from an offset is the tail of the whole one.
TEST(NvmeAdminVm, HealthErrorAndFirmwareLogs) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  VFE_ASSERT_OK_AND_ASSIGN(const nvme::HealthLog before, c->health_log());
  EXPECT_GT(before.temperature_kelvin, 273) << "QEMU reports a composite temperature above 0 C";
  EXPECT_EQ(before.critical_warning, 0);
  {
    VFE_ASSERT_OK_AND_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
    VFE_ASSERT_OK_AND_ASSIGN(auto q, c->create_io_queue(*w, {}));
    VFE_ASSERT_OK_AND_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), 4096));
    fill_pattern(buf.data(), 0, kScratchBegin, 4096);
    const nvme::DataSegment page{buf.iova(), 4096};
    for (int i = 0; i < 3; ++i) {
      WaitableRequest wr(w.get(), IoOpcode::write, kScratchBegin / kBlock, 8, {&page, 1});
      ASSERT_EQ(run_io(*q, wr), 0);
    }
  }
  VFE_ASSERT_OK_AND_ASSIGN(const nvme::HealthLog after, c->health_log());
  EXPECT_GE(after.host_writes.low - before.host_writes.low, 3U) << "three write commands";

  VFE_ASSERT_OK_AND_ASSIGN(const auto errors, c->error_log());
  EXPECT_TRUE(errors.empty()) << "QEMU 7.2 keeps one error log entry and never fills it";
  VFE_ASSERT_OK_AND_ASSIGN(const nvme::FirmwareSlotLog fw, c->firmware_slot_log());
  ASSERT_GE(fw.active_slot, 1);
  // QEMU 7.2 keeps "1.0" in slot 1, not its Identify FR ("7.2.x"): a revision, whichever.
  EXPECT_FALSE(fw.revisions[fw.active_slot - 1].empty()) << "the running slot holds a revision";

  VFE_ASSERT_OK_AND_ASSIGN(const auto whole, c->get_log_page({.lid = nvme::log_page::kHealth, .bytes = 512}));
  if ((c->identity().lpa & 0x4U) != 0) {  // LPA bit 2: offsets are supported
    VFE_ASSERT_OK_AND_ASSIGN(const auto tail,
                             c->get_log_page({.lid = nvme::log_page::kHealth, .bytes = 256, .offset = 256}));
    EXPECT_TRUE(std::equal(tail.begin(), tail.end(), whole.begin() + 256)) << "bytes 256 to 511";
  }
  const auto odd = c->get_log_page({.lid = nvme::log_page::kHealth, .bytes = 6});
  ASSERT_FALSE(odd);
  EXPECT_TRUE(odd.error().is(EINVAL));
}

// Temperature Threshold (04h): set, read back, put back; its capabilities; Timestamp (0Eh) set
// with 8 bytes of data and read back with them; Number of Queues is the driver's.
TEST(NvmeAdminVm, GetAndSetFeatures) {
  VFE_ASSERT_OK_AND_ASSIGN(auto c, open_nvme(0));
  const auto tmpth = nvme::feature::kTemperatureThreshold;
  VFE_ASSERT_OK_AND_ASSIGN(const auto old, c->get_features({.fid = tmpth}));
  const std::uint32_t kelvin = old.dw0 & 0xffff;
  EXPECT_GT(kelvin, 273U) << "an over-temperature threshold above 0 C";
  VFE_ASSERT_OK(c->set_features({.fid = tmpth, .cdw11 = kelvin - 5}));
  VFE_ASSERT_OK_AND_ASSIGN(const auto now, c->get_features({.fid = tmpth}));
  EXPECT_EQ(now.dw0 & 0xffff, kelvin - 5);
  VFE_ASSERT_OK(c->set_features({.fid = tmpth, .cdw11 = kelvin}));
  VFE_ASSERT_OK_AND_ASSIGN(const auto caps, c->get_features({.fid = tmpth, .select = nvme::FeatureSelect::capabilities}));
  EXPECT_TRUE(nvme::FeatureCapabilities{caps.dw0}.changeable());

  // Timestamp: milliseconds since the epoch in bytes 5:0 (§5.21.1.14).
  const auto ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  std::array<std::uint8_t, 8> set{};
  for (int i = 0; i < 6; ++i) {
    set[i] = static_cast<std::uint8_t>(ms >> (8 * i));
  }
  const auto ts = nvme::feature::kTimestamp;
  VFE_ASSERT_OK(c->set_features({.fid = ts, .data = set}));
  VFE_ASSERT_OK_AND_ASSIGN(const auto got, c->get_features({.fid = ts, .data_bytes = 8}));
  ASSERT_EQ(got.data.size(), 8U);
  std::uint64_t back = 0;
  for (int i = 5; i >= 0; --i) {
    back = (back << 8) | got.data[i];
  }
  EXPECT_GE(back, ms);
  EXPECT_LT(back - ms, 10'000U) << "read back within 10 s of setting it";

  const auto queues = c->set_features({.fid = nvme::feature::kNumberOfQueues});
  ASSERT_FALSE(queues);
  EXPECT_TRUE(queues.error().is(EPERM)) << queues.error().message();
  const auto events = c->set_features({.fid = nvme::feature::kAsyncEventConfig, .cdw11 = 0});
  ASSERT_FALSE(events);
  EXPECT_TRUE(events.error().is(EPERM)) << "the driver's own: " << events.error().message();
  const auto unknown = c->get_features({.fid = 0x7f});
  ASSERT_FALSE(unknown);
  EXPECT_TRUE(unknown.error().is(EINVAL)) << unknown.error().message();
}

}  // namespace
}  // namespace vfe::vmtest
