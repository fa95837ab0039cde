#pragma once
/// \file
/// `IoRequest`: one read, write, compare, flush, write-zeroes or deallocate (Dataset Management),
/// or one command the caller composed (`PassthroughCommand`), as an application hands it to an
/// `IoQueue`.

#include <cstdint>
#include <span>

#include "drivers/nvme/pi.hpp"
#include "drivers/nvme/prp.hpp"
#include "drivers/nvme/spec.hpp"
#include "drivers/nvme/status.hpp"
#include "engine/queue_pair.hpp"

namespace vfe::nvme {

/// An NVM I/O command the driver has no opcode of its own for (Verify, vendor commands ...), as the
/// caller composed it. The driver adds the command ID, the namespace (`IoRequest::nsid`) and the
/// data pointers (PRPs for `IoRequest::data`), and sends it as one command: its data must fit in
/// `IoQueue::max_transfer_bytes()`, be there exactly when the opcode's bits 1:0 say the command
/// moves some, and, for read, write, compare and dataset management, be exactly as long as the
/// command's own dwords say (NLB, NR); else submit refuses it with -EINVAL. For other opcodes
/// the caller answers for the length: a buffer shorter than the command moves lets the
/// controller DMA where it should not. Like any request it goes again after a failure without Do
/// Not Retry or a controller reset (see `IoRequest`): send only commands that may run twice.
struct PassthroughCommand {
  std::uint8_t opcode = 0;  ///< bits 1:0 give the data direction: 00b none, 01b to the controller,
                            ///< 10b from it, 11b both
  std::uint32_t cdw2 = 0;
  std::uint32_t cdw3 = 0;
  std::uint32_t cdw10 = 0;
  std::uint32_t cdw11 = 0;
  std::uint32_t cdw12 = 0;
  std::uint32_t cdw13 = 0;
  std::uint32_t cdw14 = 0;
  std::uint32_t cdw15 = 0;
  std::uint32_t result = 0;  ///< output: completion dword 0 (command specific)
};

/// An I/O request. The submitter owns it (and the data it names) from `IoQueue::submit` until
/// `on_complete` has run on the queue's worker; the driver neither allocates nor frees it.
///
/// A request may be larger than the controller's maximum transfer (MDTS): the queue splits it into
/// as many commands as needed and completes the request once, when the last of them is done. A
/// command that fails with a status the controller does not mark Do Not Retry, or that was in
/// flight when the controller was reset, makes the whole request go again (its other commands too;
/// reads and writes of the same blocks with the same data are safe to repeat), up to
/// `ControllerOptions::retries` times. `on_complete(req, status)` then gets 0, or a negative errno:
/// the errno of the failing command (see `to_errno(Status)`; `status` then holds the controller's
/// status code), -ENODEV / -ETIMEDOUT / -EIO when the controller failed for good, or a reset found
/// the request out of retries (`status` stays ok), or -ECANCELED when the queue was destroyed first
/// (then `on_complete` runs on the destroying thread, the only one left touching the queue). When
/// the controller fails or is reset (a fault, a timeout, a hot-unplug), `on_complete` runs while
/// the controller's failure or reset path waits for it: it must not create, destroy or shut down
/// queues or the controller, nor call `Controller::fail` (deadlock).
struct IoRequest : engine::Request {
  IoOpcode opcode = IoOpcode::read;
  std::uint32_t nsid = 1;
  std::uint64_t lba = 0;
  /// Logical blocks to transfer (read, write, compare, write zeroes); 0 for flush, dataset
  /// management and passthrough.
  std::uint64_t blocks = 0;
  /// Where the data lies (read, write, compare: the data the blocks must equal): exactly blocks x
  /// block size bytes (with each block's metadata after it in extended-LBA formats: see
  /// `metadata`), laid out as PRPs allow (see `check_prp_layout`), or, where the controller
  /// supports SGLs (Identify SGLS), in pieces of any length at any address (dword aligned where
  /// SGLS says so; see `sgl_layout_ok`), which go as SGLs. Passthrough: what the command
  /// transfers, in one command, or nothing. Dataset management: the ranges, 1 to kMaxDsmRanges
  /// `DsmRange`s (16 bytes each) in DMA memory; every range is deallocated (Attribute
  /// Deallocate), and `lba` is unused. Empty for flush and write zeroes. Must stay valid until
  /// completion.
  std::span<const DataSegment> data;

  /// Force Unit Access (NVM Command Set §3.2.4, 3.2.6, 3.2.7: Command Dword 12 bit 30): a write
  /// (or write zeroes) completes only once its data is on the medium, past any volatile write
  /// cache; a read comes from the medium. Not for flush.
  bool fua = false;

  /// Namespaces formatted with metadata (`NamespaceInfo::metadata_bytes`, MS, not 0). In an
  /// extended-LBA format (`extended_lba`) each block's metadata follows its data inside `data`,
  /// which then holds blocks x (block size + MS) bytes. Otherwise the metadata goes in this one
  /// separate buffer (MPTR): blocks x MS bytes, dword aligned, in DMA memory, while `data` holds the
  /// blocks alone. Neither moves when `protection.pract` is set and the metadata is only the
  /// protection information (MS 8: `NamespaceInfo::pract_strips`). Read, write and compare;
  /// empty otherwise. Passthrough: the command's MPTR, sized by the caller. Must stay valid until
  /// completion.
  DataSegment metadata{};

  /// End-to-end protection (namespaces formatted with protection information: Identify Namespace
  /// DPS, `NamespaceInfo::pi_type`; NVM Command Set §5.2, 16b Guard) for read, write and compare,
  /// and PRACT alone for write zeroes. Submit refuses PRACT or PRCHK on a namespace without
  /// protection, and checks the protection type does not rule out (a reference tag check on type 3).
  /// A check that fails completes with End-to-end Guard, Application Tag or Reference Tag Check
  /// Error (media status 82h to 84h) and -EILSEQ; a tag error is final, a guard error is retried
  /// (see `worth_retry`). Formats with a 32- or 64-bit guard (`pi_format`): -EOPNOTSUPP.
  struct Protection {
    /// PRACT: the controller generates the protection information of a write, and checks (and,
    /// where it is all the metadata, strips) that of a read.
    bool pract = false;
    std::uint8_t check = 0;  ///< PRCHK: the fields the controller checks (pi::kCheckGuard, ...)
    /// The expected (read) or initial (write) reference tag of the request's first block for
    /// type 2, counting up per block; the expected one of every block for type 3. Type 1: unused,
    /// the driver sends each command's LBA (its low 32 bits), as that type requires.
    std::uint32_t ref_tag = 0;
    std::uint16_t app_tag = 0;   ///< LBAT: the expected application tag
    std::uint16_t app_mask = 0;  ///< LBATM: the bits of `app_tag` that are checked
  } protection{};

  /// When set, the request is this command: `opcode`, `lba` and `fua` are unused (the command's
  /// dwords say all), `blocks` must be 0. It must stay valid until completion.
  PassthroughCommand* passthrough = nullptr;

  /// Output: the controller's status of the first command that failed (ok otherwise). A compare
  /// that found other data fails with Compare Failure (media status 0x85) and -EILSEQ.
  Status status{};

  /// The queue's bookkeeping while the request is in flight; not for the submitter.
  struct Progress {
    std::uint64_t next_block = 0;  ///< blocks already put in commands
    std::uint32_t in_flight = 0;   ///< commands issued and not yet completed
    bool issued_all = false;       ///< nothing left to put in a command
    int error = 0;                 ///< first error (negative errno), 0 so far
    std::uint32_t data_unit = 0;   ///< bytes a block takes in `data` (found once at submit)
    std::uint16_t meta_unit = 0;   ///< bytes a block takes in `metadata`
    std::uint8_t pi_type = 0;      ///< the namespace's protection type
    std::uint8_t attempts = 0;     ///< times the request went again (see above)
    bool retry = false;            ///< a command failed in a way worth another attempt
    bool sgl = false;              ///< the data goes by SGLs (a layout PRPs cannot describe)
  } progress{};
};

}  // namespace vfe::nvme
