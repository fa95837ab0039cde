#pragma once
/// \file
/// `SpscRing<T>`: a bounded lock-free FIFO between one producer thread and one consumer thread
/// (a worker's completion ring, a queue pair's hand-off). Also holds the small storage helpers
/// that `MpscRing` shares.

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cstddef>
#include <memory>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "base/units.hpp"

namespace vfe::engine {

namespace detail {

/// A requested ring capacity clamped to [lowest, highest] and rounded up to a power of two, so
/// an index maps to its slot with a mask instead of a division.
[[nodiscard]] constexpr std::size_t ring_capacity(std::size_t requested, std::size_t lowest,
                                                  std::size_t highest) noexcept {
  assert(requested <= highest && "ring capacity above kMaxCapacity is clamped");
  return std::bit_ceil(std::clamp(requested, lowest, highest));
}

/// Uninitialised, cache-line-aligned memory for `count` objects of `Elem`, allocated once and
/// freed on destruction. It constructs and destroys nothing: the ring that owns it does.
/// The allocation is a whole number of cache lines, so no other heap object shares a line with
/// the slots. Allocation failure throws std::bad_alloc, as std::vector would.
template <class Elem>
class RingStorage {
 public:
  explicit RingStorage(std::size_t count)
      : data_(static_cast<Elem*>(::operator new(bytes(count), std::align_val_t{kAlign}))),
        count_(count) {}
  ~RingStorage() { ::operator delete(data_, bytes(count_), std::align_val_t{kAlign}); }
  RingStorage(const RingStorage&) = delete;
  RingStorage& operator=(const RingStorage&) = delete;

  /// First element; valid for the storage's lifetime.
  [[nodiscard]] Elem* data() const noexcept { return data_; }
  /// Number of elements it has room for.
  [[nodiscard]] std::size_t size() const noexcept { return count_; }

 private:
  static constexpr std::size_t kAlign = std::max(kCacheLine, alignof(Elem));
  static constexpr std::size_t bytes(std::size_t count) noexcept {
    return (count * sizeof(Elem) + kAlign - 1) / kAlign * kAlign;
  }

  Elem* data_;
  std::size_t count_;
};

}  // namespace detail

/// A bounded FIFO for exactly one producer thread and one consumer thread.
///
/// Threads: `try_push`, `try_emplace` and `push_bulk` from the producer thread only; `try_pop`
/// and `pop_bulk` from the consumer thread only; `size_approx` and `capacity` from any thread.
/// A role may move to another thread if the hand-over itself orders the two (a join, a mutex).
/// Construction and destruction happen while no other thread uses the ring.
///
/// Guarantees: items come out in the order they went in, each exactly once. Every call is
/// wait-free (a bounded number of steps, it never spins): a full or empty ring returns false or
/// 0 at once. No allocation and no lock after construction.
///
/// Layout: the producer's index and the consumer's index live on separate cache lines, and each
/// side keeps a cached copy of the other side's index, so in the common case a call touches only
/// its own line and the slots; it reads the other line only when the ring looks full (producer)
/// or empty (consumer) by the cached copy. Indices count up freely (64 bits do not wrap in
/// practice), so all `capacity()` slots are usable: full is `tail - head == capacity`.
template <class T>
class SpscRing {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T> &&
                    std::is_nothrow_destructible_v<T>,
                "SpscRing<T>: T must be nothrow-movable (the data path is noexcept)");

 public:
  using value_type = T;
  /// The largest capacity a ring can have; larger requests are clamped to it.
  static constexpr std::size_t kMaxCapacity = std::size_t{1} << 30;

  /// Allocates room for `min_capacity` items rounded up to a power of two (0 counts as 1;
  /// values above kMaxCapacity are clamped, and assert in debug builds). The only allocation
  /// the ring ever makes; std::bad_alloc if it fails.
  explicit SpscRing(std::size_t min_capacity)
      : storage_(detail::ring_capacity(min_capacity, 1, kMaxCapacity)),
        mask_(storage_.size() - 1) {}

  /// Destroys the items still queued. No other thread may use the ring any more.
  ~SpscRing() {
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    for (std::size_t i = head_.load(std::memory_order_relaxed); i != tail; ++i) {
      std::destroy_at(slot(i));
    }
  }
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  /// Producer only. Copies `item` in; false (and nothing changes) when the ring is full.
  [[nodiscard]] bool try_push(const T& item) noexcept
    requires std::is_nothrow_copy_constructible_v<T>
  {
    return try_emplace(item);
  }

  /// Producer only. Moves `item` in; false when full, and then `item` is left untouched.
  [[nodiscard]] bool try_push(T&& item) noexcept { return try_emplace(std::move(item)); }

  /// Producer only. Constructs an item in place from `args`; false when full (nothing is
  /// constructed then).
  template <class... Args>
    requires std::is_nothrow_constructible_v<T, Args&&...>
  [[nodiscard]] bool try_emplace(Args&&... args) noexcept {
    // relaxed: only this thread writes tail_.
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    if (free_slots(tail, 1) == 0) {
      return false;
    }
    std::construct_at(slot(tail), std::forward<Args>(args)...);
    // release: the item is fully constructed before the consumer can see the new tail.
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  /// Producer only. Copies in as many leading items of `items` as fit and returns how many
  /// (0 when full). One index store publishes the whole batch, so the consumer sees all of it
  /// or none of it.
  std::size_t push_bulk(std::span<const T> items) noexcept
    requires std::is_nothrow_copy_constructible_v<T>
  {
    // relaxed: only this thread writes tail_.
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    const std::size_t n = std::min(items.size(), free_slots(tail, items.size()));
    if (n == 0) {
      return 0;
    }
    copy_in(tail, items.first(n));
    // release: all n items are constructed before the consumer can see any of them.
    tail_.store(tail + n, std::memory_order_release);
    return n;
  }

  /// Consumer only. Moves the oldest item into `out`; false (and `out` untouched) when empty.
  [[nodiscard]] bool try_pop(T& out) noexcept {
    // relaxed: only this thread writes head_.
    const std::size_t head = head_.load(std::memory_order_relaxed);
    if (ready_slots(head, 1) == 0) {
      return false;
    }
    T* item = slot(head);
    out = std::move(*item);
    std::destroy_at(item);
    // release: we are done with the slot before the producer can see it free and reuse it.
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  /// Consumer only. Moves up to `out.size()` oldest items into `out[0..n)` and returns n
  /// (0 when empty). One index store frees the whole batch.
  std::size_t pop_bulk(std::span<T> out) noexcept {
    // relaxed: only this thread writes head_.
    const std::size_t head = head_.load(std::memory_order_relaxed);
    const std::size_t n = std::min(out.size(), ready_slots(head, out.size()));
    if (n == 0) {
      return 0;
    }
    move_out(head, out.first(n));
    // release: we are done with all n slots before the producer can see them free.
    head_.store(head + n, std::memory_order_release);
    return n;
  }

  /// Any thread. Items queued at some moment during the call, in [0, capacity()]; exact only
  /// when neither side is active. For statistics and tests, not for deciding whether a push
  /// will succeed.
  [[nodiscard]] std::size_t size_approx() const noexcept {
    // acquire, and head before tail: the consumer stored this head after seeing a tail at least
    // as large, so the tail read below is never smaller and the difference never wraps.
    const std::size_t head = head_.load(std::memory_order_acquire);
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    return std::min(tail - head, capacity());
  }

  /// Any thread. How many items the ring holds when full (a power of two, fixed).
  [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

 private:
  [[nodiscard]] T* slot(std::size_t index) const noexcept { return storage_.data() + (index & mask_); }

  /// Producer: free slots seen from `tail`, re-reading the consumer's index only when the
  /// cached copy shows fewer than `wanted`.
  std::size_t free_slots(std::size_t tail, std::size_t wanted) noexcept {
    std::size_t free = capacity() - (tail - head_cache_);
    if (free < wanted) {
      // acquire: the consumer's moves out of the slots below this head happen before we
      // construct into them.
      head_cache_ = head_.load(std::memory_order_acquire);
      free = capacity() - (tail - head_cache_);
    }
    return free;
  }

  /// Consumer: items ready from `head`, re-reading the producer's index only when the cached
  /// copy shows fewer than `wanted`.
  std::size_t ready_slots(std::size_t head, std::size_t wanted) noexcept {
    std::size_t ready = tail_cache_ - head;
    if (ready < wanted) {
      // acquire: the items the producer published below this tail are visible to us.
      tail_cache_ = tail_.load(std::memory_order_acquire);
      ready = tail_cache_ - head;
    }
    return ready;
  }

  /// Copies `items` into the slots from `tail` on: up to the end of the array, then from 0.
  /// For trivially copyable T each part is one memmove.
  void copy_in(std::size_t tail, std::span<const T> items) noexcept {
    const std::size_t at = tail & mask_;
    const std::size_t first = std::min(items.size(), capacity() - at);
    std::uninitialized_copy_n(items.data(), first, storage_.data() + at);
    std::uninitialized_copy_n(items.data() + first, items.size() - first, storage_.data());
  }

  /// Moves the items from `head` on into `out` and ends their lifetime in the slots.
  void move_out(std::size_t head, std::span<T> out) noexcept {
    const std::size_t at = head & mask_;
    const std::size_t first = std::min(out.size(), capacity() - at);
    T* const base = storage_.data();
    std::move(base + at, base + at + first, out.data());
    std::destroy_n(base + at, first);
    std::move(base, base + (out.size() - first), out.data() + first);
    std::destroy_n(base, out.size() - first);
  }

  // Read-only after construction, alone on the first line: neither side's stores invalidate it.
  alignas(kCacheLine) detail::RingStorage<T> storage_;
  std::size_t mask_;

  // The producer's line: it writes both; the consumer only reads tail_.
  alignas(kCacheLine) std::atomic<std::size_t> tail_{0};
  std::size_t head_cache_ = 0;  ///< the producer's last view of head_

  // The consumer's line: it writes both; the producer only reads head_.
  alignas(kCacheLine) std::atomic<std::size_t> head_{0};
  std::size_t tail_cache_ = 0;  ///< the consumer's last view of tail_
};

}  // namespace vfe::engine
