#pragma once
/// \file
/// `IovaMap`: process virtual address -> IOVA translation for the data path, O(1) with lock-free
/// reads.
///
/// Concurrency contract. Readers (`translate`, `translate_or`) take no lock and may run on any
/// thread at any time, also while a writer (`add`, `remove`) runs. Each table entry is one 64-bit
/// atomic, so for any address a reader observes either the translation before the concurrent
/// write or the one after it (registered or not registered), never a torn or mixed value and never
/// a half-built table: a new table is filled completely before a release store makes it reachable.
/// A range of several blocks is not published as a whole: during `add`/`remove` of a large range a
/// reader may see some of its blocks translated and others not yet (or no longer).
///
/// The map only translates; it does not keep the translation valid for the device. Whoever
/// removes a range (in practice `DmaBuffer`) must make sure that no thread still hands out its
/// IOVA and no device still uses it: remove it from the map first, then wait until in-flight I/O
/// that may have translated it has completed, then unmap it from the IOMMU, then free the IOVA
/// and the memory. A reader racing with `remove` may still get the old IOVA; the map can't know
/// when that reader is done with it.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>

#include "base/result.hpp"
#include "dma/iova.hpp"

namespace vfe::dma {

namespace detail {

/// One level of the translation table: 512 entries, exactly one 4 KiB page, page aligned (so a
/// pointer to it leaves the low 12 bits free for tags, and one node is one TLB entry). An entry is
/// 0 (empty), `iova | kLeafTag` (the IOVA of the first byte of the block it covers) or
/// `node address | kTableTag`. Internal to `IovaMap`.
struct alignas(4096) IovaTableNode {
  static constexpr std::size_t kEntries = 512;
  static constexpr std::uint64_t kLeafTag = 1;
  static constexpr std::uint64_t kTableTag = 2;
  static constexpr std::uint64_t kTagMask = 0xfff;

  std::array<std::atomic<std::uint64_t>, kEntries> entries{};
};

static_assert(sizeof(IovaTableNode) == 4096, "a table node must be exactly one page");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "lock-free reads need lock-free 64-bit atomics");

}  // namespace detail

/// Translates process virtual addresses to IOVAs: a 4-level radix table over the 48-bit user
/// address space, indexed like x86-64 page tables (VA bits 47:39, 38:30, 29:21, 20:12). Level 1
/// leaves cover 1 GiB, level 2 leaves 2 MiB, level 3 leaves 4 KiB; `add` uses the largest block
/// the range allows, so a hugepage buffer costs one entry and a lookup stops early.
///
/// Thread safety: see the file comment. Readers are lock-free, allocation-free and noexcept;
/// writers are serialised by an internal mutex and belong on setup paths.
///
/// Memory: table nodes are never freed before the map is destroyed, so a reader that loaded a
/// table pointer just before a `remove` never touches freed memory. Tables are reused by later
/// registrations of the same addresses, so memory stays bounded by the address space ever
/// registered (about 4 KiB per 2 MiB of it registered in 4 KiB blocks, far less with hugepages),
/// however often ranges are added and removed. A range added where an emptied table of a finer
/// level still exists reuses that table, and so uses smaller blocks than on a fresh map.
///
/// Non-copyable and non-movable (readers hold its address); hold it by unique_ptr or as a member.
/// It is 4096-aligned because the root table is part of it.
class IovaMap {
 public:
  /// Size and alignment of the smallest block: vaddr, size and IOVA must be multiples of it.
  static constexpr std::uint64_t kPageSize = 4096;
  /// One past the highest virtual address the map covers (x86-64 4-level user space; a 5-level
  /// kernel hands out addresses above it only to mmap calls that ask for them with a hint).
  static constexpr std::uint64_t kVaLimit = std::uint64_t{1} << 48;

  /// Shape of the table, for tests and diagnostics.
  struct Stats {
    std::size_t leaves_1g = 0;  ///< live 1 GiB leaves
    std::size_t leaves_2m = 0;  ///< live 2 MiB leaves
    std::size_t leaves_4k = 0;  ///< live 4 KiB leaves
    std::size_t nodes = 0;      ///< tables allocated besides the root (each 4 KiB; never freed early)
    friend bool operator==(const Stats&, const Stats&) = default;
  };

  /// An empty map. Allocates nothing (the root table is a member).
  IovaMap() noexcept = default;
  /// Frees every table. No reader or writer may still use the map.
  ~IovaMap();
  IovaMap(const IovaMap&) = delete;
  IovaMap& operator=(const IovaMap&) = delete;
  IovaMap(IovaMap&&) = delete;
  IovaMap& operator=(IovaMap&&) = delete;

  /// Registers [vaddr, vaddr + size) -> [iova, iova + size). vaddr, size and iova must be 4 KiB
  /// aligned, size > 0 and the range inside [0, 2^48) (else EINVAL). A range that overlaps one
  /// registered before is refused with EEXIST. ENOMEM when a table can't be allocated. On any
  /// error nothing changes. Setup path: takes the writer mutex, may allocate.
  [[nodiscard]] Result<void> add(const void* vaddr, std::uint64_t size, Iova iova);

  /// Success unless [vaddr, vaddr + size) overlaps a registered range: then the EEXIST `add`
  /// would give, naming that registration. For a caller with costly work to do before `add`
  /// (DmaSpace pins and maps the memory first), so an overlap is refused before that work; `add`
  /// still checks, as another thread may register in between. Takes the writer mutex.
  [[nodiscard]] Result<void> check_unregistered(const void* vaddr, std::uint64_t size) const;
  /// Unregisters [vaddr, vaddr + size), which must be exactly a union of earlier `add` ranges
  /// (typically one `add` of the same range); a range that is partly unregistered, or that cuts
  /// through a registration, is EINVAL and changes nothing. Tables stay allocated (see the class
  /// comment); concurrent readers see each entry either still translated or empty.
  [[nodiscard]] Result<void> remove(const void* vaddr, std::uint64_t size);

  /// The IOVA of `vaddr`, or nullopt when it is not registered. Data path: lock-free (at most 4
  /// dependent acquire loads), no allocation, callable from any thread.
  [[nodiscard]] std::optional<Iova> translate(const void* vaddr) const noexcept {
    std::uint64_t iova = 0;
    if (!lookup(vaddr, iova)) {
      return std::nullopt;
    }
    return Iova{iova};
  }

  /// The IOVA of `vaddr`, or `fallback` when it is not registered. Same guarantees as `translate`.
  [[nodiscard]] Iova translate_or(const void* vaddr, Iova fallback) const noexcept {
    std::uint64_t iova = 0;
    return lookup(vaddr, iova) ? Iova{iova} : fallback;
  }

  /// Counts of live leaves and allocated tables. Takes the writer mutex.
  [[nodiscard]] Stats stats() const;

 private:
  using Node = detail::IovaTableNode;
  static constexpr unsigned kLevels = 4;
  /// VA bit where the index of `level` starts: 39, 30, 21, 12.
  static constexpr unsigned shift_of(unsigned level) noexcept { return 39 - 9 * level; }

  /// The walk of `translate`: true and `iova` set when `vaddr` is registered.
  bool lookup(const void* vaddr, std::uint64_t& iova) const noexcept {
    const auto va = reinterpret_cast<std::uintptr_t>(vaddr);
    if (va >= kVaLimit) {
      return false;
    }
    const Node* node = &root_;
    for (unsigned level = 0; level < kLevels; ++level) {
      const unsigned shift = shift_of(level);
      // Acquire pairs with the writer's release store of a new table, so its contents are seen.
      const std::uint64_t entry =
          node->entries[(va >> shift) % Node::kEntries].load(std::memory_order_acquire);
      if ((entry & Node::kLeafTag) != 0) {
        iova = (entry & ~Node::kTagMask) + (va & ((std::uint64_t{1} << shift) - 1));
        return true;
      }
      if ((entry & Node::kTableTag) == 0) {
        return false;
      }
      node = reinterpret_cast<const Node*>(entry & ~Node::kTagMask);
    }
    return false;  // not reached: level 3 entries are leaves or empty
  }

  struct Registration {
    std::uint64_t size = 0;
    std::uint64_t iova = 0;
  };

  [[nodiscard]] Result<void> check_free(std::uint64_t va, std::uint64_t size) const;
  [[nodiscard]] Result<void> check_registered(std::uint64_t va, std::uint64_t size) const;

  // The root first, on its own pages: readers touch it on every lookup, while the writer-only
  // state below changes under the mutex; keeping them apart avoids false sharing.
  Node root_;
  mutable std::mutex mutex_;  // serialises writers; never taken by readers
  // Writer-only state, guarded by mutex_: the registered ranges (va -> size, iova), which give
  // exact overlap and coverage checks and good error messages, and the counters of `stats()`.
  std::map<std::uint64_t, Registration> registrations_;
  Stats stats_;
};

}  // namespace vfe::dma
