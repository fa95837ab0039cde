#include "engine/topology.hpp"

#include <fmt/format.h>
#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <limits>
#include <tuple>
#include <utility>

#include "vfio/sysfs.hpp"

namespace vfe::engine {
namespace {

constexpr std::uint64_t kUnknownLatency = std::numeric_limits<std::uint64_t>::max();
constexpr std::string_view kXmlRemedy =
    "; give it an hwloc XML topology, as `lstopo topology.xml` writes one";

struct BitmapFree {
  void operator()(hwloc_bitmap_s* bitmap) const noexcept { hwloc_bitmap_free(bitmap); }
};
using Bitmap = std::unique_ptr<hwloc_bitmap_s, BitmapFree>;

// "0-3,8,10-11": a sorted list the way Linux prints CPU lists, short even on big machines.
std::string format_list(std::span<const int> values) {
  std::string out;
  for (std::size_t i = 0; i < values.size();) {
    std::size_t j = i;
    while (j + 1 < values.size() && values[j + 1] == values[j] + 1) {
      ++j;
    }
    out += fmt::format("{}{}", out.empty() ? "" : ",", values[i]);
    if (j > i) {
      out += fmt::format("-{}", values[j]);
    }
    i = j + 1;
  }
  return out.empty() ? "none" : out;
}

// An object's OS index as an int; objects hwloc could not number (HWLOC_UNKNOWN_INDEX) give -1.
int os_index(const hwloc_obj* obj) {
  return obj->os_index == HWLOC_UNKNOWN_INDEX || obj->os_index > INT_MAX
             ? -1
             : static_cast<int>(obj->os_index);
}

// The lowest-numbered NUMA node among the memory children of `obj`, looking through memory-side
// caches (hwloc puts a MemCache between an object and the node it caches), or -1.
int lowest_attached_node(const hwloc_obj* obj) {
  int best = -1;
  for (const hwloc_obj* child = obj->memory_first_child; child != nullptr;
       child = child->next_sibling) {
    const int node = child->type == HWLOC_OBJ_NUMANODE ? os_index(child)
                                                       : lowest_attached_node(child);
    if (node >= 0 && (best < 0 || node < best)) {
      best = node;
    }
  }
  return best;
}

// A CPU's own node: the first object on the way up from it that has nodes attached holds the
// node(s) nearest to it.
int nearest_node(const hwloc_obj* pu) {
  for (const hwloc_obj* obj = pu; obj != nullptr; obj = obj->parent) {
    if (const int node = lowest_attached_node(obj); node >= 0) {
      return node;
    }
  }
  return -1;
}

Result<hwloc_topology*> init_topology() {
  hwloc_topology* topology = nullptr;
  if (hwloc_topology_init(&topology) != 0) {
    return Error::from_errno(errno, "hwloc_topology_init", "cannot allocate an hwloc topology");
  }
  return topology;
}

}  // namespace

void Topology::Destroy::operator()(hwloc_topology* topology) const noexcept {
  hwloc_topology_destroy(topology);
}

Topology::Topology(Handle topology) noexcept : topology_(std::move(topology)) {}

Result<Topology> Topology::create() {
  VFE_TRY_ASSIGN(hwloc_topology* raw, init_topology());
  Handle topology(raw);
  // Linux's own component finds the PCI functions in sysfs. The "pci" plugin (libpciaccess)
  // would find the same ones and leaves allocations behind at each load; the OpenCL and GL
  // plugins look for GPUs, which the engine has no use for, and start vendor runtimes to do it.
  // Best effort: a distribution without one of these plugins has nothing to leave out.
  for (const char* plugin : {"pci", "opencl", "gl"}) {
    (void)hwloc_topology_set_components(raw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, plugin);
  }
  return load(std::move(topology), "this machine");
}

Result<Topology> Topology::from_synthetic(std::string_view description) {
  VFE_TRY_ASSIGN(hwloc_topology* raw, init_topology());
  Handle topology(raw);
  const std::string text(description);  // hwloc wants a NUL-terminated string
  if (hwloc_topology_set_synthetic(raw, text.c_str()) != 0) {
    return Error::from_errno(errno != 0 ? errno : EINVAL, "hwloc_topology_set_synthetic",
                             fmt::format("cannot parse the synthetic description \"{}\"; it "
                                         "lists levels such as \"pack:2 numa:1 core:2 pu:1\"",
                                         text));
  }
  return load(std::move(topology), fmt::format("synthetic description \"{}\"", text));
}

Result<Topology> Topology::from_xml_file(const std::string& path) {
  VFE_TRY_ASSIGN(hwloc_topology* raw, init_topology());
  Handle topology(raw);
  if (hwloc_topology_set_xml(raw, path.c_str()) != 0) {
    return Error::from_errno(errno != 0 ? errno : EINVAL, "hwloc_topology_set_xml",
                             fmt::format("cannot read an hwloc XML topology from {}", path));
  }
  return load(std::move(topology), fmt::format("XML file {}", path), kXmlRemedy);
}

Result<Topology> Topology::from_xml(std::string_view xml) {
  if (xml.size() >= INT_MAX) {
    return Error::invalid("hwloc_topology_set_xmlbuffer",
                          fmt::format("an XML topology of {} bytes is too large", xml.size()));
  }
  VFE_TRY_ASSIGN(hwloc_topology* raw, init_topology());
  Handle topology(raw);
  // hwloc parses a NUL-terminated buffer and takes its size with the NUL, as its export gives it.
  const std::string text(xml);
  if (hwloc_topology_set_xmlbuffer(raw, text.c_str(), static_cast<int>(text.size()) + 1) != 0) {
    return Error::from_errno(errno != 0 ? errno : EINVAL, "hwloc_topology_set_xmlbuffer",
                             fmt::format("cannot parse the XML topology text{}", kXmlRemedy));
  }
  return load(std::move(topology), "XML text", kXmlRemedy);
}

Result<Topology> Topology::load(Handle topology, const std::string& source,
                                std::string_view remedy) {
  hwloc_topology* raw = topology.get();
  // PCI functions are I/O objects, which hwloc leaves out unless asked; "important" keeps the
  // bridges leading to them and drops the rest (USB hosts, SMBus, ...).
  if (hwloc_topology_set_io_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT) != 0) {
    return Error::from_errno(
        errno, "hwloc_topology_set_io_types_filter",
        fmt::format("cannot ask for PCI devices in the topology of {}", source));
  }
  if (hwloc_topology_load(raw) != 0) {
    return Error::from_errno(errno != 0 ? errno : EINVAL, "hwloc_topology_load",
                             fmt::format("cannot load the topology of {}{}", source, remedy));
  }
  Topology result(std::move(topology));
  result.this_system_ = hwloc_topology_is_thissystem(raw) != 0;
  result.compute_cpus_and_nodes();
  result.compute_latencies();
  if (result.nodes_.empty() || result.cpus_.empty()) {
    return Error::invalid("hwloc_topology_load",
                          fmt::format("the topology of {} has {} NUMA nodes and {} CPUs; it needs "
                                      "at least one of each",
                                      source, result.nodes_.size(), result.cpus_.size()));
  }
  return result;
}

void Topology::compute_cpus_and_nodes() {
  hwloc_topology* raw = topology_.get();
  for (hwloc_obj_t node = nullptr;
       (node = hwloc_get_next_obj_by_type(raw, HWLOC_OBJ_NUMANODE, node)) != nullptr;) {
    if (os_index(node) >= 0) {
      nodes_.push_back(os_index(node));
    }
  }
  std::sort(nodes_.begin(), nodes_.end());

  std::vector<std::pair<int, int>> cpu_node;
  for (hwloc_obj_t pu = nullptr;
       (pu = hwloc_get_next_obj_by_type(raw, HWLOC_OBJ_PU, pu)) != nullptr;) {
    if (os_index(pu) >= 0) {
      cpu_node.emplace_back(os_index(pu), nearest_node(pu));
    }
  }
  std::sort(cpu_node.begin(), cpu_node.end());
  for (const auto& [cpu, node] : cpu_node) {
    cpus_.push_back(cpu);
    cpu_nodes_.push_back(node);
  }
}

void Topology::compute_latencies() {
  hwloc_topology* raw = topology_.get();
  // The first latency matrix between NUMA nodes (Linux: the firmware's SLIT, "NUMALatency").
  // Bandwidth matrices are left out: there larger means nearer.
  unsigned count = 1;
  hwloc_distances_s* matrix = nullptr;
  if (hwloc_distances_get_by_type(raw, HWLOC_OBJ_NUMANODE, &count, &matrix,
                                  HWLOC_DISTANCES_KIND_MEANS_LATENCY, 0) != 0 ||
      matrix == nullptr) {
    return;
  }
  const std::size_t n = nodes_.size();
  node_latency_.assign(n * n, kUnknownLatency);
  for (std::size_t from = 0; from < n; ++from) {
    for (std::size_t to = 0; to < n; ++to) {
      hwloc_uint64_t forward = 0;
      hwloc_uint64_t backward = 0;
      if (hwloc_distances_obj_pair_values(
              matrix, hwloc_get_numanode_obj_by_os_index(raw, static_cast<unsigned>(nodes_[from])),
              hwloc_get_numanode_obj_by_os_index(raw, static_cast<unsigned>(nodes_[to])), &forward,
              &backward) == 0) {
        node_latency_[from * n + to] = forward;
      }
    }
  }
  hwloc_distances_release(raw, matrix);
}

std::vector<int> Topology::numa_nodes() const { return nodes_; }

std::vector<int> Topology::cpus_of_node(int node) const {
  std::vector<int> cpus;
  for (std::size_t i = 0; i < cpus_.size(); ++i) {
    if (cpu_nodes_[i] == node) {
      cpus.push_back(cpus_[i]);
    }
  }
  return cpus;
}

int Topology::node_of_cpu(int cpu) const {
  const auto it = std::lower_bound(cpus_.begin(), cpus_.end(), cpu);
  return it != cpus_.end() && *it == cpu ? cpu_nodes_[static_cast<std::size_t>(it - cpus_.begin())]
                                         : -1;
}

int Topology::cpu_count() const { return static_cast<int>(cpus_.size()); }

bool Topology::has_node(int node) const {
  return std::binary_search(nodes_.begin(), nodes_.end(), node);
}

int Topology::device_node(const vfio::Bdf& bdf) const {
  if (const int node = hwloc_device_node(bdf); node >= 0) {
    return node;
  }
  return vfio::numa_node(bdf);
}

int Topology::hwloc_device_node(const vfio::Bdf& bdf) const {
  hwloc_topology* raw = topology_.get();
  if (raw == nullptr) {
    return -1;
  }
  hwloc_obj_t device =
      hwloc_get_pcidev_by_busid(raw, bdf.domain, bdf.bus, bdf.device, bdf.function);
  hwloc_obj_t ancestor = device != nullptr ? hwloc_get_non_io_ancestor_obj(raw, device) : nullptr;
  if (ancestor == nullptr || ancestor->cpuset == nullptr) {
    return -1;
  }
  std::vector<int> nodes;  // the own nodes of the CPUs below the ancestor
  for (std::size_t i = 0; i < cpus_.size(); ++i) {
    if (hwloc_bitmap_isset(ancestor->cpuset, static_cast<unsigned>(cpus_[i])) != 0) {
      nodes.push_back(cpu_nodes_[i]);
    }
  }
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  // hwloc hangs a device whose firmware gave no locality (Linux: local_cpus is every CPU) off
  // the top of the machine; on a machine of several nodes that placement says nothing.
  const bool whole_machine =
      hwloc_bitmap_isequal(ancestor->cpuset, hwloc_get_root_obj(raw)->cpuset) != 0;
  if (nodes.empty() || (nodes.size() > 1 && whole_machine)) {
    return -1;
  }
  return nodes.front();
}

std::uint64_t Topology::latency(int from, int to) const {
  if (node_latency_.empty()) {
    return kUnknownLatency;
  }
  const auto index = [this](int node) {
    return static_cast<std::size_t>(std::lower_bound(nodes_.begin(), nodes_.end(), node) -
                                    nodes_.begin());
  };
  return node_latency_[index(from) * nodes_.size() + index(to)];
}

std::vector<int> Topology::cpus_near_node(int node) const {
  if (node < 0 && !numa_nodes().empty()) {
    node = numa_nodes().front();
  }
  std::vector<int> cpus = cpus_of_node(node);
  for (const int near : nearest_nodes_with_cpus(node)) {
    if (!cpus.empty()) {
      break;
    }
    cpus = cpus_of_node(near);
  }
  return cpus;
}

std::vector<int> Topology::nearest_nodes_with_cpus(int node) const {
  if (!has_node(node)) {
    return {};
  }
  // Where hwloc put `node` tells which CPUs it is local to: a memory-only node hangs under the
  // package of the CPUs its firmware (HMAT initiators, or distances) calls local, else at the top.
  const hwloc_obj* memory =
      hwloc_get_numanode_obj_by_os_index(topology_.get(), static_cast<unsigned>(node));
  std::vector<int> candidates = cpu_nodes_;
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  std::vector<std::tuple<std::uint64_t, int, int>> keyed;  // latency, remote, node
  for (const int candidate : candidates) {
    bool local = false;
    for (const int cpu : cpus_of_node(candidate)) {
      local = local || hwloc_bitmap_isset(memory->cpuset, static_cast<unsigned>(cpu)) != 0;
    }
    keyed.emplace_back(latency(node, candidate), local ? 0 : 1, candidate);
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<int> nearest;
  for (const auto& key : keyed) {
    nearest.push_back(std::get<2>(key));
  }
  return nearest;
}

Result<void> Topology::require_this_system(const char* op) const {
  if (topology_ == nullptr) {
    return Error::invalid(op, "this Topology was moved from");
  }
  if (!this_system_) {
    return Error::not_supported(op, "this topology was loaded from a synthetic description or "
                                    "XML, not from this machine; binding needs Topology::create()");
  }
  return ok();
}

Result<void> Topology::bind_thread_to_node(int node) const {
  if (!has_node(node)) {
    return Error::invalid("bind thread to NUMA node",
                          fmt::format("there is no NUMA node {}; the nodes are {}", node,
                                      format_list(nodes_)));
  }
  const std::vector<int> cpus = cpus_of_node(node);
  if (cpus.empty()) {
    return Error::invalid(
        "bind thread to NUMA node",
        fmt::format("NUMA node {} has no CPUs (memory only); run its worker on a node from "
                    "nearest_nodes_with_cpus({}): {}",
                    node, node, format_list(nearest_nodes_with_cpus(node))));
  }
  return bind_thread_to_cpus(cpus);
}

Result<void> Topology::bind_thread_to_cpus(std::span<const int> cpus) const {
  if (cpus.empty()) {
    return Error::invalid("hwloc_set_cpubind", "no CPUs given to bind the thread to");
  }
  for (const int cpu : cpus) {
    if (node_of_cpu(cpu) < 0) {
      return Error::invalid("hwloc_set_cpubind",
                            fmt::format("CPU {} is not in this topology (its CPUs are {})", cpu,
                                        format_list(cpus_)));
    }
  }
  VFE_TRY(require_this_system("hwloc_set_cpubind"));
  const Bitmap set(hwloc_bitmap_alloc());
  if (set == nullptr) {
    return Error::from_errno(ENOMEM, "hwloc_bitmap_alloc", "cannot allocate a CPU set");
  }
  for (const int cpu : cpus) {
    hwloc_bitmap_set(set.get(), static_cast<unsigned>(cpu));
  }
  if (hwloc_set_cpubind(topology_.get(), set.get(), HWLOC_CPUBIND_THREAD) != 0) {
    const int err = errno;
    std::vector<int> sorted(cpus.begin(), cpus.end());
    std::sort(sorted.begin(), sorted.end());
    return Error::from_errno(err, "hwloc_set_cpubind",
                             fmt::format("cannot bind the calling thread to CPUs {}; check the "
                                         "CPUs this process may use (taskset -p, the cgroup's "
                                         "cpuset.cpus)",
                                         format_list(sorted)));
  }
  return ok();
}

Result<void> Topology::bind_memory(void* addr, std::size_t len, int node) const {
  if (!has_node(node)) {
    return Error::invalid("hwloc_set_area_membind",
                          fmt::format("there is no NUMA node {}; the nodes are {}", node,
                                      format_list(nodes_)));
  }
  if (addr == nullptr || len == 0) {
    return Error::invalid("hwloc_set_area_membind",
                          fmt::format("empty memory range ({} bytes at {})", len, addr));
  }
  VFE_TRY(require_this_system("hwloc_set_area_membind"));
  const hwloc_obj* target =
      hwloc_get_numanode_obj_by_os_index(topology_.get(), static_cast<unsigned>(node));
  // MIGRATE moves pages already touched elsewhere; STRICT makes a page that can't move an error
  // (EIO) instead of memory that silently stays remote.
  if (hwloc_set_area_membind(topology_.get(), addr, len, target->nodeset, HWLOC_MEMBIND_BIND,
                             HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE |
                                 HWLOC_MEMBIND_STRICT) != 0) {
    const int err = errno;
    return Error::from_errno(err, "hwloc_set_area_membind",
                             fmt::format("cannot bind {} bytes at {} to NUMA node {}{}", len, addr,
                                         node,
                                         err == EIO ? "; some pages are in use elsewhere and "
                                                      "could not move: bind before first touch"
                                                    : ""));
  }
  return ok();
}

}  // namespace vfe::engine
