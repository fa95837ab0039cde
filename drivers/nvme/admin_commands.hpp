#pragma once
/// \file
/// What the typed admin calls of `Controller` take: Identify of any CNS (NVMe 1.4 §5.15; NVMe 2.0
/// adds CSI), Get Log Page of any log (§5.14), Get and Set Features of any feature (§5.21, §5.22).
/// Plain data.

#include <cstdint>
#include <span>
#include <vector>

namespace vfe::nvme {

/// An Identify command (§5.15.1): the 4096-byte data structure CNS names.
struct IdentifyQuery {
  std::uint8_t cns = 0;          ///< Command Dword 10 bits 7:0 (e.g. cns::kController)
  std::uint32_t nsid = 0;        ///< the namespace the structure is about (CNS 00h, 03h, 05h ...)
  std::uint16_t cntid = 0;       ///< Command Dword 10 bits 31:16: controller ID (CNS 12h, 13h)
  std::uint8_t csi = 0;          ///< Command Dword 11 bits 31:24: command set (CNS 05h, 06h); 0 = NVM
  std::uint16_t set_id = 0;      ///< Command Dword 11 bits 15:0: NVM set / CNS specific identifier
};

/// A Get Log Page command (§5.14.1): `bytes` of log `lid` from byte `offset`.
struct LogPageQuery {
  std::uint8_t lid = 0;            ///< log page identifier (e.g. log_page::kHealth)
  std::uint32_t bytes = 0;         ///< a multiple of 4, at most `Controller::max_transfer_bytes()`
  std::uint64_t offset = 0;        ///< LPOL/LPOU: a multiple of 4 (needs LPA bit 2 when not 0)
  std::uint32_t nsid = ~0U;        ///< FFFFFFFFh: the controller as a whole
  std::uint8_t lsp = 0;            ///< Log Specific Field (Command Dword 10 bits 11:8)
  std::uint16_t lsi = 0;           ///< Log Specific Identifier (Command Dword 11 bits 31:16)
  std::uint8_t csi = 0;            ///< command set (Command Dword 14 bits 31:24)
  /// Retain Asynchronous Event: reading the log does not re-arm the event it answers. Keep it
  /// true unless you handle the events yourself (the controller's watchdog reads the logs its
  /// events name with it clear).
  bool retain_event = true;
};

/// Which value Get Features returns (§5.21.1, Command Dword 10 SEL).
enum class FeatureSelect : std::uint8_t { current = 0, default_value = 1, saved = 2, capabilities = 3 };

/// A Get Features command.
struct FeatureQuery {
  std::uint8_t fid = 0;      ///< feature identifier (e.g. feature::kTemperatureThreshold)
  std::uint32_t nsid = 0;    ///< for namespace-specific features; 0 otherwise
  FeatureSelect select = FeatureSelect::current;
  std::uint32_t cdw11 = 0;   ///< feature specific (e.g. the threshold selector of 04h)
  std::uint32_t data_bytes = 0;  ///< bytes of data the feature returns (e.g. 8 for Timestamp)
};

/// What Get or Set Features answered.
struct FeatureValue {
  std::uint32_t dw0 = 0;             ///< completion dword 0: the value, or the capabilities
  std::vector<std::uint8_t> data;    ///< the feature's data (data_bytes of them), if any
};

/// A Set Features command.
struct FeatureChange {
  std::uint8_t fid = 0;
  std::uint32_t nsid = 0;
  std::uint32_t cdw11 = 0;  ///< the value (feature specific)
  std::uint32_t cdw12 = 0;
  std::uint32_t cdw13 = 0;
  std::uint32_t cdw14 = 0;
  std::uint32_t cdw15 = 0;
  bool save = false;                        ///< SV: keep it across a power cycle
  std::span<const std::uint8_t> data = {};  ///< data the feature takes (e.g. Timestamp), if any
};

/// FEATURE_QUERY's capabilities answer (SEL = 11b, figure 282).
struct FeatureCapabilities {
  std::uint32_t raw = 0;
  [[nodiscard]] constexpr bool saveable() const noexcept { return (raw & 1U) != 0; }
  [[nodiscard]] constexpr bool namespace_specific() const noexcept { return (raw & 2U) != 0; }
  [[nodiscard]] constexpr bool changeable() const noexcept { return (raw & 4U) != 0; }
};

}  // namespace vfe::nvme
