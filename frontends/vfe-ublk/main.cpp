// vfe-ublk: serves one namespace of an NVMe controller (bound to vfio-pci, driven by this
// library's driver) as a Linux block device, /dev/ublkbN, until SIGINT or SIGTERM. Each ublk
// queue runs on an engine worker next to the NVMe queue it feeds: the ublk commands and the
// controller's interrupts arrive on the same io_uring.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dma/dma_pool.hpp"
#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/io_queue.hpp"
#include "engine/topology.hpp"
#include "engine/worker.hpp"
#include "frontends/ublk/device.hpp"
#include "frontends/vfe-ublk/nvme_target.hpp"
#include "vfio/bdf.hpp"

namespace vfe {
namespace {

constexpr std::uint32_t kMaxIoBytes = 256 * 1024;  // per tag; capped by the controller's MDTS

struct Options {
  std::string bdf;
  std::uint32_t nsid = 1;
  unsigned queues = 1;
  unsigned depth = 64;
  std::string completion = "adaptive";
  int id = -1;
  bool recovery = false;
  unsigned io_timeout_ms = 30'000;
  bool queues_given = false;  // on the command line (else a device taken over decides)
  bool depth_given = false;
};

// Everything vfe-ublk runs, in teardown order reversed: the ublk device goes first (it stops
// taking requests and waits for those under way), then the NVMe queues (which complete what
// they still hold into the targets' requests), the targets (their DMA buffers go back to the
// pool), the workers, the DMA pool, and the controller last (its shutdown commits the cache).
struct Server {
  std::unique_ptr<nvme::Controller> ctrl;
  std::unique_ptr<dma::DmaPool> pool;
  std::vector<std::unique_ptr<engine::Worker>> workers;
  std::vector<std::unique_ptr<ublk_tool::NvmeTarget>> targets;
  std::vector<std::unique_ptr<nvme::IoQueue>> queues;
  std::unique_ptr<ublk::Device> device;
};

Result<std::vector<int>> cpus_near(const std::string& bdf, int& node) {
  VFE_TRY_ASSIGN(const auto topo, engine::Topology::create());
  VFE_TRY_ASSIGN(const auto addr, vfio::Bdf::parse(bdf));
  node = topo.device_node(addr);
  std::vector<int> cpus = topo.cpus_near_node(node);
  return cpus.empty() ? std::vector<int>{0} : cpus;
}

Result<ublk::BlockGeometry> geometry_of(const nvme::Controller& c, const Options& o) {
  const nvme::NamespaceInfo* ns = c.find_namespace(o.nsid);
  if (ns == nullptr) {
    std::string ids;
    for (const auto& n : c.namespaces()) {
      ids += fmt::format(" {}", n.nsid);
    }
    return Error::from_errno(ENOENT, "vfe-ublk", fmt::format("namespace {} is not active on {} (active:{})", o.nsid,
                                                             o.bdf, ids.empty() ? " none" : ids));
  }
  if (ns->metadata_bytes != 0) {
    return Error::not_supported("vfe-ublk", fmt::format("namespace {} is formatted with metadata", o.nsid));
  }
  ublk::BlockGeometry g;
  g.block_size = ns->block_size;
  g.blocks = ns->size_blocks;
  const auto cap = static_cast<std::uint32_t>(std::min<std::uint64_t>(kMaxIoBytes, c.max_transfer_bytes()));
  g.max_io_bytes = cap / 4096 * 4096;
  g.volatile_cache = c.identity().has_volatile_write_cache();
  g.write_zeroes = c.identity().supports_write_zeroes();
  g.discard = c.identity().supports_dataset_management();
  if (const auto& limits = c.nvm_limits(); limits && g.discard) {  // NVMe 2.0; older ones may not say
    // One range a request: the lesser of the range size limit and the command's size limit, each
    // in logical blocks, 0 where not said.
    std::uint64_t blocks = limits->dmrsl;
    if (limits->dmsl != 0) {
      blocks = blocks == 0 ? limits->dmsl : std::min(blocks, limits->dmsl);
    }
    g.max_discard_bytes = std::min<std::uint64_t>(blocks, ~0ULL / ns->block_size) * ns->block_size;  // 0: no limit said
  }
  return g;
}

Result<void> add_queue(Server& s, const Options& o, engine::CompletionMode mode, int cpu, int node,
                       const ublk::BlockGeometry& g) {
  engine::WorkerOptions wo;
  wo.mode = engine::worker_mode_for(mode);
  wo.cpus = {cpu};
  wo.name = fmt::format("vfe-ublk{}", s.workers.size());
  VFE_TRY_ASSIGN(auto worker, engine::Worker::start(wo));
  s.workers.push_back(std::move(worker));
  auto queue = s.ctrl->create_io_queue(*s.workers.back(),
                                       {.entries = o.depth + 1, .completion = mode, .numa_node = node});
  if (!queue) {
    const Error& e = queue.error();
    return Error{e.code, "vfe-ublk", fmt::format("--depth {} (an NVMe queue of {} entries): {}", o.depth, o.depth + 1,
                                                 e.message())};
  }
  s.queues.push_back(std::move(*queue));
  VFE_TRY_ASSIGN(auto target, ublk_tool::NvmeTarget::create(*s.queues.back(), *s.ctrl->find_namespace(o.nsid),
                                                            static_cast<std::uint16_t>(o.depth), g.max_io_bytes,
                                                            *s.pool));
  s.targets.push_back(std::move(target));
  return ok();
}

// --recovery --id N where device N exists: this server takes it over, with its queue count and
// depth (those given must match).
Result<std::optional<ublk::abi::DevInfo>> held_device(Options& o) {
  if (!o.recovery || o.id < 0) {
    return std::optional<ublk::abi::DevInfo>{};
  }
  VFE_TRY_ASSIGN(auto held, ublk::Device::find(static_cast<std::uint32_t>(o.id)));
  if (!held) {
    return held;
  }
  VFE_TRY(ublk::Device::check_takeover(*held));  // refused before the controller is taken
  if ((o.queues_given && o.queues != held->nr_hw_queues) || (o.depth_given && o.depth != held->queue_depth)) {
    return Error::invalid("vfe-ublk", fmt::format("ublk device {} has {} queue(s) of depth {}: to take it over, give "
                                                  "those or leave --queues and --depth out",
                                                  o.id, held->nr_hw_queues, held->queue_depth));
  }
  o.queues = held->nr_hw_queues;
  o.depth = held->queue_depth;
  return held;
}

Result<std::unique_ptr<ublk::Device>> make_device(const Options& o, bool held, const ublk::BlockGeometry& g,
                                                  const std::vector<ublk::QueueSpec>& specs) {
  if (held) {
    return ublk::Device::recover(static_cast<std::uint32_t>(o.id), static_cast<std::uint16_t>(o.depth), g, specs);
  }
  auto dev = ublk::Device::create({.id = o.id, .depth = static_cast<std::uint16_t>(o.depth), .recovery = o.recovery},
                                  g, specs);
  if (!dev && dev.error().is(EEXIST)) {
    return Error::from_errno(EEXIST, "vfe-ublk",
                             fmt::format("ublk device {} exists already. If its server is gone, `vfe-ublk --remove {}` "
                                         "removes it{}", o.id, o.id, o.recovery ? "" : ", or `--recovery` takes it "
                                                                                     "over if it was made with that"));
  }
  return dev;
}

Result<void> serve(Server& s, Options o) {
  const auto mode = engine::parse_completion_mode(o.completion);
  if (!mode) {
    return Error::invalid("vfe-ublk", fmt::format("--completion {}: use poll, irq or adaptive", o.completion));
  }
  // No ublk in this kernel, or not root: said before the controller is taken.
  VFE_TRY(ublk::Control::open());
  VFE_TRY_ASSIGN(const auto held, held_device(o));
  int node = -1;
  VFE_TRY_ASSIGN(const auto cpus, cpus_near(o.bdf, node));
  nvme::ControllerOptions copts;
  copts.io_queues = o.queues;
  copts.io_timeout = std::chrono::milliseconds(o.io_timeout_ms);
  VFE_TRY_ASSIGN(s.ctrl, nvme::Controller::create(o.bdf, copts));
  VFE_TRY_ASSIGN(const ublk::BlockGeometry g, geometry_of(*s.ctrl, o));
  VFE_TRY_ASSIGN(s.pool, dma::DmaPool::create(s.ctrl->dma_space(), 2 << 20, {.hugepages = true, .numa_node = node}));
  std::vector<ublk::QueueSpec> specs;
  for (unsigned q = 0; q < o.queues; ++q) {
    VFE_TRY(add_queue(s, o, *mode, cpus[q % cpus.size()], node, g));
    specs.push_back({s.workers.back().get(), s.targets.back().get()});
  }
  VFE_TRY_ASSIGN(s.device, make_device(o, held.has_value(), g, specs));
  VFE_TRY(s.device->start());
  if (held) {
    fmt::print(stderr, "vfe-ublk: took over {} from process {}\n", s.device->block_path(), held->ublksrv_pid);
  }
  fmt::print("{}\n", s.device->block_path());
  std::fflush(stdout);
  return ok();
}

// The serving options (all but --remove); returns BDF's option, for the checks after parsing.
CLI::Option* add_options(CLI::App& app, Options& o) {
  auto* bdf = app.add_option("BDF", o.bdf, "PCI address of the NVMe controller");
  app.add_option("--nsid", o.nsid, "namespace to serve")->capture_default_str()->check(CLI::Range(1U, 0xfffffffeU));
  auto* queues = app.add_option("--queues", o.queues, "ublk queues, each on a worker with an NVMe queue of its own")
      ->capture_default_str()->check(CLI::Range(1, 64));
  auto* depth = app.add_option("--depth", o.depth, "requests in flight per queue")
                    ->capture_default_str()->check(CLI::Range(1, 4095));
  app.add_option("--completion", o.completion, "poll, irq or adaptive")->capture_default_str();
  app.add_option("--id", o.id, "N of /dev/ublkbN (default: the kernel picks)")->check(CLI::Range(0, (1 << 20) - 1));
  app.add_option("--io-timeout", o.io_timeout_ms,
                 "ms an NVMe command may take before it is aborted, then the controller reset (the\n"
                 "block device waits through that; its requests go again)")
      ->capture_default_str()->check(CLI::Range(100U, 3'600'000U));
  app.add_flag("--recovery", o.recovery,
               "if this process dies, the device waits (I/O held) for a new vfe-ublk --recovery --id N,\n"
               "which takes it over; with --id N of such a device, take it over");
  app.callback([&o, queues, depth] {
    o.queues_given = queues->count() != 0;
    o.depth_given = depth->count() != 0;
  });
  return bdf;
}

// --remove N. SIGINT is not blocked here: DEL_DEV waits while something holds the device.
int remove_device(std::uint32_t id) {
  if (auto r = ublk::Device::remove_abandoned(id); !r) {
    fmt::print(stderr, "vfe-ublk: {}\n", r.error().message());
    return 1;
  }
  fmt::print(stderr, "vfe-ublk: removed ublk device {}\n", id);
  return 0;
}

int serve_until_signal(const Options& o) {
  // Blocked before any thread starts, so every thread inherits the mask and sigwait gets them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  Server s;
  if (auto r = serve(s, o); !r) {
    fmt::print(stderr, "vfe-ublk: {}\n", r.error().message());
    if (s.device && !s.device->owned()) {
      // A takeover that failed with its commands fetched: exiting hands them back to the
      // kernel, and the device waits for the next server with its I/O held.
      std::_Exit(1);
    }
    return 1;
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  fmt::print(stderr, "vfe-ublk: {}: removing {} after {} request(s); controller resets: {}\n", strsignal(sig),
             s.device->block_path(), s.device->served(), s.ctrl->stats().resets.load());
  if (auto r = s.device->stop(); !r) {
    // The kernel still holds commands naming this process's memory: no orderly teardown is
    // possible. Exiting closes the rings, and the kernel then fails what is left.
    fmt::print(stderr, "vfe-ublk: {}\n", r.error().message());
    std::_Exit(1);
  }
  return 0;
}

}  // namespace
}  // namespace vfe

int main(int argc, char** argv) {
  using namespace vfe;
  Options o;
  int remove = -1;
  CLI::App app{"Serves an NVMe namespace (the controller bound to vfio-pci) as the Linux block device\n"
               "/dev/ublkbN until SIGINT or SIGTERM, then removes it. Needs root and a kernel with ublk."};
  auto* bdf = add_options(app, o);
  app.add_option("--remove", remove, "remove ublk device N whose server is gone (its held I/O fails), then exit")
      ->check(CLI::Range(0, (1 << 20) - 1))->excludes(bdf);
  CLI11_PARSE(app, argc, argv);
  if (remove < 0 && bdf->count() == 0) {
    fmt::print(stderr, "vfe-ublk: BDF is required (or --remove N); see --help\n");
    return 1;
  }
  if (::geteuid() != 0) {
    fmt::print(stderr, "vfe-ublk: needs root (ublk control commands need CAP_SYS_ADMIN)\n");
    return 1;
  }
  return remove >= 0 ? remove_device(static_cast<std::uint32_t>(remove)) : serve_until_signal(o);
}
