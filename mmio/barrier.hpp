#pragma once
/// \file
/// The barriers MMIO needs, one per architecture, each with the reason it is enough.

namespace vfe::mmio {

/// Orders every earlier store to normal (DMA) memory before later MMIO stores, as the device
/// sees them: call it between filling a descriptor and ringing its doorbell.
/// x86-64: stores are not reordered with other stores (Intel SDM vol. 3 §9.2.2), and MMIO is
/// uncached, so only the compiler must be stopped. arm64: `dmb oshst` orders stores to the
/// outer-shareable domain, where devices live.
inline void io_wmb() noexcept {
#if defined(__x86_64__)
  asm volatile("" ::: "memory");
#elif defined(__aarch64__)
  asm volatile("dmb oshst" ::: "memory");
#else
#error "vfio-engine: define io_wmb() for this architecture"
#endif
}

/// Orders an MMIO load (e.g. a status register) before later loads of DMA memory it announced.
/// x86-64: loads are not reordered with other loads, so a compiler barrier. arm64: `dmb oshld`.
inline void io_rmb() noexcept {
#if defined(__x86_64__)
  asm volatile("" ::: "memory");
#elif defined(__aarch64__)
  asm volatile("dmb oshld" ::: "memory");
#else
#error "vfio-engine: define io_rmb() for this architecture"
#endif
}

/// Orders every earlier load and store of DMA memory before every later one, stores before loads
/// included, as a device sees them: for protocols where the host writes a word the device reads
/// and then reads a word the device writes (NVMe shadow doorbells and their event index).
/// x86-64: a store may pass a later load (Intel SDM vol. 3 §9.2.3.4), which only a fence or a
/// locked instruction stops: `mfence`. arm64: `dmb osh` orders all accesses, outer shareable.
inline void io_mb() noexcept {
#if defined(__x86_64__)
  asm volatile("mfence" ::: "memory");
#elif defined(__aarch64__)
  asm volatile("dmb osh" ::: "memory");
#else
#error "vfio-engine: define io_mb() for this architecture"
#endif
}

}  // namespace vfe::mmio
