#include "engine/topology.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/support/assert_ok.hpp"
#include "tests/unit/support/fake_sysfs.hpp"

namespace vfe::engine {
namespace {

using ::testing::HasSubstr;
using Nodes = std::vector<int>;

// Test data lives beside this file; the tests run from the build folder, so the path is taken
// from where the compiler found this source.
std::string data_path(const char* name) {
  return (std::filesystem::path(__FILE__).parent_path() / "data" / name).string();
}

// The hand-written machine of data/two_packages_cxl.xml: nodes 0 (CPUs 0-1) and 1 (CPUs 2-3)
// under two packages, node 2 memory only and nearer to node 1, PCI functions below each package
// and one at the top of the machine. Loading it needs hwloc's XML reader (libhwloc-plugins), so
// a test takes it with VFE_ASSERT_OK_AND_ASSIGN.
Result<Topology> cxl_machine() {
  return Topology::from_xml_file(data_path("two_packages_cxl.xml"));
}

// PCI functions of that machine (one without locality in it), and one it does not list.
constexpr vfio::Bdf kBelowPackage1{0, 0x81, 0, 0};  // 0000:81:00.0, behind a root port
constexpr vfio::Bdf kBelowPackage0{0, 0x01, 0, 0};  // 0000:01:00.0
constexpr vfio::Bdf kAtTheTop{0, 0x00, 5, 0};       // 0000:00:05.0, no locality in hwloc
constexpr vfio::Bdf kNotInTheXml{0, 0x82, 0, 0};    // 0000:82:00.0

// The CPUs the calling thread may run on, sorted.
std::vector<int> thread_affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(::pthread_getaffinity_np(::pthread_self(), sizeof set, &set), 0);
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) {
      cpus.push_back(cpu);
    }
  }
  return cpus;
}

TEST(TopologySynthetic, OneNodeHoldsEveryCpu) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, Topology::from_synthetic("pack:1 core:2 pu:2"));
  EXPECT_EQ(topology.numa_nodes(), Nodes{0});
  EXPECT_EQ(topology.cpu_count(), 4);
  EXPECT_EQ(topology.cpus_of_node(0), (Nodes{0, 1, 2, 3}));
  EXPECT_EQ(topology.node_of_cpu(3), 0);
  EXPECT_EQ(topology.nearest_nodes_with_cpus(0), Nodes{0});
  EXPECT_FALSE(topology.is_this_system());
}

TEST(TopologySynthetic, TwoNodesSplitTheCpus) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("pack:2 numa:1 core:2 pu:1"));
  EXPECT_EQ(topology.numa_nodes(), (Nodes{0, 1}));
  EXPECT_EQ(topology.cpus_of_node(0), (Nodes{0, 1}));
  EXPECT_EQ(topology.cpus_of_node(1), (Nodes{2, 3}));
  EXPECT_EQ(topology.node_of_cpu(1), 0);
  EXPECT_EQ(topology.node_of_cpu(2), 1);
  // Without distances, locality then OS index: a node with CPUs comes first for itself.
  EXPECT_EQ(topology.nearest_nodes_with_cpus(1), (Nodes{1, 0}));
}

TEST(TopologySynthetic, FourNodesTwoPerPackage) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("pack:2 group:2 numa:1 core:2 pu:1"));
  EXPECT_EQ(topology.numa_nodes(), (Nodes{0, 1, 2, 3}));
  EXPECT_EQ(topology.cpu_count(), 8);
  for (int node = 0; node < 4; ++node) {
    EXPECT_EQ(topology.cpus_of_node(node), (Nodes{2 * node, 2 * node + 1})) << "node " << node;
  }
  EXPECT_EQ(topology.node_of_cpu(5), 2);
  EXPECT_EQ(topology.nearest_nodes_with_cpus(2), (Nodes{2, 0, 1, 3}));
}

TEST(TopologySynthetic, CpuNumbersAreOsIndexes) {
  // Linux numbers the hardware threads of a core apart (0 and 2 are siblings here); the answers
  // use those numbers, not hwloc's logical order.
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("pack:2 numa:1 core:2 pu:1(indexes=0,2,1,3)"));
  EXPECT_EQ(topology.cpus_of_node(0), (Nodes{0, 2}));
  EXPECT_EQ(topology.cpus_of_node(1), (Nodes{1, 3}));
  EXPECT_EQ(topology.node_of_cpu(2), 0);
  EXPECT_EQ(topology.node_of_cpu(1), 1);
}

TEST(TopologySynthetic, MemoryOnlyNodeAboveThePackages) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("[numa] pack:2 [numa] core:2 pu:1"));
  EXPECT_EQ(topology.numa_nodes(), (Nodes{0, 1, 2}));
  EXPECT_EQ(topology.cpus_of_node(0), (Nodes{0, 1}));
  EXPECT_EQ(topology.cpus_of_node(1), (Nodes{2, 3}));
  EXPECT_TRUE(topology.cpus_of_node(2).empty());
  // Local to every CPU and no distances: by OS index.
  EXPECT_EQ(topology.nearest_nodes_with_cpus(2), (Nodes{0, 1}));
}

TEST(TopologySynthetic, MemoryOnlyNodeBesideTheCpusNode) {
  // Two nodes under each package: the lower one is the CPUs' own node (0 and 2), the other is
  // memory only, local to that package's CPUs.
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("pack:2 [numa] [numa] core:1 pu:1"));
  EXPECT_EQ(topology.numa_nodes(), (Nodes{0, 1, 2, 3}));
  EXPECT_EQ(topology.cpus_of_node(0), Nodes{0});
  EXPECT_EQ(topology.cpus_of_node(2), Nodes{1});
  EXPECT_TRUE(topology.cpus_of_node(1).empty());
  EXPECT_TRUE(topology.cpus_of_node(3).empty());
  EXPECT_EQ(topology.nearest_nodes_with_cpus(1), (Nodes{0, 2}));
  EXPECT_EQ(topology.nearest_nodes_with_cpus(3), (Nodes{2, 0}));
  // Work for a memory-only node runs on its nearest CPUs; for an unknown node (-1), on the first.
  EXPECT_EQ(topology.cpus_near_node(3), Nodes{1});
  EXPECT_EQ(topology.cpus_near_node(2), Nodes{1});
  EXPECT_EQ(topology.cpus_near_node(-1), Nodes{0});
  EXPECT_TRUE(topology.cpus_near_node(7).empty());
}

TEST(TopologySynthetic, UnknownNodesAndCpusGiveNothing) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("pack:2 numa:1 core:2 pu:1"));
  EXPECT_TRUE(topology.cpus_of_node(7).empty());
  EXPECT_TRUE(topology.cpus_of_node(-1).empty());
  EXPECT_EQ(topology.node_of_cpu(4), -1);
  EXPECT_EQ(topology.node_of_cpu(-1), -1);
  EXPECT_TRUE(topology.nearest_nodes_with_cpus(7).empty());
}

TEST(TopologySynthetic, MalformedDescriptionsAreErrors) {
  for (const char* description : {"", "garbage", "pack:0", "pack:2 numa:1 core:2 pu:1 bogus:3",
                                  "pack:-1 pu:1", "pack:2 pu"}) {
    const auto topology = Topology::from_synthetic(description);
    ASSERT_FALSE(topology) << "\"" << description << "\" was accepted";
    EXPECT_TRUE(topology.error().is(EINVAL)) << topology.error().message();
    EXPECT_THAT(topology.error().message(), HasSubstr("hwloc_topology_set_synthetic"));
    EXPECT_THAT(topology.error().message(), HasSubstr(std::string("\"") + description + "\""));
  }
}

TEST(TopologySynthetic, BindingIsRefused) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("pack:2 numa:1 core:2 pu:1"));
  const auto thread = topology.bind_thread_to_node(0);
  ASSERT_FALSE(thread);
  EXPECT_TRUE(thread.error().is(ENOTSUP)) << thread.error().message();
  EXPECT_THAT(thread.error().message(), HasSubstr("not from this machine"));

  const int cpus[] = {2, 3};
  const auto pinned = topology.bind_thread_to_cpus(cpus);
  ASSERT_FALSE(pinned);
  EXPECT_TRUE(pinned.error().is(ENOTSUP)) << pinned.error().message();

  char page[64] = {};
  const auto memory = topology.bind_memory(page, sizeof page, 1);
  ASSERT_FALSE(memory);
  EXPECT_TRUE(memory.error().is(ENOTSUP)) << memory.error().message();
}

TEST(TopologySynthetic, BadBindingArgumentsAreInvalid) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("pack:2 numa:1 core:2 pu:1"));
  const auto no_node = topology.bind_thread_to_node(5);
  ASSERT_FALSE(no_node);
  EXPECT_TRUE(no_node.error().is(EINVAL));
  EXPECT_THAT(no_node.error().message(), HasSubstr("the nodes are 0-1"));

  const int bad_cpu[] = {1, 9};
  const auto pinned = topology.bind_thread_to_cpus(bad_cpu);
  ASSERT_FALSE(pinned);
  EXPECT_TRUE(pinned.error().is(EINVAL));
  EXPECT_THAT(pinned.error().message(),
              HasSubstr("CPU 9 is not in this topology (its CPUs are 0-3)"));
  EXPECT_TRUE(topology.bind_thread_to_cpus({}).error().is(EINVAL));

  char page[64] = {};
  EXPECT_TRUE(topology.bind_memory(page, sizeof page, 9).error().is(EINVAL));
  EXPECT_TRUE(topology.bind_memory(page, 0, 0).error().is(EINVAL));
  EXPECT_TRUE(topology.bind_memory(nullptr, 64, 0).error().is(EINVAL));
}

TEST(TopologySynthetic, MovesKeepTheTopology) {
  VFE_ASSERT_OK_AND_ASSIGN(Topology first, Topology::from_synthetic("pack:2 numa:1 core:2 pu:1"));
  Topology second = std::move(first);
  EXPECT_EQ(second.cpus_of_node(1), (Nodes{2, 3}));
  VFE_ASSERT_OK_AND_ASSIGN(first, Topology::from_synthetic("pack:1 core:1 pu:1"));
  second = std::move(first);
  EXPECT_EQ(second.cpu_count(), 1);
}

TEST(TopologyXml, NodesAndCpus) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, cxl_machine());
  EXPECT_FALSE(topology.is_this_system());
  EXPECT_EQ(topology.numa_nodes(), (Nodes{0, 1, 2}));
  EXPECT_EQ(topology.cpu_count(), 4);
  EXPECT_EQ(topology.cpus_of_node(0), (Nodes{0, 1}));
  EXPECT_EQ(topology.cpus_of_node(1), (Nodes{2, 3}));
  EXPECT_TRUE(topology.cpus_of_node(2).empty());
  EXPECT_EQ(topology.node_of_cpu(0), 0);
  EXPECT_EQ(topology.node_of_cpu(3), 1);
}

TEST(TopologyXml, MemoryOnlyNodeRunsOnTheNearestNodeByLatency) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, cxl_machine());
  // The latency matrix puts node 2 at 24 from node 1 and 32 from node 0: node 1 first, although
  // OS index order would say 0.
  EXPECT_EQ(topology.nearest_nodes_with_cpus(2), (Nodes{1, 0}));
  EXPECT_EQ(topology.nearest_nodes_with_cpus(0), (Nodes{0, 1}));
  EXPECT_EQ(topology.nearest_nodes_with_cpus(1), (Nodes{1, 0}));
}

TEST(TopologyXml, DeviceNodeFromHwloc) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, cxl_machine());
  EXPECT_EQ(topology.device_node(kBelowPackage1), 1);  // behind a root port below package 1
  EXPECT_EQ(topology.device_node(kBelowPackage0), 0);
}

TEST(TopologyXml, BindingAMemoryOnlyNodeNamesTheNodesToUse) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, cxl_machine());
  const auto bound = topology.bind_thread_to_node(2);
  ASSERT_FALSE(bound);
  EXPECT_TRUE(bound.error().is(EINVAL));
  EXPECT_THAT(bound.error().message(), HasSubstr("node 2 has no CPUs"));
  EXPECT_THAT(bound.error().message(), HasSubstr("nearest_nodes_with_cpus(2): 1,0"));
  EXPECT_TRUE(topology.bind_thread_to_node(1).error().is(ENOTSUP));
}

TEST(TopologyXml, TextAndFileGiveTheSameTopology) {
  std::ifstream file(data_path("two_packages_cxl.xml"));
  std::stringstream text;
  text << file.rdbuf();
  const auto topology = Topology::from_xml(text.str());
  ASSERT_TRUE(topology) << topology.error().message();
  EXPECT_EQ(topology->numa_nodes(), (Nodes{0, 1, 2}));
  EXPECT_EQ(topology->cpus_of_node(1), (Nodes{2, 3}));
  EXPECT_EQ(topology->nearest_nodes_with_cpus(2), (Nodes{1, 0}));
  EXPECT_EQ(topology->device_node(kBelowPackage1), 1);
}

TEST(TopologyXml, MalformedXmlIsAnError) {
  for (const char* xml : {"", "not xml at all", "<topology version=\"2.0\"><object type=\"Mach",
                          "<?xml version=\"1.0\"?><topology version=\"2.0\"></topology>",
                          "<?xml version=\"1.0\"?><nothing/>"}) {
    const auto topology = Topology::from_xml(xml);
    ASSERT_FALSE(topology) << "accepted: " << xml;
    EXPECT_THAT(topology.error().message(), HasSubstr("hwloc_topology_")) << xml;
  }
}

TEST(TopologyXml, MissingFileIsAnError) {
  const auto topology = Topology::from_xml_file("/nonexistent/vfe-topology.xml");
  ASSERT_FALSE(topology);
  EXPECT_TRUE(topology.error().is(ENOENT)) << topology.error().message();
  EXPECT_THAT(topology.error().message(), HasSubstr("/nonexistent/vfe-topology.xml"));
}

TEST(TopologyXml, ConstQueriesFromManyThreads) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, cxl_machine());
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (std::size_t t = 0; t < failures.size(); ++t) {
    threads.emplace_back([&topology, &failures, t] {
      for (int i = 0; i < 200; ++i) {
        failures[t] += topology.device_node(kBelowPackage1) != 1;
        failures[t] += topology.nearest_nodes_with_cpus(2) != Nodes{1, 0};
        failures[t] += topology.node_of_cpu(2) != 1;
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

// device_node's sysfs fallback, on a scratch sysfs tree (VFE_SYSFS_ROOT).
class TopologySysfs : public test::FakeSysfs {};

TEST_F(TopologySysfs, DeviceWithoutLocalityInHwlocAsksSysfs) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, cxl_machine());
  // 0000:00:05.0 hangs at the top of the machine: hwloc doesn't know its node.
  EXPECT_EQ(topology.device_node(kAtTheTop), -1);
  add_device(kAtTheTop.to_string(), "vfio-pci", "5", 1);
  EXPECT_EQ(topology.device_node(kAtTheTop), 1);
}

TEST_F(TopologySysfs, DeviceHwlocDoesNotListAsksSysfs) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, cxl_machine());
  EXPECT_EQ(topology.device_node(kNotInTheXml), -1);
  add_device(kNotInTheXml.to_string(), "vfio-pci", "9", 0);
  EXPECT_EQ(topology.device_node(kNotInTheXml), 0);
}

TEST_F(TopologySysfs, SyntheticTopologyHasNoPciDevicesSoSysfsAnswers) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology,
                           Topology::from_synthetic("pack:2 numa:1 core:2 pu:1"));
  EXPECT_EQ(topology.device_node(kBelowPackage1), -1);
  add_device(kBelowPackage1.to_string(), "vfio-pci", "3", 1);
  EXPECT_EQ(topology.device_node(kBelowPackage1), 1);
}

TEST_F(TopologySysfs, HwlocWinsOverSysfs) {
  VFE_ASSERT_OK_AND_ASSIGN(const Topology topology, cxl_machine());
  add_device(kBelowPackage1.to_string(), "vfio-pci", "3", 0);
  EXPECT_EQ(topology.device_node(kBelowPackage1), 1);
}

TEST(TopologyHost, LoadsThisMachine) {
  const auto topology = Topology::create();
  ASSERT_TRUE(topology) << topology.error().message();
  EXPECT_TRUE(topology->is_this_system());
  const Nodes nodes = topology->numa_nodes();
  ASSERT_FALSE(nodes.empty());
  ASSERT_GT(topology->cpu_count(), 0);
  int cpus = 0;
  for (const int node : nodes) {
    for (const int cpu : topology->cpus_of_node(node)) {
      EXPECT_EQ(topology->node_of_cpu(cpu), node);
      ++cpus;
    }
    EXPECT_FALSE(topology->nearest_nodes_with_cpus(node).empty());
  }
  EXPECT_EQ(cpus, topology->cpu_count());
}

TEST(TopologyHost, BindsAThreadToTheFirstNode) {
  const auto topology = Topology::create();
  ASSERT_TRUE(topology) << topology.error().message();
  const int node = topology->nearest_nodes_with_cpus(topology->numa_nodes()[0]).front();
  // A thread of its own, so this test's thread keeps the affinity it had.
  std::thread([&] {
    const auto bound = topology->bind_thread_to_node(node);
    ASSERT_TRUE(bound) << bound.error().message();
    EXPECT_EQ(thread_affinity(), topology->cpus_of_node(node));

    const int one_cpu[] = {topology->cpus_of_node(node).back()};
    const auto pinned = topology->bind_thread_to_cpus(one_cpu);
    ASSERT_TRUE(pinned) << pinned.error().message();
    EXPECT_EQ(thread_affinity(), Nodes{one_cpu[0]});
  }).join();
}

TEST(TopologyHost, BindsMemoryToANode) {
  const auto topology = Topology::create();
  ASSERT_TRUE(topology) << topology.error().message();
  const std::size_t len = 4 * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* memory = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(memory, MAP_FAILED);
  const auto bound = topology->bind_memory(memory, len, topology->numa_nodes()[0]);
  if (!bound && bound.error().is(EPERM)) {
    ::munmap(memory, len);
    GTEST_SKIP() << "mbind is not allowed here (a container without CAP_SYS_NICE?): "
                 << bound.error().message();
  }
  EXPECT_TRUE(bound) << bound.error().message();
  static_cast<char*>(memory)[0] = 1;  // the first touch allocates on the node
  // Already touched: MIGRATE moves the page or the call fails; one node here, so it stays put.
  const auto again = topology->bind_memory(static_cast<char*>(memory) + 1, len - 1,
                                           topology->numa_nodes()[0]);
  EXPECT_TRUE(again) << again.error().message();
  ::munmap(memory, len);
}

}  // namespace
}  // namespace vfe::engine
