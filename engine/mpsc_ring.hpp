#pragma once
/// \file
/// `MpscRing<T>`: a bounded FIFO from many producer threads (application threads submitting
/// work) to one consumer thread (the worker that owns the queue pair).

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>

#include "base/units.hpp"
#include "engine/spsc_ring.hpp"  // detail::RingStorage, detail::ring_capacity

namespace vfe::engine {

/// A bounded FIFO for any number of producer threads and exactly one consumer thread.
///
/// Threads: `try_push`, `try_emplace` and `push_bulk` from any thread, concurrently; `try_pop`
/// and `pop_bulk` from the consumer thread only; `size_approx` and `capacity` from any thread.
/// Construction and destruction happen while no other thread uses the ring.
///
/// Design (a bounded queue with a sequence number per slot, after D. Vyukov): a producer claims
/// index `i` by a CAS on the shared tail (`push_bulk` claims a contiguous run with one CAS),
/// constructs the item in slot `i % capacity`, then publishes it by storing the slot's sequence
/// `i + 1`. The consumer alone advances the head; it takes index `i` once that slot's sequence
/// reads `i + 1`, and hands the slot to the next lap by storing `i + capacity`. The consumer never
/// touches the tail, and producers read the consumer's head only when `push_bulk` wants more
/// slots than the next one it can see free.
///
/// Ordering: the ring is linearised by the claims; so items of one producer come out in the
/// order its pushes returned, and each item comes out exactly once.
///
/// Progress, honestly:
/// - Producers are lock-free among themselves: a producer retries only because another one
///   claimed first. They never wait for the consumer: a full ring returns false / 0 at once.
/// - The consumer is wait-free: it never spins; an empty ring returns false / 0 at once.
/// - The ring as a whole is not lock-free: a producer preempted (or stopped) between its claim
///   and its publish holds back that slot and every later one. The consumer sees "empty" at
///   that slot even when later items are ready, until the producer runs again; if the ring
///   fills up meanwhile, every producer sees "full". The window is a few instructions (the
///   item's construction), so this shows only under heavy preemption.
template <class T>
class MpscRing {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T> &&
                    std::is_nothrow_destructible_v<T>,
                "MpscRing<T>: T must be nothrow-movable (the data path is noexcept)");

 public:
  using value_type = T;
  /// The largest capacity a ring can have; larger requests are clamped to it.
  static constexpr std::size_t kMaxCapacity = std::size_t{1} << 30;

  /// Allocates `min_capacity` slots rounded up to a power of two, at least 2 (a slot's free
  /// and full sequence numbers must differ); values above kMaxCapacity are clamped (and assert
  /// in debug builds). The only allocation the ring ever makes; std::bad_alloc if it fails.
  explicit MpscRing(std::size_t min_capacity)
      : slots_(detail::ring_capacity(min_capacity, 2, kMaxCapacity)), mask_(slots_.size() - 1) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      std::construct_at(slots_.data() + i, i);
    }
  }

  /// Destroys the items still queued. No other thread may use the ring any more, and every
  /// producer call has returned (so no slot is claimed but unpublished).
  ~MpscRing() {
    for (std::size_t i = head_.load(std::memory_order_relaxed);; ++i) {
      Slot& slot = slot_at(i);
      if (slot.seq.load(std::memory_order_relaxed) != i + 1) {
        break;
      }
      std::destroy_at(&slot.value);
    }
    std::destroy_n(slots_.data(), slots_.size());
  }
  MpscRing(const MpscRing&) = delete;
  MpscRing& operator=(const MpscRing&) = delete;

  /// Any thread. Copies `item` in; false (and nothing changes) when the ring is full.
  [[nodiscard]] bool try_push(const T& item) noexcept
    requires std::is_nothrow_copy_constructible_v<T>
  {
    return try_emplace(item);
  }

  /// Any thread. Moves `item` in; false when full, and then `item` is left untouched.
  [[nodiscard]] bool try_push(T&& item) noexcept { return try_emplace(std::move(item)); }

  /// Any thread. Constructs an item in place from `args`; false when full.
  template <class... Args>
    requires std::is_nothrow_constructible_v<T, Args&&...>
  [[nodiscard]] bool try_emplace(Args&&... args) noexcept {
    std::size_t index = 0;
    Slot* slot = claim_one(index);
    if (slot == nullptr) {
      return false;
    }
    std::construct_at(&slot->value, std::forward<Args>(args)...);
    // release: the item is fully constructed before the consumer can see this sequence.
    slot->seq.store(index + 1, std::memory_order_release);
    return true;
  }

  /// Any thread. Claims as many slots as are free for the leading items of `items` (up to
  /// capacity) with one CAS, copies them in and publishes them; returns how many (0 when full).
  /// The batch stays contiguous: no other producer's item lands inside it.
  std::size_t push_bulk(std::span<const T> items) noexcept
    requires std::is_nothrow_copy_constructible_v<T>
  {
    const std::size_t wanted = std::min(items.size(), capacity());
    if (wanted == 0) {
      return 0;
    }
    // relaxed: the tail only hands out indices; slot sequences carry the synchronisation.
    std::size_t first = tail_.load(std::memory_order_relaxed);
    for (;;) {
      const std::size_t n = claimable(first, wanted);
      if (n == 0) {
        const std::size_t now = tail_.load(std::memory_order_relaxed);
        if (now == first) {
          return 0;  // full: nobody moved the tail, so the slot at it really is still taken
        }
        first = now;
        continue;
      }
      // relaxed: winning only grants the slots; each slot's sequence store publishes its item.
      if (tail_.compare_exchange_weak(first, first + n, std::memory_order_relaxed)) {
        fill(first, items.first(n));
        return n;
      }
    }
  }

  /// Consumer only. Moves the oldest item into `out`; false (`out` untouched) when empty or
  /// when the oldest claimed slot is not published yet.
  [[nodiscard]] bool try_pop(T& out) noexcept {
    // relaxed: only this thread writes head_.
    const std::size_t index = head_.load(std::memory_order_relaxed);
    if (!take(index, out)) {
      return false;
    }
    // release: the slots below the new head are free (their sequence stores come first), for a
    // producer sizing a bulk claim from head_.
    head_.store(index + 1, std::memory_order_release);
    return true;
  }

  /// Consumer only. Moves up to `out.size()` oldest published items into `out[0..n)` and
  /// returns n; stops early at an empty or unpublished slot.
  std::size_t pop_bulk(std::span<T> out) noexcept {
    // relaxed: only this thread writes head_.
    const std::size_t head = head_.load(std::memory_order_relaxed);
    std::size_t n = 0;
    while (n < out.size() && take(head + n, out[n])) {
      ++n;
    }
    if (n != 0) {
      // release: as in try_pop, the freed slots are visible as free before the new head is.
      head_.store(head + n, std::memory_order_release);
    }
    return n;
  }

  /// Any thread. Items queued at some moment during the call (claimed slots count even before
  /// they are published), in [0, capacity()]. For statistics and tests.
  [[nodiscard]] std::size_t size_approx() const noexcept {
    // acquire, and head before tail: the consumer stored this head after seeing those slots
    // published, which came after their claims, so the tail read below is never smaller.
    const std::size_t head = head_.load(std::memory_order_acquire);
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    return std::min(tail - head, capacity());
  }

  /// Any thread. How many items the ring holds when full (a power of two, fixed).
  [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

 private:
  /// One slot. `seq == i`: free for the producer that claims index i; `seq == i + 1`: holds
  /// item i for the consumer, which then stores `i + capacity` (free for the next lap).
  struct Slot {
    explicit Slot(std::size_t index) noexcept : seq(index) {}
    ~Slot() {}  // the value's lifetime is managed by the ring, not by the slot
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

    std::atomic<std::size_t> seq;
    union {
      T value;
    };
  };

  [[nodiscard]] Slot& slot_at(std::size_t index) const noexcept {
    return slots_.data()[index & mask_];
  }

  /// True when the slot of `index` is free for the producer of `index`.
  [[nodiscard]] bool is_free(std::size_t index) const noexcept {
    // acquire: the consumer's move out of this slot (one lap ago) happens before we write it.
    return slot_at(index).seq.load(std::memory_order_acquire) == index;
  }

  /// Claims one index by CAS; returns its slot and sets `index`, or nullptr when full.
  Slot* claim_one(std::size_t& index) noexcept {
    // relaxed: the tail only hands out indices; slot sequences carry the synchronisation.
    index = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Slot& slot = slot_at(index);
      // acquire: see is_free.
      const auto lag = static_cast<std::ptrdiff_t>(slot.seq.load(std::memory_order_acquire) - index);
      if (lag == 0) {
        // relaxed: winning only grants the slot; the sequence store publishes the item.
        if (tail_.compare_exchange_weak(index, index + 1, std::memory_order_relaxed)) {
          return &slot;
        }
      } else if (lag < 0) {
        return nullptr;  // the slot still holds the item of one lap ago: the ring is full
      } else {
        index = tail_.load(std::memory_order_relaxed);  // another producer took it: catch up
      }
    }
  }

  /// How many slots from `first` on are free, up to `wanted`; 0 when none is (or when `first`
  /// is stale: the caller re-reads the tail). The consumer frees slots in index order, so when
  /// the last slot of a run is free for this lap, all of the run is.
  [[nodiscard]] std::size_t claimable(std::size_t first, std::size_t wanted) const noexcept {
    if (is_free(first + wanted - 1)) {
      return wanted;
    }
    // acquire: pairs with the consumer's release store of head_; the slots it freed below it
    // read as free.
    const std::size_t head = head_.load(std::memory_order_acquire);
    const auto room = static_cast<std::ptrdiff_t>(head + capacity() - first);
    if (room <= 0) {
      return 0;
    }
    const std::size_t n = std::min(wanted, static_cast<std::size_t>(room));
    return is_free(first + n - 1) ? n : 0;
  }

  /// Producer: copies `items` into the claimed slots from `first` on and publishes each.
  void fill(std::size_t first, std::span<const T> items) noexcept {
    for (std::size_t i = 0; i < items.size(); ++i) {
      Slot& slot = slot_at(first + i);
      std::construct_at(&slot.value, items[i]);
      // release: this item is fully constructed before the consumer can see its sequence.
      slot.seq.store(first + i + 1, std::memory_order_release);
    }
  }

  /// Consumer: moves item `index` into `out` and frees its slot for the next lap; false when
  /// it is not published yet.
  bool take(std::size_t index, T& out) noexcept {
    Slot& slot = slot_at(index);
    // acquire: pairs with the producer's publish; the item's contents are visible.
    if (slot.seq.load(std::memory_order_acquire) != index + 1) {
      return false;
    }
    out = std::move(slot.value);
    std::destroy_at(&slot.value);
    // release: our read of the item is done before the next lap's producer can overwrite it.
    slot.seq.store(index + capacity(), std::memory_order_release);
    return true;
  }

  // Read-only after construction, alone on the first line.
  alignas(kCacheLine) detail::RingStorage<Slot> slots_;
  std::size_t mask_;

  // Producers' line: every claim CASes it; the consumer never touches it (size_approx reads it).
  alignas(kCacheLine) std::atomic<std::size_t> tail_{0};

  // The consumer's line: only the consumer writes it; producers read it to size bulk claims.
  alignas(kCacheLine) std::atomic<std::size_t> head_{0};
};

}  // namespace vfe::engine
