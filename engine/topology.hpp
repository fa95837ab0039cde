#pragma once
/// \file
/// `Topology`: where the CPUs, the memory and the PCI functions of the machine are (through hwloc),
/// so that the engine can run one worker per NUMA node that has devices, pin it to that node's CPUs
/// and keep its data in that node's memory.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "vfio/bdf.hpp"

// hwloc's handle, declared here so that users of this header don't see hwloc.h.
struct hwloc_topology;

namespace vfe::engine {

/// A loaded hwloc topology with I/O devices, and the answers the engine needs from it.
///
/// Numbers are OS indexes throughout (the numbers Linux uses: node 1 is
/// /sys/devices/system/node/node1, CPU 3 is what sched_getaffinity calls 3), never hwloc's logical
/// indexes. Only the CPUs and nodes this process may use are listed (hwloc leaves out those that a
/// cgroup forbids).
///
/// "A node with CPUs" is the nearest node of at least one CPU: walking up from the CPU, the first
/// object with NUMA nodes attached holds it (the lowest OS index there, when several share the
/// place). Nodes without CPUs (CXL or persistent memory, HBM, a `[numa]` above the packages in a
/// synthetic description) sit above the CPUs' own node, or beside it with a higher number: Linux
/// numbers memory-only nodes after the nodes with CPUs.
///
/// Ownership and threads: owns the hwloc topology and destroys it; move-only. A loaded hwloc
/// topology is never modified again, and everything this class needs from it beyond the device
/// lookup is computed once when it is loaded, so every const member may be called from any number
/// of threads at once (the binding calls affect only the calling thread, or the given memory).
/// A moved-from Topology may only be destroyed or assigned to.
class Topology {
 public:
  /// Loads this machine's topology, PCI devices included (hwloc's "important" I/O objects, read
  /// from sysfs: bridges, storage, network, display, accelerators and unclassified functions;
  /// `device_node` asks sysfs about the others). hwloc's own environment variables apply
  /// (HWLOC_XMLFILE, HWLOC_SYNTHETIC replace the machine with a description, and then binding is
  /// refused unless HWLOC_THISSYSTEM=1 says the description is this machine).
  [[nodiscard]] static Result<Topology> create();

  /// A made-up topology in hwloc's synthetic syntax ("pack:2 numa:1 core:2 pu:1"; a node without
  /// CPUs is "[numa] pack:2 [numa] core:2 pu:1"), for tests. It has no PCI devices and refuses
  /// binding. A malformed description is an EINVAL error that shows it.
  [[nodiscard]] static Result<Topology> from_synthetic(std::string_view description);

  /// A topology exported by `lstopo file.xml` (or written by hand), PCI devices included, for
  /// tests and for planning on another machine's topology. Refuses binding.
  [[nodiscard]] static Result<Topology> from_xml_file(const std::string& path);

  /// The same from XML text in memory.
  [[nodiscard]] static Result<Topology> from_xml(std::string_view xml);

  /// Moves the hwloc topology and the cached answers; the source is left empty.
  Topology(Topology&&) noexcept = default;
  /// Destroys this hwloc topology and takes the other's.
  Topology& operator=(Topology&&) noexcept = default;
  /// Not copyable: the hwloc topology has one owner.
  Topology(const Topology&) = delete;
  /// Not copyable.
  Topology& operator=(const Topology&) = delete;
  /// Destroys the hwloc topology.
  ~Topology() = default;

  /// Every NUMA node, with or without CPUs, sorted. Never empty: hwloc gives a machine without
  /// NUMA one node, 0.
  [[nodiscard]] std::vector<int> numa_nodes() const;

  /// The CPUs whose nearest node is `node`, sorted; empty for a node without CPUs and for a node
  /// that does not exist.
  [[nodiscard]] std::vector<int> cpus_of_node(int node) const;

  /// The nearest node of `cpu`, or -1 when there is no such CPU.
  [[nodiscard]] int node_of_cpu(int cpu) const;

  /// The number of CPUs (hardware threads, hwloc's PUs) this process may use.
  [[nodiscard]] int cpu_count() const;

  /// The NUMA node of a PCI function, or -1 when nothing knows it.
  ///
  /// First hwloc: the node nearest to the function's first non-I/O ancestor (the node of the
  /// CPUs below that ancestor; if they belong to several nodes, the lowest, except when the
  /// ancestor spans the whole machine: that is where hwloc puts a device whose firmware gave no
  /// locality, so it says nothing). Then sysfs (`vfio::numa_node`, which honours
  /// VFE_SYSFS_ROOT) for functions hwloc doesn't list or doesn't place. -1 remains for
  /// single-node machines without NUMA and for firmware without proximity information; callers
  /// treat -1 as "any node" (place the device's queues on any worker).
  [[nodiscard]] int device_node(const vfio::Bdf& bdf) const;

  /// The nodes with CPUs, nearest to `node` first: by the latency hwloc knows (the firmware's
  /// SLIT as Linux reports it, or an XML topology's latency matrix), then by locality (nodes whose CPUs `node` is attached to or was declared
  /// local to come first), then by OS index. For a node without CPUs these are the nodes to run
  /// its worker on; for a node with CPUs, the node itself comes first. Empty for a node that
  /// does not exist.
  [[nodiscard]] std::vector<int> nearest_nodes_with_cpus(int node) const;

  /// The CPUs to run the work of NUMA node `node` on (a device's queues): the node's own, else
  /// those of the nearest node that has CPUs (for a memory-only node). `node` -1 (a device whose
  /// node is not known) means the first node. Empty when neither exists.
  [[nodiscard]] std::vector<int> cpus_near_node(int node) const;

  /// Pins the calling thread to the CPUs of `node`. EINVAL for a node that does not exist or has
  /// no CPUs (the error names nearest_nodes_with_cpus for it); ENOTSUP on a synthetic or XML
  /// topology, which is not this machine.
  [[nodiscard]] Result<void> bind_thread_to_node(int node) const;

  /// Pins the calling thread to `cpus` (OS indexes, at least one, all in this topology: else
  /// EINVAL). ENOTSUP on a synthetic or XML topology.
  [[nodiscard]] Result<void> bind_thread_to_cpus(std::span<const int> cpus) const;

  /// Binds the pages of [addr, addr + len) to `node`'s memory (hwloc_set_area_membind, BIND):
  /// later faults allocate there, and pages already elsewhere are moved; an error (EIO) if some
  /// can't be. Call it before the memory is first touched, so nothing has to move. `addr` is
  /// rounded down to its page. Nodes without CPUs are fine here. EINVAL for a node that does
  /// not exist or an empty range; ENOTSUP on a synthetic or XML topology.
  [[nodiscard]] Result<void> bind_memory(void* addr, std::size_t len, int node) const;

  /// True when the topology describes the machine this process runs on (from `create`), which
  /// is what binding needs.
  [[nodiscard]] bool is_this_system() const noexcept { return this_system_; }

 private:
  struct Destroy {
    void operator()(hwloc_topology* topology) const noexcept;
  };
  using Handle = std::unique_ptr<hwloc_topology, Destroy>;

  explicit Topology(Handle topology) noexcept;

  // Sets the I/O filters, loads, and computes the cached answers; `source` names the input in
  // errors ("synthetic description \"...\""), `remedy` ("; ...") says what to do about a failure.
  static Result<Topology> load(Handle topology, const std::string& source,
                               std::string_view remedy = {});
  void compute_cpus_and_nodes();
  void compute_latencies();

  [[nodiscard]] bool has_node(int node) const;
  [[nodiscard]] int hwloc_device_node(const vfio::Bdf& bdf) const;
  [[nodiscard]] std::uint64_t latency(int from, int to) const;
  [[nodiscard]] Result<void> require_this_system(const char* op) const;

  Handle topology_;
  bool this_system_ = false;
  std::vector<int> nodes_;                   // every node, sorted
  std::vector<int> cpus_;                    // every CPU, sorted
  std::vector<int> cpu_nodes_;               // the nearest node of cpus_[i]
  std::vector<std::uint64_t> node_latency_;  // nodes_.size()^2, row = from; empty if unknown
};

}  // namespace vfe::engine
