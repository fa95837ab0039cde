#include "bench/vfio_bench/soft_device.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vfe::bench {
namespace {

void cpu_relax() noexcept {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

Result<std::unique_ptr<SoftDevice>> SoftDevice::start(std::uint32_t entries, bool irq, int cpu) {
  if (entries < 2 || (entries & (entries - 1)) != 0) {
    return Error::invalid("start loopback device", "queue entries must be a power of two of at least 2");
  }
  VFE_TRY_ASSIGN(auto mem, dma::HostMemory::allocate(std::uint64_t{entries} * (sizeof(SoftSqe) + sizeof(SoftCqe)),
                                                     {.hugepages = false, .numa_node = -1}));
  Fd fd(::eventfd(0, EFD_CLOEXEC));
  if (!fd.valid()) {
    return Error::from_errno(errno, "start loopback device", "eventfd");
  }
  std::unique_ptr<SoftDevice> d(new SoftDevice(entries, irq, std::move(mem), std::move(fd)));
  d->thread_ = std::thread([p = d.get(), cpu] { p->run(cpu); });
  return d;
}

SoftDevice::SoftDevice(std::uint32_t entries, bool irq, dma::HostMemory memory, Fd irq_fd) noexcept
    : entries_(entries),
      irq_(irq),
      memory_(std::move(memory)),
      sq_(static_cast<SoftSqe*>(memory_.data())),
      cq_(reinterpret_cast<SoftCqe*>(static_cast<std::uint8_t*>(memory_.data()) + entries * sizeof(SoftSqe))),
      irq_fd_(std::move(irq_fd)) {
  std::memset(memory_.data(), 0, memory_.size());
}

SoftDevice::~SoftDevice() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) {
    thread_.join();
  }
}

// The hardware: take what the driver rang in, complete each entry in order, interrupt once.
void SoftDevice::run(int cpu) noexcept {
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<unsigned>(cpu), &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  }
  const std::uint32_t mask = entries_ - 1;
  std::uint32_t head = 0;  // next submission entry to consume
  std::uint32_t cq_tail = 0;
  std::uint16_t phase = 1;
  while (!stop_.load(std::memory_order_relaxed)) {
    const std::uint32_t tail = sq_tail_.load(std::memory_order_acquire);
    if (head == tail) {
      cpu_relax();
      continue;
    }
    for (; head != tail; head = (head + 1) & mask) {
      SoftCqe& c = cq_[cq_tail];
      c.cookie = sq_[head].cookie;
      c.status = 0;
      c.sq_head = static_cast<std::uint16_t>((head + 1) & mask);
      std::atomic_ref<std::uint16_t>(c.phase).store(phase, std::memory_order_release);
      if (++cq_tail == entries_) {
        cq_tail = 0;
        phase ^= 1U;
      }
    }
    if (irq_) {
      raise_interrupt();
    }
  }
}

// As an MSI-X vector: masked, the interrupt is only marked pending. The CAS makes "still
// masked, so mark it pending" one step, so an unmask in between is never missed: either the
// unmask's exchange sees the pending bit, or this loop sees the vector unmasked and signals.
void SoftDevice::raise_interrupt() noexcept {
  std::uint32_t s = vector_.load(std::memory_order_acquire);
  while ((s & kMasked) != 0) {
    if (vector_.compare_exchange_weak(s, s | kPending, std::memory_order_acq_rel)) {
      return;
    }
  }
  signal();
}

void SoftDevice::signal() noexcept {
  const std::uint64_t one = 1;
  if (::write(irq_fd_.get(), &one, sizeof(one)) == sizeof(one)) {
    irqs_.fetch_add(1, std::memory_order_relaxed);
  }
}

void SoftDevice::set_masked(bool masked) noexcept {
  if (masked) {
    vector_.fetch_or(kMasked, std::memory_order_acq_rel);
  } else if ((vector_.exchange(0, std::memory_order_acq_rel) & kPending) != 0) {
    signal();  // the interrupt held back while masked
  }
}

LoopbackQueue::LoopbackQueue(SoftDevice& device, std::size_t submission_capacity)
    : engine::QueuePair(submission_capacity), dev_(&device), mask_(device.entries() - 1) {}

LoopbackQueue::~LoopbackQueue() {
  if (worker() != nullptr) {
    static_cast<void>(detach());
  }
}

void LoopbackQueue::mask_interrupt(bool masked) noexcept { dev_->set_masked(masked); }

std::size_t LoopbackQueue::submit_to_device(std::span<engine::Request*> reqs) noexcept {
  std::size_t n = 0;
  // One entry stays free, as on NVMe, so a full ring differs from an empty one.
  while (n < reqs.size() && in_flight_ < mask_) {
    SoftSqe& e = dev_->sq()[sq_tail_];
    e.cookie = reinterpret_cast<std::uintptr_t>(reqs[n]);
    sq_tail_ = (sq_tail_ + 1) & mask_;
    ++in_flight_;
    ++n;
  }
  if (n != 0) {
    dev_->ring_sq(sq_tail_);
    doorbells_.store(doorbells_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  return n;
}

std::size_t LoopbackQueue::reap_completions() noexcept {
  std::size_t n = 0;
  for (;;) {
    SoftCqe& c = dev_->cq()[cq_head_];
    if (std::atomic_ref<std::uint16_t>(c.phase).load(std::memory_order_acquire) != phase_) {
      break;
    }
    auto* req = reinterpret_cast<engine::Request*>(static_cast<std::uintptr_t>(c.cookie));
    if (++cq_head_ == dev_->entries()) {
      cq_head_ = 0;
      phase_ ^= 1U;
    }
    --in_flight_;
    ++n;
    req->on_complete(req, static_cast<int>(c.status));
  }
  if (n != 0) {
    dev_->ring_cq(cq_head_);
    doorbells_.store(doorbells_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  return n;
}

}  // namespace vfe::bench
