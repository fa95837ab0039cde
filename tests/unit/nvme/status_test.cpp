// Completion status (NVMe 1.4 §4.6.1): decoding the CQE status word, the specification's names,
// the one-line text, the errno mapping and the setup-path Error.
#include "drivers/nvme/status.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "drivers/nvme/spec.hpp"

namespace vfe::nvme {
namespace {

// The 16-bit status word of a CQE (dword 3 bits 31:16): phase in bit 0, SC 8:1, SCT 11:9,
// CRD 13:12, M 14, DNR 15.
constexpr std::uint16_t status_word(unsigned type, unsigned code, unsigned crd = 0,
                                    bool more = false, bool dnr = false, bool phase = false) {
  return static_cast<std::uint16_t>((phase ? 1U : 0U) | (code << 1) | (type << 9) | (crd << 12) |
                                    (more ? 1U << 14 : 0U) | (dnr ? 1U << 15 : 0U));
}

Status make(std::uint8_t type, std::uint8_t code, bool dnr = false) {
  Status s;
  s.sct = type;
  s.sc = code;
  s.dnr = dnr;
  return s;
}

static_assert(Status::from_cqe(0x0001).ok(), "a success with the phase tag set is a success");
static_assert(Status::from_cqe(status_word(0, 0x80)).is(sct::kGeneric, sc::kLbaOutOfRange));

TEST(Status, DecodesEveryFieldOfACqe) {
  Cqe cqe{};
  cqe.status = status_word(sct::kCommandSpecific, 0xa5, 2, true, true, true);
  const Status s = Status::from_cqe(cqe.status);
  EXPECT_EQ(s.sct, sct::kCommandSpecific);
  EXPECT_EQ(s.sc, 0xa5);
  EXPECT_EQ(s.crd, 2);
  EXPECT_TRUE(s.more);
  EXPECT_TRUE(s.dnr);
  EXPECT_FALSE(s.ok());
}

TEST(Status, PhaseTagIsIgnored) {
  for (const bool phase : {false, true}) {
    const Status s = Status::from_cqe(status_word(sct::kMediaError, 0x81, 0, false, false, phase));
    EXPECT_EQ(s.sct, sct::kMediaError);
    EXPECT_EQ(s.sc, 0x81);
    EXPECT_EQ(s.crd, 0);
    EXPECT_FALSE(s.more);
    EXPECT_FALSE(s.dnr);
  }
  EXPECT_TRUE(Status::from_cqe(0x0000).ok());
  EXPECT_TRUE(Status::from_cqe(0x0001).ok());
}

TEST(Status, DecodesEachRetryHintAlone) {
  const Status dnr = Status::from_cqe(0x8000);
  EXPECT_TRUE(dnr.dnr);
  EXPECT_FALSE(dnr.more);
  EXPECT_TRUE(dnr.ok());  // the hints alone don't make a failure
  const Status more = Status::from_cqe(0x4000);
  EXPECT_TRUE(more.more);
  EXPECT_FALSE(more.dnr);
  EXPECT_EQ(Status::from_cqe(0x1000).crd, 1);
  EXPECT_EQ(Status::from_cqe(0x3000).crd, 3);
  EXPECT_EQ(Status::from_cqe(0x0e00).sct, sct::kVendorSpecific);
  EXPECT_EQ(Status::from_cqe(0x01fe).sc, 0xff);
}

TEST(Status, IsComparesTypeAndCodeButNotHints) {
  const Status s = Status::from_cqe(status_word(sct::kGeneric, sc::kInvalidField, 3, true, true));
  EXPECT_TRUE(s.is(sct::kGeneric, sc::kInvalidField));
  EXPECT_FALSE(s.is(sct::kCommandSpecific, sc::kInvalidField));
  EXPECT_FALSE(s.is(sct::kGeneric, sc::kInvalidOpcode));
}

TEST(Status, TypeNames) {
  EXPECT_STREQ(status_type_name(0), "generic");
  EXPECT_STREQ(status_type_name(1), "command specific");
  EXPECT_STREQ(status_type_name(2), "media and data integrity");
  EXPECT_STREQ(status_type_name(3), "path related");
  EXPECT_STREQ(status_type_name(7), "vendor specific");
  for (const std::uint8_t reserved : {4, 5, 6, 8, 0xff}) {
    EXPECT_STREQ(status_type_name(reserved), "reserved") << int{reserved};
  }
}

std::string name_of(std::uint8_t type, std::uint8_t code) {
  const char* name = status_code_name(make(type, code));
  return name != nullptr ? name : "<null>";
}

TEST(Status, GenericNames) {
  EXPECT_EQ(name_of(0, 0x00), "Successful Completion");
  EXPECT_EQ(name_of(0, 0x01), "Invalid Command Opcode");
  EXPECT_EQ(name_of(0, 0x02), "Invalid Field in Command");
  EXPECT_EQ(name_of(0, 0x07), "Command Abort Requested");
  EXPECT_EQ(name_of(0, 0x08), "Command Aborted due to SQ Deletion");
  EXPECT_EQ(name_of(0, 0x0b), "Invalid Namespace or Format");
  EXPECT_EQ(name_of(0, 0x13), "PRP Offset Invalid");
  EXPECT_EQ(name_of(0, 0x1b), "Command Aborted due to Preempt and Abort");
  EXPECT_EQ(name_of(0, 0x20), "Namespace is Write Protected");
  EXPECT_EQ(name_of(0, 0x22), "Transient Transport Error");
  EXPECT_EQ(name_of(0, 0x80), "LBA Out of Range");
  EXPECT_EQ(name_of(0, 0x81), "Capacity Exceeded");
  EXPECT_EQ(name_of(0, 0x82), "Namespace Not Ready");
  EXPECT_EQ(name_of(0, 0x84), "Format In Progress");
  for (const std::uint8_t reserved : {0x17, 0x23, 0x7f, 0x85, 0xc0, 0xff}) {
    EXPECT_EQ(name_of(0, reserved), "<null>") << int{reserved};
  }
}

TEST(Status, CommandSpecificNames) {
  EXPECT_EQ(name_of(1, 0x00), "Completion Queue Invalid");
  EXPECT_EQ(name_of(1, 0x01), "Invalid Queue Identifier");
  EXPECT_EQ(name_of(1, 0x02), "Invalid Queue Size");
  EXPECT_EQ(name_of(1, 0x03), "Abort Command Limit Exceeded");
  EXPECT_EQ(name_of(1, 0x05), "Asynchronous Event Request Limit Exceeded");
  EXPECT_EQ(name_of(1, 0x06), "Invalid Firmware Slot");
  EXPECT_EQ(name_of(1, 0x07), "Invalid Firmware Image");
  EXPECT_EQ(name_of(1, 0x08), "Invalid Interrupt Vector");
  EXPECT_EQ(name_of(1, 0x09), "Invalid Log Page");
  EXPECT_EQ(name_of(1, 0x0a), "Invalid Format");
  EXPECT_EQ(name_of(1, 0x0c), "Invalid Queue Deletion");
  EXPECT_EQ(name_of(1, 0x25), "ANA Attach Failed");
  EXPECT_EQ(name_of(1, 0x80), "Conflicting Attributes");
  EXPECT_EQ(name_of(1, 0x81), "Invalid Protection Information");
  EXPECT_EQ(name_of(1, 0x82), "Attempted Write to Read Only Range");
  for (const std::uint8_t reserved : {0x04, 0x17, 0x26, 0x5f, 0x70, 0x83, 0xff}) {
    EXPECT_EQ(name_of(1, reserved), "<null>") << int{reserved};
  }
}

TEST(Status, MediaAndPathNames) {
  EXPECT_EQ(name_of(2, 0x80), "Write Fault");
  EXPECT_EQ(name_of(2, 0x81), "Unrecovered Read Error");
  EXPECT_EQ(name_of(2, 0x82), "End-to-end Guard Check Error");
  EXPECT_EQ(name_of(2, 0x83), "End-to-end Application Tag Check Error");
  EXPECT_EQ(name_of(2, 0x84), "End-to-end Reference Tag Check Error");
  EXPECT_EQ(name_of(2, 0x85), "Compare Failure");
  EXPECT_EQ(name_of(2, 0x86), "Access Denied");
  EXPECT_EQ(name_of(2, 0x87), "Deallocated or Unwritten Logical Block");
  EXPECT_EQ(name_of(2, 0x00), "<null>");
  EXPECT_EQ(name_of(2, 0x88), "<null>");
  EXPECT_EQ(name_of(3, 0x00), "Internal Path Error");
  EXPECT_EQ(name_of(3, 0x60), "Asymmetric Access Persistent Loss");
  EXPECT_EQ(name_of(3, 0x61), "Asymmetric Access Inaccessible");
  EXPECT_EQ(name_of(3, 0x62), "Asymmetric Access Transition");
  EXPECT_EQ(name_of(3, 0x70), "Controller Pathing Error");
  EXPECT_EQ(name_of(3, 0x71), "Host Pathing Error");
  EXPECT_EQ(name_of(3, 0x72), "Command Aborted By Host");
  for (const std::uint8_t reserved : {0x01, 0x5f, 0x63, 0x6f, 0x73, 0x80}) {
    EXPECT_EQ(name_of(3, reserved), "<null>") << int{reserved};
  }
}

TEST(Status, VendorAndReservedTypesHaveNoNames) {
  for (const std::uint8_t code : {0x00, 0x01, 0x80, 0xff}) {
    EXPECT_EQ(name_of(sct::kVendorSpecific, code), "<null>");
    EXPECT_EQ(name_of(4, code), "<null>");
    EXPECT_EQ(name_of(6, code), "<null>");
  }
}

TEST(Status, ToStringFormat) {
  EXPECT_EQ(to_string(make(0, 0x80, true)), "LBA Out of Range (generic status 0x80, do not retry)");
  EXPECT_EQ(to_string(make(0, 0x02)), "Invalid Field in Command (generic status 0x02)");
  EXPECT_EQ(to_string(make(1, 0x02, true)),
            "Invalid Queue Size (command specific status 0x02, do not retry)");
  EXPECT_EQ(to_string(make(2, 0x81)),
            "Unrecovered Read Error (media and data integrity status 0x81)");
  EXPECT_EQ(to_string(make(3, 0x00)), "Internal Path Error (path related status 0x00)");
}

TEST(Status, ToStringOfUnknownCodes) {
  EXPECT_EQ(to_string(make(1, 0x5f)), "unknown status (command specific status 0x5f)");
  EXPECT_EQ(to_string(make(7, 0xc1, true)),
            "unknown status (vendor specific status 0xc1, do not retry)");
  EXPECT_EQ(to_string(make(5, 0x01)), "unknown status (reserved status 0x01)");
}

TEST(Status, ToStringOfSuccess) {
  EXPECT_EQ(to_string(Status{}), "success");
  EXPECT_EQ(to_string(Status::from_cqe(status_word(0, 0, 1, true, true, true))), "success");
}

TEST(Status, ErrnoMapping) {
  EXPECT_EQ(to_errno(Status{}), 0);
  EXPECT_EQ(to_errno(make(0, sc::kLbaOutOfRange)), ERANGE);
  EXPECT_EQ(to_errno(make(0, 0x81)), ENOSPC);
  EXPECT_EQ(to_errno(make(0, 0x20)), EROFS);
  EXPECT_EQ(to_errno(make(1, 0x82)), EROFS);
  EXPECT_EQ(to_errno(make(0, sc::kInvalidOpcode)), EINVAL);
  EXPECT_EQ(to_errno(make(0, sc::kInvalidField)), EINVAL);
  EXPECT_EQ(to_errno(make(0, sc::kInvalidNamespace)), EINVAL);
  EXPECT_EQ(to_errno(make(0, 0x1f)), EOPNOTSUPP);  // Command Not Supported for Queue in CMB
  EXPECT_EQ(to_errno(make(1, 0x1b)), EOPNOTSUPP);  // Thin Provisioning Not Supported
  EXPECT_EQ(to_errno(make(2, sc::kCompareFailure)), EILSEQ);
  EXPECT_EQ(to_errno(make(2, 0x82)), EILSEQ);  // End-to-end Guard Check Error
  EXPECT_EQ(to_errno(make(2, 0x83)), EILSEQ);  // End-to-end Application Tag Check Error
  EXPECT_EQ(to_errno(make(2, 0x84)), EILSEQ);  // End-to-end Reference Tag Check Error
}

TEST(Status, WorthRetryUnlessDnrOrTheDataDiffer) {
  EXPECT_FALSE(worth_retry(Status{}));
  EXPECT_TRUE(worth_retry(make(0, 0x06)));  // Internal Error
  Status dnr = make(0, 0x06);
  dnr.dnr = true;
  EXPECT_FALSE(worth_retry(dnr));
  EXPECT_FALSE(worth_retry(make(2, sc::kCompareFailure))) << "an answer, not a fault, DNR or not";
  EXPECT_TRUE(worth_retry(make(2, 0x82))) << "a guard check error without DNR may be a transfer fault";
  EXPECT_FALSE(worth_retry(make(2, sc::kAppTagCheck))) << "the tag differs from the one expected";
  EXPECT_FALSE(worth_retry(make(2, sc::kRefTagCheck)));
}

TEST(Status, AbortedCommandsAreCanceled) {
  for (const std::uint8_t code : {0x05, 0x07, 0x08, 0x09, 0x0a, 0x1b}) {
    EXPECT_EQ(to_errno(make(0, code)), ECANCELED) << int{code};
  }
  EXPECT_EQ(to_errno(make(3, 0x72)), ECANCELED);
}

TEST(Status, EverythingElseIsEio) {
  EXPECT_EQ(to_errno(make(0, 0x06)), EIO);  // Internal Error
  EXPECT_EQ(to_errno(make(0, 0x82)), EIO);  // Namespace Not Ready
  EXPECT_EQ(to_errno(make(2, 0x81)), EIO);  // Unrecovered Read Error
  EXPECT_EQ(to_errno(make(2, 0x86)), EIO);
  EXPECT_EQ(to_errno(make(3, 0x00)), EIO);
  EXPECT_EQ(to_errno(make(7, 0x20)), EIO);
  EXPECT_EQ(to_errno(make(5, 0x00)), EIO);  // reserved type: not a success despite code 0
  // Codes that mean something else under another type are not confused with generic ones.
  EXPECT_EQ(to_errno(make(1, sc::kInvalidField)), EIO);
  EXPECT_EQ(to_errno(make(1, 0x80)), EIO);
  EXPECT_EQ(to_errno(make(2, 0x20)), EIO);
  EXPECT_EQ(to_errno(make(1, 0x07)), EIO);  // Invalid Firmware Image
}

TEST(Status, ErrorForASetupPath) {
  const Error e = status_error(make(0, sc::kInvalidField, true), "identify", "controller");
  EXPECT_TRUE(e.is(EINVAL));
  EXPECT_STREQ(e.op, "identify");
  EXPECT_EQ(e.detail, "controller: Invalid Field in Command (generic status 0x02, do not retry)");
  EXPECT_EQ(e.message().rfind("identify: controller: Invalid Field in Command (generic status "
                              "0x02, do not retry) (",
                              0),
            0U)
      << e.message();
}

TEST(Status, ErrorWithoutWhat) {
  const Error e = status_error(make(1, sc::kInvalidQueueId), "create I/O completion queue", "");
  EXPECT_TRUE(e.is(EIO));
  EXPECT_EQ(e.detail, "Invalid Queue Identifier (command specific status 0x01)");
}

TEST(Status, ErrorPointsAtTheErrorLogWhenTheControllerSaysSo) {
  Status s = make(2, 0x81);
  s.more = true;
  const Error e = status_error(s, "read", "namespace 1 LBA 8");
  EXPECT_EQ(e.detail.rfind("namespace 1 LBA 8: Unrecovered Read Error (media and data integrity "
                           "status 0x81)",
                           0),
            0U)
      << e.detail;
  EXPECT_NE(e.detail.find("Error Information log page"), std::string::npos) << e.detail;
}

TEST(Status, ErrorOfASuccessIsStillAnError) {
  const Error e = status_error(Status{}, "identify", "controller");
  EXPECT_TRUE(static_cast<bool>(e.code));
  EXPECT_EQ(e.detail, "controller: success");
}

TEST(Status, ErrorKeepsTheErrno) {
  EXPECT_TRUE(status_error(make(0, sc::kLbaOutOfRange), "write", "").is(ERANGE));
  EXPECT_TRUE(status_error(make(0, sc::kAbortRequested), "read", "").is(ECANCELED));
  EXPECT_TRUE(status_error(make(0, 0x20), "write", "").is(EROFS));
}

}  // namespace
}  // namespace vfe::nvme
