#include "bench/vfio_bench/nvme_lane.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <thread>
#include <utility>

#include "bench/vfio_bench/jobs.hpp"

namespace vfe::bench {
namespace {

// A counter only the worker writes: a plain load and store, no read-modify-write.
void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

void release_task(void* lane) { static_cast<Lane*>(lane)->release_held(); }

// --verify: back on the worker after the check.
void checked_task(void* io) {
  auto& r = *static_cast<BenchIo*>(io);
  r.lane->checked(r);
}

// On an arena thread: the check is done; hand the request back to its worker. A full task ring
// (1024 tasks; --qd may be deeper) empties as the worker runs; the worker does not stop while a
// check is out, since it stops only once every request is parked, and a request being checked
// is not.
void on_checked(void* ctx, std::uint64_t bad_lba) noexcept {
  auto& io = *static_cast<BenchIo*>(ctx);
  io.bad_lba = bad_lba;
  while (!io.lane->worker->try_post(checked_task, &io)) {
    std::this_thread::yield();
  }
}

const char* op_name(nvme::IoOpcode op) noexcept {
  switch (op) {
    case nvme::IoOpcode::read: return "read";
    case nvme::IoOpcode::write: return "write";
    case nvme::IoOpcode::dataset_management: return "trim";
    case nvme::IoOpcode::write_zeroes: return "write zeroes";
    case nvme::IoOpcode::flush: return "flush";
    case nvme::IoOpcode::compare: break;
  }
  return "compare";
}

}  // namespace

void Lane::aim(BenchIo& io) noexcept {
  const std::uint64_t slots = blocks / bs_blocks;
  const std::uint64_t slot = random ? picker->next() : next_seq++ % slots;
  io.lba = first_block + slot * bs_blocks;
  io.blocks = bs_blocks;
  io.bytes = io.segment.length;
  switch (op) {
    case LaneOp::read_write: {
      Rng& rng = picker->rng();
      const bool read = read_percent == 100 || (read_percent != 0 && rng.below(100) < read_percent);
      io.opcode = read ? nvme::IoOpcode::read : nvme::IoOpcode::write;
      io.data = {&io.segment, 1};
      if (!read && verifier != nullptr) {
        fill_pattern({io.host, io.segment.length}, io.lba, block_size, verify_seed);
      }
      break;
    }
    case LaneOp::trim:  // one range of --bs (Dataset Management, Attribute Deallocate)
      *io.range = {.attributes = 0, .blocks = static_cast<std::uint32_t>(bs_blocks), .lba = io.lba};
      io.opcode = nvme::IoOpcode::dataset_management;
      io.blocks = 0;
      io.data = {&io.range_segment, 1};
      break;
    case LaneOp::write_zeroes:
      io.opcode = nvme::IoOpcode::write_zeroes;
      io.data = {};
      break;
    case LaneOp::flush:
      io.opcode = nvme::IoOpcode::flush;
      io.lba = 0;
      io.blocks = 0;
      io.bytes = 0;
      io.data = {};
      break;
  }
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
    holding.store(true, std::memory_order_relaxed);
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
      holding.store(false, std::memory_order_relaxed);
      return;
    }
    if (!rate->try_take(now)) {
      break;
    }
    send(*held[sent]);
  }
  held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(sent));  // oldest first
  holding.store(!held.empty(), std::memory_order_relaxed);
}

void Lane::post_release() noexcept {
  if (!release_posted.exchange(true, std::memory_order_relaxed) && !worker->try_post(release_task, this)) {
    release_posted.store(false, std::memory_order_relaxed);  // the task ring is full: next round
  }
}

void Lane::checked(BenchIo& io) noexcept {
  if (io.bad_lba != kNoMismatch) {
    mismatches.fetch_add(1, std::memory_order_relaxed);
    if (bad_lbas.size() < kBadLbasKept) {
      bad_lbas.push_back(io.bad_lba);
    }
    if (first_failure()) {
      first_error = fmt::format("verify: LBA {} differs from the pattern of --seed {} (read of {} blocks from LBA {})",
                                io.bad_lba, verify_seed, io.blocks, io.lba);
    }
    bump(errors);
  }
  start(io);
}

void Lane::begin_measuring(std::uint64_t io_limit) noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  cpu0 = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  irq_events0 = worker->stats().irq_events.load(std::memory_order_relaxed);
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
      bump(lane.bytes, io.bytes);
    }
  }
  if (status == 0 && lane.verifier != nullptr && io.opcode == nvme::IoOpcode::read) {
    lane.verifier->check({io.host, io.segment.length, io.lba, lane.block_size, lane.verify_seed, on_checked, &io});
    return;  // checked() goes on with it
  }
  if (status != 0) {
    lane.park_failed(lane.first_failure() ? fmt::format("{} at LBA {}: {} ({})", op_name(io.opcode), io.lba,
                                                        std::strerror(-status), nvme::to_string(io.status))
                                          : std::string());
    return;
  }
  lane.start(io);
}

}  // namespace vfe::bench
