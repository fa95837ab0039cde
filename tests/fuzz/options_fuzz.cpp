// Fuzzes the option parsers of command lines and the environment with the input as text:
// parse_iommu_mode (vfio/iommu_mode.hpp, $VFE_IOMMU_MODE), parse_completion_mode
// (engine/queue_pair.hpp) and parse_frame_lengths (drivers/e1000e/loopback.hpp). Checks:
//  - an accepted IOMMU mode is the text itself: to_string(parse_iommu_mode(t)) == t; a rejected
//    one is EINVAL naming the choices;
//  - an accepted completion mode is one of its documented words, and its to_string() parses back
//    to it; worker_mode_for() maps it to the worker mode of the same name;
//  - accepted frame lengths lie in kMinFrame <= min <= max <= kMaxFrame, "min-max" parses back to
//    them, and loopback_frame_length() stays inside them; a rejected text is EINVAL.

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "drivers/e1000e/loopback.hpp"
#include "drivers/e1000e/loopback_frame.hpp"
#include "drivers/e1000e/spec.hpp"
#include "engine/queue_pair.hpp"
#include "engine/worker.hpp"
#include "tests/fuzz/fuzz_check.hpp"
#include "vfio/iommu_mode.hpp"

namespace {

void check_iommu_mode(std::string_view text) {
  if (const auto mode = vfe::vfio::parse_iommu_mode(text)) {
    VFE_FUZZ_CHECK(vfe::vfio::to_string(*mode) == text);
  } else {
    VFE_FUZZ_CHECK(mode.error().code.value() == EINVAL);
    VFE_FUZZ_CHECK(mode.error().detail.find("type1, iommufd or noiommu") != std::string::npos);
  }
}

void check_completion_mode(std::string_view text) {
  using vfe::engine::CompletionMode;
  using vfe::engine::WorkerMode;
  const auto mode = vfe::engine::parse_completion_mode(text);
  const bool known = text == "polling" || text == "poll" || text == "interrupt" || text == "irq" ||
                     text == "adaptive";
  VFE_FUZZ_CHECK(mode.has_value() == known);
  if (!mode) {
    return;
  }
  VFE_FUZZ_CHECK(vfe::engine::parse_completion_mode(vfe::engine::to_string(*mode)) == mode);
  const WorkerMode worker = vfe::engine::worker_mode_for(*mode);
  VFE_FUZZ_CHECK((*mode == CompletionMode::polling) == (worker == WorkerMode::polling));
  VFE_FUZZ_CHECK((*mode == CompletionMode::interrupt) == (worker == WorkerMode::interrupt));
  VFE_FUZZ_CHECK((*mode == CompletionMode::adaptive) == (worker == WorkerMode::adaptive));
}

void check_frame_lengths(std::string_view text, std::uint64_t seq) {
  namespace e1000e = vfe::e1000e;
  const auto lengths = e1000e::parse_frame_lengths(text);
  if (!lengths) {
    VFE_FUZZ_CHECK(lengths.error().code.value() == EINVAL);
    return;
  }
  const auto [min, max] = *lengths;
  VFE_FUZZ_CHECK(e1000e::kMinFrame <= min && min <= max && max <= e1000e::kMaxFrame);
  const auto back = e1000e::parse_frame_lengths(std::to_string(min) + "-" + std::to_string(max));
  VFE_FUZZ_CHECK(back && *back == *lengths);
  const std::uint32_t length = e1000e::loopback_frame_length(seq, min, max);
  VFE_FUZZ_CHECK(min <= length && length <= max);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_iommu_mode(text);
  check_completion_mode(text);
  std::uint64_t seq = 0;
  for (const char c : text) {
    seq = seq * 131 + static_cast<unsigned char>(c);
  }
  check_frame_lengths(text, seq);
  return 0;
}
