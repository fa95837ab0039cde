// nvme_poll: the example polling driver. It opens an NVMe controller through VFIO, identifies it,
// and runs a write-then-read-verify loop on one namespace with a polling I/O queue: every block
// written holds a pattern derived from its LBA and a seed, every block read back is compared with
// it, and a checksum over all data written must equal the checksum over all data read.
//
//   nvme_poll 0000:01:00.0 --lba 81920 --ios 4096 --depth 32 --blocks 8
//
// It overwrites the blocks it tests. Read it from top to bottom to see how a driver is built on
// vfio-engine: a Controller (the device, its BAR, DMA space and admin queue), a Worker (a thread
// with an io_uring that polls), an IoQueue on that worker, DMA buffers, and IoRequests.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/io_queue.hpp"
#include "engine/worker.hpp"
#include "vfio/iommu_mode.hpp"

namespace {

using namespace vfe;

struct Options {
  std::string bdf;
  std::string mode = "auto";
  std::uint32_t nsid = 1;
  std::uint64_t lba = 0;
  std::uint64_t ios = 1024;
  std::uint32_t depth = 32;
  std::uint32_t blocks = 8;
  std::uint64_t seed = 1;
};

// The pattern: one 64-bit word per 8 bytes, a function of the seed, the LBA and the position in
// the block (splitmix64's mixer), so a block read from the wrong place cannot pass.
std::uint64_t pattern(std::uint64_t seed, std::uint64_t lba, std::uint64_t word) {
  std::uint64_t z = seed * 0x9e3779b97f4a7c15ULL ^ (lba << 16) ^ word;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// One slot of the loop: a request and the piece of the DMA buffer it reads into or writes from.
// The worker thread completes it; the main thread waits on `done` and reuses the slot.
struct Slot : nvme::IoRequest {
  nvme::DataSegment segment;
  std::uint64_t* words = nullptr;
  std::atomic<bool> busy{false};  // with the controller: only the worker touches it
  int result = 0;                 // the completion's status, set by the worker
  bool unchecked = false;         // main thread: completed but not yet looked at
  std::uint64_t first_lba = 0;
};

// Runs on the worker when the controller posted the request's completion.
void on_complete(engine::Request* req, int status) noexcept {
  auto* slot = static_cast<Slot*>(req);
  slot->result = status;
  slot->busy.store(false, std::memory_order_release);  // hands the buffer back to the main thread
}

struct PassResult {
  std::uint64_t checksum = 0;
  std::uint64_t mismatches = 0;
  int error = 0;
  double seconds = 0;
};

// Writes (or reads and checks) `opt.ios` requests of `opt.blocks` blocks each, keeping up to
// `opt.depth` in flight. I/O number k goes to LBA opt.lba + k * opt.blocks.
PassResult run_pass(nvme::IoQueue& queue, std::vector<std::unique_ptr<Slot>>& slots, const Options& opt,
                    std::uint32_t block_size, nvme::IoOpcode op) {
  PassResult r;
  const std::uint64_t words_per_block = block_size / 8;
  const auto begin = std::chrono::steady_clock::now();
  // After a read completes, check its data and fold it into the checksum.
  auto finish = [&](std::size_t s) {
    Slot& slot = *slots[s];
    if (slot.result != 0 && r.error == 0) {
      r.error = slot.result;
      fmt::print(stderr, "nvme_poll: {} at LBA {} failed: {} ({})\n", op == nvme::IoOpcode::read ? "read" : "write",
                 slot.first_lba, std::strerror(-slot.result), nvme::to_string(slot.status));
    }
    if (op != nvme::IoOpcode::read) {
      return;
    }
    for (std::uint64_t i = 0; i < opt.blocks * words_per_block; ++i) {
      const std::uint64_t lba = slot.first_lba + i / words_per_block;
      r.mismatches += slot.words[i] != pattern(opt.seed, lba, i % words_per_block) ? 1 : 0;
      r.checksum += slot.words[i];
    }
  };
  std::uint64_t next = 0;
  std::uint64_t done = 0;
  while (done < opt.ios) {
    for (std::size_t s = 0; s < slots.size(); ++s) {
      Slot& slot = *slots[s];
      if (slot.busy.load(std::memory_order_acquire)) {
        continue;  // still with the controller
      }
      if (slot.unchecked) {
        finish(s);  // completed since we last looked
        slot.unchecked = false;
        ++done;
      }
      if (next == opt.ios || r.error != 0) {
        continue;
      }
      // Prepare the next I/O in this slot: for a write, fill the buffer first.
      slot.first_lba = opt.lba + next * opt.blocks;
      if (op == nvme::IoOpcode::write) {
        for (std::uint64_t i = 0; i < opt.blocks * words_per_block; ++i) {
          slot.words[i] = pattern(opt.seed, slot.first_lba + i / words_per_block, i % words_per_block);
          r.checksum += slot.words[i];
        }
      }
      slot.opcode = op;
      slot.nsid = opt.nsid;
      slot.lba = slot.first_lba;
      slot.blocks = opt.blocks;
      slot.data = {&slot.segment, 1};
      slot.on_complete = on_complete;
      slot.busy.store(true, std::memory_order_relaxed);
      // submit() hands the request to the worker's ring; the worker writes the command and rings
      // the doorbell. -EAGAIN: the ring is full, try again on the next round.
      if (const int rc = queue.submit(slot); rc != 0) {
        slot.busy.store(false, std::memory_order_relaxed);
        if (rc != -EAGAIN) {
          fmt::print(stderr, "nvme_poll: submit refused: {}\n", std::strerror(-rc));
          r.error = rc;  // submit no more; the loop ends once those in flight are back
        }
        continue;
      }
      slot.unchecked = true;
      ++next;
    }
    if (r.error != 0 && next == done) {
      break;  // stop after a failure once nothing is in flight
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return r;
}

void print_rate(const char* what, const PassResult& r, const Options& opt, std::uint32_t block_size) {
  const double mib = static_cast<double>(opt.ios * opt.blocks * block_size) / (1 << 20);
  fmt::print("{:<6} {} I/Os of {} KiB in {:.3f} s: {:.0f} IOPS, {:.1f} MiB/s\n", what, opt.ios,
             opt.blocks * block_size / 1024.0, r.seconds, static_cast<double>(opt.ios) / r.seconds,
             mib / r.seconds);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Example polling NVMe driver on vfio-engine: identify a controller, then write a\n"
               "pattern to a range of blocks, read it back and verify it (data is overwritten).",
               "nvme_poll"};
  app.add_option("BDF", opt.bdf, "PCI address of the controller, bound to vfio-pci")->required();
  app.add_option("--lba", opt.lba, "first LBA to test (the blocks from here are overwritten)")->required();
  app.add_option("--ios", opt.ios, "I/Os per pass")->capture_default_str()->check(CLI::Range(1, 1 << 30));
  app.add_option("--blocks", opt.blocks, "blocks per I/O")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--depth", opt.depth, "I/Os in flight")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--nsid", opt.nsid, "namespace")->capture_default_str();
  app.add_option("--seed", opt.seed, "pattern seed")->capture_default_str();
  app.add_option("--mode", opt.mode, "IOMMU mode: type1, iommufd, noiommu or auto")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // 1. Open and bring up the controller: VFIO device, BAR0, DMA space, admin queue, identify.
  nvme::ControllerOptions copt;
  copt.io_queues = 1;
  if (opt.mode != "auto") {
    auto m = vfio::parse_iommu_mode(opt.mode);
    if (!m) {
      fmt::print(stderr, "nvme_poll: {}\n", m.error().message());
      return 2;
    }
    copt.mode = *m;
  }
  auto ctrl = nvme::Controller::create(opt.bdf, copt);
  if (!ctrl) {
    fmt::print(stderr, "nvme_poll: {}\n", ctrl.error().message());
    return 1;
  }
  nvme::Controller& c = **ctrl;
  const auto& id = c.identity();
  fmt::print("controller {}: {} (serial {}, firmware {}), NVMe {}.{}, {} I/O queue(s), max transfer {} KiB\n",
             opt.bdf, id.model, id.serial, id.firmware, c.version() >> 16, (c.version() >> 8) & 0xff,
             c.io_queue_limit(), c.max_transfer_bytes() / 1024);
  for (const auto& ns : c.namespaces()) {
    fmt::print("namespace {}: {} blocks of {} bytes ({} MiB)\n", ns.nsid, ns.size_blocks, ns.block_size,
               ns.size_bytes() >> 20);
  }
  const nvme::NamespaceInfo* ns = c.find_namespace(opt.nsid);
  if (ns == nullptr) {
    fmt::print(stderr, "nvme_poll: namespace {} is not active on {}\n", opt.nsid, opt.bdf);
    return 1;
  }
  if (opt.lba + opt.ios * opt.blocks > ns->size_blocks) {
    fmt::print(stderr, "nvme_poll: LBAs {}..{} reach past the namespace end ({} blocks); lower --lba or --ios\n",
               opt.lba, opt.lba + opt.ios * opt.blocks - 1, ns->size_blocks);
    return 2;
  }

  // 2. A worker thread in polling mode: it runs the queue, and every completion is handled on it.
  engine::WorkerOptions wopt;
  wopt.mode = engine::WorkerMode::polling;
  wopt.name = "nvme_poll";
  auto worker = engine::Worker::start(wopt);
  if (!worker) {
    fmt::print(stderr, "nvme_poll: {}\n", worker.error().message());
    return 1;
  }

  // 3. DMA memory: one buffer, one slice per slot, mapped for the controller through the IOMMU.
  const std::uint64_t io_bytes = std::uint64_t{opt.blocks} * ns->block_size;
  const std::uint64_t stride = (io_bytes + 4095) & ~std::uint64_t{4095};
  auto buffer = dma::DmaBuffer::allocate(c.dma_space(), stride * opt.depth);
  if (!buffer) {
    fmt::print(stderr, "nvme_poll: {}\n", buffer.error().message());
    return 1;
  }
  std::vector<std::unique_ptr<Slot>> slots;
  for (std::uint32_t s = 0; s < opt.depth; ++s) {
    auto slot = std::make_unique<Slot>();
    slot->segment = {buffer->iova_at(s * stride), io_bytes};
    slot->words = reinterpret_cast<std::uint64_t*>(buffer->as<std::uint8_t>() + s * stride);
    slots.push_back(std::move(slot));
  }

  // 4. An I/O queue pair on the worker that polls for completions. (Made after the buffer and
  //    the requests, so it is destroyed before them: nothing can complete into freed memory.)
  auto queue = c.create_io_queue(**worker, {.entries = opt.depth + 1, .completion = engine::CompletionMode::polling});
  if (!queue) {
    fmt::print(stderr, "nvme_poll: {}\n", queue.error().message());
    return 1;
  }

  // 5. Write, then read back and verify.
  fmt::print("testing LBAs {}..{}: {} I/Os of {} blocks, {} in flight, seed {}\n", opt.lba,
             opt.lba + opt.ios * opt.blocks - 1, opt.ios, opt.blocks, opt.depth, opt.seed);
  const PassResult w = run_pass(**queue, slots, opt, ns->block_size, nvme::IoOpcode::write);
  if (w.error != 0) {
    return 1;
  }
  print_rate("write", w, opt, ns->block_size);
  const PassResult r = run_pass(**queue, slots, opt, ns->block_size, nvme::IoOpcode::read);
  if (r.error != 0) {
    return 1;
  }
  print_rate("read", r, opt, ns->block_size);
  const bool good = r.mismatches == 0 && r.checksum == w.checksum;
  fmt::print("verify: {} words differ; checksum written {:016x}, read {:016x}: {}\n", r.mismatches,
             w.checksum, r.checksum, good ? "PASS" : "FAIL");
  return good ? 0 : 1;
}
