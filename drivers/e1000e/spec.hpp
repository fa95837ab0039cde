#pragma once
/// \file
/// Facts from the Intel 82574 GbE Controller Family Datasheet (317694, revision 3.4) that the
/// driver needs: register offsets and bits (chapter 10), the legacy receive and transmit
/// descriptors (chapter 7) and the statistics counters. Plain data; no behaviour.
///
/// Section numbers are cited where they were checked against the datasheet's text (§4.6.1,
/// §7.1.8, §7.4.2); elsewhere the register or structure is named instead. The offsets and bits
/// agree with QEMU's 82574L model and Intel's own drivers.

#include <cstdint>

namespace vfe::e1000e {

/// Register offsets in BAR0 (memory-mapped, 128 KiB).
namespace reg {
inline constexpr std::uint64_t kCtrl = 0x00000;     ///< device control
inline constexpr std::uint64_t kStatus = 0x00008;   ///< device status
inline constexpr std::uint64_t kEerd = 0x00014;     ///< EEPROM read
inline constexpr std::uint64_t kCtrlExt = 0x00018;  ///< extended device control
inline constexpr std::uint64_t kIcr = 0x000c0;      ///< interrupt causes; writing 1s clears them
inline constexpr std::uint64_t kIcs = 0x000c8;      ///< interrupt cause set (raises causes)
inline constexpr std::uint64_t kItr = 0x000c4;      ///< interrupt throttling
inline constexpr std::uint64_t kIms = 0x000d0;      ///< interrupt mask set (enables causes)
inline constexpr std::uint64_t kImc = 0x000d8;      ///< interrupt mask clear (disables causes)
inline constexpr std::uint64_t kEiac = 0x000dc;     ///< MSI-X auto clear of ICR bits 20..24
inline constexpr std::uint64_t kIam = 0x000e0;      ///< interrupt acknowledge auto mask
inline constexpr std::uint64_t kIvar = 0x000e4;     ///< MSI-X vector of each cause
inline constexpr std::uint64_t kRctl = 0x00100;     ///< receive control
inline constexpr std::uint64_t kTctl = 0x00400;     ///< transmit control
inline constexpr std::uint64_t kTipg = 0x00410;     ///< transmit inter-packet gap
inline constexpr std::uint64_t kRdbal = 0x02800;    ///< receive ring 0: base low, high, length,
inline constexpr std::uint64_t kRdbah = 0x02804;    ///< head, tail, delay timer, control and
inline constexpr std::uint64_t kRdlen = 0x02808;    ///< absolute delay timer
inline constexpr std::uint64_t kRdh = 0x02810;
inline constexpr std::uint64_t kRdt = 0x02818;
inline constexpr std::uint64_t kRdtr = 0x02820;
inline constexpr std::uint64_t kRxdctl = 0x02828;
inline constexpr std::uint64_t kRadv = 0x0282c;
inline constexpr std::uint64_t kTdbal = 0x03800;  ///< transmit ring 0: the same set
inline constexpr std::uint64_t kTdbah = 0x03804;
inline constexpr std::uint64_t kTdlen = 0x03808;
inline constexpr std::uint64_t kTdh = 0x03810;
inline constexpr std::uint64_t kTdt = 0x03818;
inline constexpr std::uint64_t kTidv = 0x03820;
inline constexpr std::uint64_t kTxdctl = 0x03828;
inline constexpr std::uint64_t kTadv = 0x0382c;
inline constexpr std::uint64_t kTarc0 = 0x03840;  ///< transmit arbitration count, queue 0
inline constexpr std::uint64_t kRfctl = 0x05008;  ///< receive filter control
inline constexpr std::uint64_t kMta = 0x05200;    ///< multicast table, 128 words
inline constexpr std::uint64_t kRal0 = 0x05400;   ///< receive address 0 low (MAC bytes 0..3)
inline constexpr std::uint64_t kRah0 = 0x05404;   ///< receive address 0 high (bytes 4..5, AV)
}  // namespace reg

namespace ctrl {
inline constexpr std::uint32_t kSlu = 1U << 6;   ///< set link up
inline constexpr std::uint32_t kRst = 1U << 26;  ///< software reset; self-clearing
}  // namespace ctrl

namespace status {
inline constexpr std::uint32_t kLinkUp = 1U << 1;
}  // namespace status

namespace eerd {
inline constexpr std::uint32_t kStart = 1U << 0;
inline constexpr std::uint32_t kDone = 1U << 1;
inline constexpr std::uint32_t kAddrShift = 2;
inline constexpr std::uint32_t kDataShift = 16;
}  // namespace eerd

namespace ctrl_ext {
inline constexpr std::uint32_t kEiame = 1U << 24;      ///< EIAM applies on MSI-X messages too
inline constexpr std::uint32_t kIame = 1U << 27;       ///< IAM applies on an ICR read
inline constexpr std::uint32_t kPbaClear = 1U << 31;  ///< an IMS write clears the vectors' PBA bits
}  // namespace ctrl_ext

/// Interrupt causes: bits of ICR, ICS, IMS, IMC, IAM (EIAC uses bits 20..24).
namespace icr {
inline constexpr std::uint32_t kTxdw = 1U << 0;   ///< a transmit descriptor was written back
inline constexpr std::uint32_t kLsc = 1U << 2;    ///< link status change
inline constexpr std::uint32_t kRxo = 1U << 6;    ///< receiver overrun
inline constexpr std::uint32_t kRxt0 = 1U << 7;   ///< receiver timer (a frame arrived)
inline constexpr std::uint32_t kRxq0 = 1U << 20;  ///< MSI-X: receive queue 0
inline constexpr std::uint32_t kTxq0 = 1U << 22;  ///< MSI-X: transmit queue 0
inline constexpr std::uint32_t kOther = 1U << 24;  ///< MSI-X: any other cause (link, overrun)
inline constexpr std::uint32_t kAll = 0xffffffffU;
}  // namespace icr

/// IVAR: a 3-bit vector number and a valid bit per cause.
namespace ivar {
inline constexpr std::uint32_t kValid = 1U << 3;
inline constexpr std::uint32_t kRxq0Shift = 0;
inline constexpr std::uint32_t kTxq0Shift = 8;
inline constexpr std::uint32_t kOtherShift = 16;
inline constexpr std::uint32_t kTxEveryWriteback = 1U << 31;  ///< a TX interrupt per write-back
}  // namespace ivar

namespace rctl {
inline constexpr std::uint32_t kEnable = 1U << 1;
inline constexpr std::uint32_t kUnicastPromisc = 1U << 3;
inline constexpr std::uint32_t kMulticastPromisc = 1U << 4;
inline constexpr std::uint32_t kBroadcastAccept = 1U << 15;
inline constexpr std::uint32_t kBsize2048 = 0U << 16;  ///< BSIZE 00b with BSEX 0: 2048-byte buffers
inline constexpr std::uint32_t kStripCrc = 1U << 26;   ///< SECRC: the FCS is not written to memory
}  // namespace rctl

namespace rfctl {
inline constexpr std::uint32_t kAckDisable = 1U << 12;  ///< no ACK interrupt cause for TCP ACKs
}  // namespace rfctl

namespace tarc {
inline constexpr std::uint32_t kEnable = 1U << 10;  ///< queue 0 may transmit (set at power-on)
}  // namespace tarc

namespace tctl {
inline constexpr std::uint32_t kEnable = 1U << 1;
inline constexpr std::uint32_t kPadShort = 1U << 3;  ///< PSP: pad short frames (QEMU ignores it)
[[nodiscard]] constexpr std::uint32_t collision_threshold(std::uint32_t v) noexcept { return v << 4; }
[[nodiscard]] constexpr std::uint32_t collision_distance(std::uint32_t v) noexcept { return v << 12; }
}  // namespace tctl

/// TIPG for copper links: IPGT 8, IPGR1 8, IPGR2 6, as Intel's Linux driver programs it for
/// this family (QEMU's model ignores TIPG).
inline constexpr std::uint32_t kTipgCopper = 8U | (8U << 10) | (6U << 20);

/// Legacy receive descriptor (16 bytes). Software writes `buffer` and clears `status`; the
/// device writes the rest back and sets DD last.
struct RxDescriptor {
  std::uint64_t buffer;
  std::uint16_t length;
  std::uint16_t checksum;
  std::uint8_t status;
  std::uint8_t errors;
  std::uint16_t special;
};
static_assert(sizeof(RxDescriptor) == 16);

namespace rx_status {
inline constexpr std::uint8_t kDone = 1U << 0;        ///< DD: the device wrote this descriptor
inline constexpr std::uint8_t kEndOfPacket = 1U << 1;  ///< EOP: last descriptor of a frame
}  // namespace rx_status

/// Legacy transmit descriptor (16 bytes, DEXT = 0).
struct TxDescriptor {
  std::uint64_t buffer;
  std::uint16_t length;
  std::uint8_t cso;
  std::uint8_t command;
  std::uint8_t status;
  std::uint8_t css;
  std::uint16_t special;
};
static_assert(sizeof(TxDescriptor) == 16);

namespace tx_command {
inline constexpr std::uint8_t kEndOfPacket = 1U << 0;  ///< EOP: last descriptor of a frame
inline constexpr std::uint8_t kInsertFcs = 1U << 1;    ///< IFCS: the device appends the FCS
inline constexpr std::uint8_t kReportStatus = 1U << 3;  ///< RS: write DD back when sent
}  // namespace tx_command

namespace tx_status {
inline constexpr std::uint8_t kDone = 1U << 0;  ///< DD: the device is done with this descriptor
}  // namespace tx_status

/// Statistics registers: each clears when read; 64-bit counters clear when the high half is read,
/// so read low, then high.
namespace stat {
inline constexpr std::uint64_t kCrcErrors = 0x04000;        ///< CRCERRS
inline constexpr std::uint64_t kMissedPackets = 0x04010;    ///< MPC: no room in the FIFO
inline constexpr std::uint64_t kGoodPacketsRx = 0x04074;    ///< GPRC
inline constexpr std::uint64_t kGoodPacketsTx = 0x04080;    ///< GPTC
inline constexpr std::uint64_t kGoodOctetsRxLow = 0x04088;  ///< GORCL, GORCH
inline constexpr std::uint64_t kGoodOctetsTxLow = 0x04090;  ///< GOTCL, GOTCH
inline constexpr std::uint64_t kNoBuffers = 0x040a0;        ///< RNBC: no receive descriptor free
inline constexpr std::uint64_t kOversize = 0x040ac;         ///< ROC: frame longer than allowed
inline constexpr std::uint64_t kTotalPacketsRx = 0x040d0;   ///< TPR
inline constexpr std::uint64_t kTotalPacketsTx = 0x040d4;   ///< TPT
}  // namespace stat

/// Frame sizes without the FCS (which the device adds on transmit and strips on receive).
inline constexpr std::uint32_t kEthernetHeader = 14;
inline constexpr std::uint32_t kMinFrame = 60;    ///< shorter frames arrive padded to this
inline constexpr std::uint32_t kMaxFrame = 1514;  ///< without long packet enable (RCTL.LPE)
inline constexpr std::uint32_t kFcsBytes = 4;

/// PCI identity of the 82574L.
inline constexpr std::uint16_t kVendorIntel = 0x8086;
inline constexpr std::uint16_t kDevice82574L = 0x10d3;

}  // namespace vfe::e1000e
