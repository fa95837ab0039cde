// Fuzzes the decoding of NVMe completion queue entries (drivers/nvme/status.hpp): the input is a
// run of 16-byte CQEs (struct Cqe, drivers/nvme/spec.hpp); each one's status goes through
// Status::from_cqe, to_string, to_errno, status_code_name and status_error. Checks:
//  - the decoded fields are in range (SCT 3 bits, CRD 2 bits) and re-encode to the status field:
//    nothing is lost or invented; the phase tag (bit 0) changes nothing;
//  - to_string() is never empty, is "success" exactly for ok(), and contains the code's name;
//  - to_errno() is 0 exactly for ok(), else one of the documented errnos; worth_retry() holds
//    only for a failure without DNR;
//  - status_error() never has a zero code (even for a success status passed by mistake).

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "drivers/nvme/spec.hpp"
#include "drivers/nvme/status.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

namespace nvme = vfe::nvme;

bool same(const nvme::Status& a, const nvme::Status& b) {
  return a.sct == b.sct && a.sc == b.sc && a.crd == b.crd && a.more == b.more && a.dnr == b.dnr;
}

void check_status(std::uint16_t field) {
  const nvme::Status s = nvme::Status::from_cqe(field);
  VFE_FUZZ_CHECK(s.sct <= 7 && s.crd <= 3);
  const unsigned encoded = s.sc | unsigned{s.sct} << 8 | unsigned{s.crd} << 11 |
                           unsigned{s.more} << 13 | unsigned{s.dnr} << 14;
  VFE_FUZZ_CHECK(encoded == (field >> 1U));
  VFE_FUZZ_CHECK(same(s, nvme::Status::from_cqe(static_cast<std::uint16_t>(field ^ 1U))));

  const std::string text = nvme::to_string(s);
  VFE_FUZZ_CHECK(!text.empty() && (text == "success") == s.ok());
  if (const char* name = nvme::status_code_name(s); name != nullptr && !s.ok()) {
    VFE_FUZZ_CHECK(*name != '\0' && text.find(name) != std::string::npos);
  }
  const char* type = nvme::status_type_name(s.sct);
  VFE_FUZZ_CHECK(type != nullptr && *type != '\0');

  const int err = nvme::to_errno(s);
  VFE_FUZZ_CHECK((err == 0) == s.ok());
  VFE_FUZZ_CHECK(err == 0 || err == EIO || err == EINVAL || err == EOPNOTSUPP || err == EROFS ||
                 err == ERANGE || err == ENOSPC || err == ECANCELED || err == EILSEQ);
  // Only a failure may be worth sending again, and never one marked Do Not Retry.
  VFE_FUZZ_CHECK(!nvme::worth_retry(s) || (!s.ok() && !s.dnr));
  const vfe::Error e = nvme::status_error(s, "fuzz", "");
  VFE_FUZZ_CHECK(e.code.value() != 0 && !e.detail.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  for (std::size_t at = 0; at + sizeof(nvme::Cqe) <= size; at += sizeof(nvme::Cqe)) {
    nvme::Cqe cqe{};
    std::memcpy(&cqe, data + at, sizeof(cqe));
    check_status(cqe.status);
  }
  return 0;
}
