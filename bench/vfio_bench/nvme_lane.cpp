#include "bench/vfio_bench/nvme_lane.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "bench/vfio_bench/jobs.hpp"

namespace vfe::bench {
namespace {

// A counter only the worker writes: a plain load and store, no read-modify-write.
void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

void release_task(void* lane) { static_cast<Lane*>(lane)->release_held(); }

}  // namespace

void Lane::aim(BenchIo& io) noexcept {
  Rng& rng = picker->rng();
  const bool read = read_percent == 100 || (read_percent != 0 && rng.below(100) < read_percent);
  io.opcode = read ? nvme::IoOpcode::read : nvme::IoOpcode::write;
  const std::uint64_t slots = blocks / bs_blocks;
  const std::uint64_t slot = random ? picker->next() : next_seq++ % slots;
  io.lba = first_block + slot * bs_blocks;
  io.blocks = bs_blocks;
  io.data = {&io.segment, 1};
  ++issued;
}

void Lane::park_failed(std::string why) noexcept {
  if (errors.load(std::memory_order_relaxed) == 0) {
    first_error = std::move(why);
  }
  bump(errors);
  parked.fetch_add(1, std::memory_order_release);
}

void Lane::send(BenchIo& io) noexcept {
  aim(io);
  io.started = now_ns();
  if (const int rc = queue->submit(io); rc != 0) {  // the ring holds 2 x qd: only a failure
    park_failed(first_failure() ? fmt::format("submit refused: {}", std::strerror(-rc)) : std::string());
  }
}

void Lane::start(BenchIo& io) noexcept {
  if (stop->load(std::memory_order_relaxed) || issued >= limit) {
    parked.fetch_add(1, std::memory_order_release);
    return;
  }
  if (rate && !rate->try_take(now_ns())) {
    held.push_back(&io);  // reserved for every request: no allocation
    return;
  }
  send(io);
}

void Lane::release_held() noexcept {
  release_posted.store(false, std::memory_order_relaxed);
  const std::uint64_t now = now_ns();
  std::size_t sent = 0;
  for (; sent < held.size(); ++sent) {
    if (stop->load(std::memory_order_relaxed) || issued >= limit) {
      parked.fetch_add(static_cast<unsigned>(held.size() - sent), std::memory_order_release);
      held.clear();
      return;
    }
    if (!rate->try_take(now)) {
      break;
    }
    send(*held[sent]);
  }
  held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(sent));  // oldest first
}

void Lane::post_release() noexcept {
  if (!release_posted.exchange(true, std::memory_order_relaxed) && !worker->try_post(release_task, this)) {
    release_posted.store(false, std::memory_order_relaxed);  // the task ring is full: next round
  }
}

void Lane::begin_measuring(std::uint64_t io_limit) noexcept {
  latency = Histogram{};
  done.store(0, std::memory_order_relaxed);
  bytes.store(0, std::memory_order_relaxed);
  issued = 0;
  limit = io_limit;
  measuring = true;
}

void on_bench_io_complete(engine::Request* r, int status) noexcept {
  auto& io = *static_cast<BenchIo*>(r);
  Lane& lane = *io.lane;
  if (lane.measuring) {
    lane.latency.record(now_ns() - io.started);
    bump(lane.done);
    if (status == 0) {
      bump(lane.bytes, io.segment.length);
    }
  }
  if (status != 0) {
    lane.park_failed(lane.first_failure()
                         ? fmt::format("{} at LBA {}: {} ({})", io.opcode == nvme::IoOpcode::read ? "read" : "write",
                                       io.lba, std::strerror(-status), nvme::to_string(io.status))
                         : std::string());
    return;
  }
  lane.start(io);
}

}  // namespace vfe::bench
