#include "dma/iova_map.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <iterator>
#include <memory>
#include <new>
#include <vector>

#include "base/units.hpp"

namespace vfe::dma {
namespace {

using Node = detail::IovaTableNode;
constexpr unsigned kLeafLevel = 3;

constexpr unsigned shift_at(unsigned level) noexcept { return 39 - 9 * level; }

Node* table_of(std::uint64_t entry) noexcept {
  return reinterpret_cast<Node*>(entry & ~Node::kTagMask);
}

std::uint64_t table_entry(Node* node) noexcept {
  return reinterpret_cast<std::uintptr_t>(node) | Node::kTableTag;
}

// The slots of a node (whose first byte translates VA `base`) that [lo, hi) touches, as indexes
// [first, last]. The caller guarantees that the range and the node overlap.
struct SlotSpan {
  std::uint64_t first;
  std::uint64_t last;
};

SlotSpan slots_touched(std::uint64_t base, unsigned level, std::uint64_t lo, std::uint64_t hi) {
  const unsigned shift = shift_at(level);
  const std::uint64_t node_end = base + (Node::kEntries << shift);
  return {(std::max(lo, base) - base) >> shift, (std::min(hi, node_end) - 1 - base) >> shift};
}

// One `add` walks the table twice: first to count the tables it needs (node == nullptr stands for
// a table that does not exist yet, all empty), then, with that many tables allocated up front, to
// write. So allocation failure can only happen before anything changed.
struct AddWalk {
  std::uint64_t lo = 0;    // VA range [lo, hi) being added
  std::uint64_t hi = 0;
  std::uint64_t iova = 0;  // IOVA of lo
  bool writing = false;
  std::size_t tables_needed = 0;            // counting pass
  std::vector<std::unique_ptr<Node>> pool;  // writing pass: the tables counted before
  IovaMap::Stats* stats = nullptr;
};

void count_leaf(IovaMap::Stats& stats, unsigned level, int delta) {
  std::size_t& counter = level == 1 ? stats.leaves_1g : level == 2 ? stats.leaves_2m : stats.leaves_4k;
  counter = delta > 0 ? counter + 1 : counter - 1;
}

void add_in_node(Node* node, unsigned level, std::uint64_t base, AddWalk& walk) {
  const unsigned shift = shift_at(level);
  const SlotSpan span = slots_touched(base, level, walk.lo, walk.hi);
  for (std::uint64_t idx = span.first; idx <= span.last; ++idx) {
    const std::uint64_t slot = base + (idx << shift);
    // Relaxed: only writers (serialised by the mutex) store entries, and this is the writer.
    const std::uint64_t entry = node ? node->entries[idx].load(std::memory_order_relaxed) : 0;
    if ((entry & Node::kTableTag) != 0) {
      add_in_node(table_of(entry), level + 1, slot, walk);  // reuse the table that is there
      continue;
    }
    assert(entry == 0 && "registrations do not overlap, so no leaf can be in the way");
    const bool covered = walk.lo <= slot && slot + (std::uint64_t{1} << shift) <= walk.hi;
    if (covered && level >= 1) {  // no 512 GiB leaves: level 0 always points to tables
      if (walk.writing) {
        node->entries[idx].store((walk.iova + (slot - walk.lo)) | Node::kLeafTag,
                                 std::memory_order_release);
        count_leaf(*walk.stats, level, +1);
      }
    } else if (!walk.writing) {
      ++walk.tables_needed;
      add_in_node(nullptr, level + 1, slot, walk);
    } else {
      Node* child = walk.pool.back().release();
      walk.pool.pop_back();
      ++walk.stats->nodes;
      add_in_node(child, level + 1, slot, walk);  // fill the new table completely, then
      // publish it: release pairs with the readers' acquire load of this entry.
      node->entries[idx].store(table_entry(child), std::memory_order_release);
    }
  }
}

// Clears every leaf in [lo, hi), which the caller checked is exactly a union of registrations
// (so each leaf met lies wholly inside it). Tables stay: a reader may be inside one.
void remove_in_node(Node* node, unsigned level, std::uint64_t base, std::uint64_t lo,
                    std::uint64_t hi, IovaMap::Stats& stats) {
  const unsigned shift = shift_at(level);
  const SlotSpan span = slots_touched(base, level, lo, hi);
  for (std::uint64_t idx = span.first; idx <= span.last; ++idx) {
    const std::uint64_t entry = node->entries[idx].load(std::memory_order_relaxed);
    if ((entry & Node::kTableTag) != 0) {
      remove_in_node(table_of(entry), level + 1, base + (idx << shift), lo, hi, stats);
    } else if ((entry & Node::kLeafTag) != 0) {
      assert(lo <= base + (idx << shift) && base + ((idx + 1) << shift) <= hi);
      node->entries[idx].store(0, std::memory_order_release);
      count_leaf(stats, level, -1);
    } else {
      assert(false && "a registered range has no hole");
    }
  }
}

void free_tables(Node& node, unsigned level) noexcept {
  if (level == kLeafLevel) {
    return;
  }
  for (std::atomic<std::uint64_t>& slot : node.entries) {
    const std::uint64_t entry = slot.load(std::memory_order_relaxed);
    if ((entry & Node::kTableTag) != 0) {
      Node* child = table_of(entry);
      free_tables(*child, level + 1);
      delete child;
    }
  }
}

// EINVAL unless [va, va + size) is a non-empty, 4 KiB aligned range inside the table's reach.
Result<void> check_range(const char* op, std::uint64_t va, std::uint64_t size) {
  if (!is_aligned(va, IovaMap::kPageSize) || size == 0 || !is_aligned(size, IovaMap::kPageSize)) {
    return Error::invalid(op, fmt::format("vaddr {:#x} and size {:#x} must be non-zero multiples "
                                          "of 4 KiB (the vaddr may be 0); register whole pages",
                                          va, size));
  }
  if (va >= IovaMap::kVaLimit || size > IovaMap::kVaLimit - va) {
    return Error::invalid(op, fmt::format("vaddr range [{:#x}, +{:#x}) does not fit below {:#x} "
                                          "(48-bit user address space)",
                                          va, size, IovaMap::kVaLimit));
  }
  return ok();
}

}  // namespace

IovaMap::~IovaMap() { free_tables(root_, 0); }

// EEXIST when [va, va + size) overlaps a registration.
Result<void> IovaMap::check_free(std::uint64_t va, std::uint64_t size) const {
  auto it = registrations_.lower_bound(va);
  if (it != registrations_.begin() && std::prev(it)->first + std::prev(it)->second.size > va) {
    it = std::prev(it);
  } else if (it == registrations_.end() || it->first >= va + size) {
    return ok();
  }
  return Error::from_errno(
      EEXIST, "IovaMap::add",
      fmt::format("vaddr range [{:#x}, {:#x}) overlaps the registration [{:#x}, {:#x}) -> IOVA "
                  "{:#x}; remove that one first, or register only the part not yet covered",
                  va, va + size, it->first, it->first + it->second.size, it->second.iova));
}

// EINVAL unless [va, va + size) is exactly the union of consecutive registrations.
Result<void> IovaMap::check_registered(std::uint64_t va, std::uint64_t size) const {
  constexpr const char* kOp = "IovaMap::remove";
  const std::uint64_t end = va + size;
  auto it = registrations_.upper_bound(va);
  if (it != registrations_.begin() && std::prev(it)->first < va &&
      std::prev(it)->first + std::prev(it)->second.size > va) {
    const auto& [start, reg] = *std::prev(it);
    return Error::invalid(kOp, fmt::format("vaddr {:#x} lies inside the registration [{:#x}, "
                                           "{:#x}) (partial remove?); remove whole registrations",
                                           va, start, start + reg.size));
  }
  it = registrations_.find(va);
  std::uint64_t at = va;
  while (at < end) {
    if (it == registrations_.end() || it->first != at) {
      return Error::invalid(kOp, fmt::format("vaddr {:#x} (in [{:#x}, {:#x})) is not registered; "
                                             "remove only what was added",
                                             at, va, end));
    }
    at += it->second.size;
    ++it;
  }
  if (at != end) {
    return Error::invalid(kOp, fmt::format("vaddr range [{:#x}, {:#x}) ends inside the "
                                           "registration ending at {:#x} (partial remove?); "
                                           "remove whole registrations",
                                           va, end, at));
  }
  return ok();
}

Result<void> IovaMap::check_unregistered(const void* vaddr, std::uint64_t size) const {
  const std::lock_guard lock(mutex_);
  return check_free(reinterpret_cast<std::uintptr_t>(vaddr), size);
}

Result<void> IovaMap::add(const void* vaddr, std::uint64_t size, Iova iova) {
  constexpr const char* kOp = "IovaMap::add";
  const auto va = reinterpret_cast<std::uintptr_t>(vaddr);
  VFE_TRY(check_range(kOp, va, size));
  if (!is_aligned(to_u64(iova), kPageSize) || size - 1 > ~std::uint64_t{0} - to_u64(iova)) {
    return Error::invalid(kOp, fmt::format("IOVA {:#x} of {:#x} bytes must be 4 KiB aligned and "
                                           "end below 2^64",
                                           to_u64(iova), size));
  }
  const std::lock_guard lock(mutex_);
  VFE_TRY(check_free(va, size));

  AddWalk walk;
  walk.lo = va;
  walk.hi = va + size;
  walk.iova = to_u64(iova);
  walk.stats = &stats_;
  add_in_node(&root_, 0, 0, walk);
  walk.pool.reserve(walk.tables_needed);
  for (std::size_t i = 0; i < walk.tables_needed; ++i) {
    // Value-initialised: every entry empty before the table can be published.
    walk.pool.emplace_back(new (std::nothrow) Node());
    if (!walk.pool.back()) {
      return Error::from_errno(ENOMEM, kOp, fmt::format("out of memory for {} translation tables "
                                                        "of 4 KiB",
                                                        walk.tables_needed));
    }
  }
  registrations_.emplace(va, Registration{.size = size, .iova = to_u64(iova)});
  walk.writing = true;
  add_in_node(&root_, 0, 0, walk);
  assert(walk.pool.empty());
  return ok();
}

Result<void> IovaMap::remove(const void* vaddr, std::uint64_t size) {
  constexpr const char* kOp = "IovaMap::remove";
  const auto va = reinterpret_cast<std::uintptr_t>(vaddr);
  VFE_TRY(check_range(kOp, va, size));
  const std::lock_guard lock(mutex_);
  VFE_TRY(check_registered(va, size));
  registrations_.erase(registrations_.find(va), registrations_.lower_bound(va + size));
  remove_in_node(&root_, 0, 0, va, va + size, stats_);
  return ok();
}

IovaMap::Stats IovaMap::stats() const {
  const std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace vfe::dma
