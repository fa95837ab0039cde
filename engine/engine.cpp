#include "engine/engine.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "base/fd.hpp"
#include "base/log.hpp"

namespace vfe::engine {

Result<std::unique_ptr<Engine>> Engine::create(EngineOptions options) {
  VFE_TRY_ASSIGN(Topology topo, Topology::create());
  return std::make_unique<Engine>(std::move(options), std::move(topo));
}

Result<Worker*> Engine::worker_for_node(int node) {
  const std::vector<int> nodes = topology_.numa_nodes();
  if (node < 0) {
    node = nodes.empty() ? 0 : nodes.front();
  }
  const std::lock_guard lock(mu_);
  if (auto it = workers_.find(node); it != workers_.end()) {
    return it->second.get();
  }
  WorkerOptions w;
  w.mode = options_.mode;
  w.idle_before_sleep = options_.idle_before_sleep;
  w.name = fmt::format("vfe-node{}", node);
  w.cpus = options_.cpus;
  if (w.cpus.empty()) {
    w.cpus = topology_.cpus_near_node(node);  // a memory-only node: the nearest node with CPUs
    if (w.cpus.empty()) {
      return Error::invalid("start worker", fmt::format("NUMA node {} has no CPUs and no node "
                                                        "with CPUs is known near it",
                                                        node));
    }
  }
  VFE_TRY_ASSIGN(auto worker, Worker::start(std::move(w)));
  Worker* raw = worker.get();
  workers_.emplace(node, std::move(worker));
  return raw;
}

Result<Worker*> Engine::worker_for_device(const vfio::Bdf& bdf) {
  const int node = topology_.device_node(bdf);
  VFE_TRY_ASSIGN(Worker* worker, worker_for_node(node));
  if (options_.steer_irqs) {
    auto steered = steer_device_irqs(bdf, worker->options().cpus);
    if (steered) {
      log_info("{}: {} interrupt lines steered to CPUs {}", bdf.to_string(), *steered,
               fmt::join(worker->options().cpus, ","));
    } else {
      log_warn("{}: interrupt steering failed: {}", bdf.to_string(), steered.error().message());
    }
  }
  return worker;
}

int Engine::node_of(const Worker& worker) const {
  const std::lock_guard lock(mu_);
  for (const auto& [node, w] : workers_) {
    if (w.get() == &worker) {
      return node;
    }
  }
  return -1;
}

Result<std::size_t> steer_device_irqs(const vfio::Bdf& bdf, std::span<const int> cpus) {
  std::ifstream interrupts("/proc/interrupts");
  if (!interrupts) {
    return Error::from_errno(errno, "open", "/proc/interrupts");
  }
  const std::string tag = fmt::format("({})", bdf.to_string());  // fmt: g++ 12 -O3 misreads "(" + s + ")" (-Wrestrict)
  const std::string list = fmt::format("{}", fmt::join(cpus, ","));
  std::size_t steered = 0;
  for (std::string line; std::getline(interrupts, line);) {
    if (line.find("vfio-") == std::string::npos || line.find(tag) == std::string::npos) {
      continue;
    }
    std::istringstream fields(line);
    unsigned irq = 0;
    if (!(fields >> irq)) {
      continue;
    }
    const std::string path = fmt::format("/proc/irq/{}/smp_affinity_list", irq);
    const Fd affinity(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!affinity && (errno == EACCES || errno == EPERM)) {  // the same for every line
      return Error::from_errno(errno, "steer interrupts",
                               fmt::format("{}: only root may move interrupt lines; run as root, "
                                           "or leave steer_irqs off",
                                           path));
    }
    if (!affinity ||
        ::write(affinity.get(), list.data(), list.size()) != static_cast<ssize_t>(list.size())) {
      log_warn("irq {} of {} could not be moved to CPUs {}: {}", irq, bdf.to_string(), list,
               std::strerror(errno));
      continue;
    }
    ++steered;
  }
  return steered;
}

}  // namespace vfe::engine
