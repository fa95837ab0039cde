// vfio-bench in the guest: each mode runs for a moment against the rig's devices, and its JSON is
// checked for consistency (no errors, rates times time equal the counts, histograms sum to their
// counts). Last, fio with its io_uring engine runs on the same NVMe bound to the kernel's nvme
// driver, and its rate is printed next to vfio-bench's. vfio-bench and fio come from the PATH
// (tests/vm/run.sh --with). This binary runs after the others: it rebinds a device.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/support/assert_ok.hpp"
#include "tests/vm/nvme_support.hpp"
#include "tests/vm/vm_env.hpp"
#include "tests/vm/vm_support.hpp"

extern char** environ;

namespace vfe::vmtest {
namespace {

using nlohmann::json;

// Runs a program from the PATH and returns its exit status (-1: could not run it).
int run(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string line;
  for (const auto& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
    line += a + " ";
  }
  argv.push_back(nullptr);
  std::printf("+ %s\n", line.c_str());
  std::fflush(stdout);
  pid_t pid = 0;
  if (::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    return -1;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// vfio-bench ARGS --json --output FILE, its exit status expected 0 (the report's checks then say
// what went wrong); its JSON, or an error when it wrote none that parses (for
// VFE_ASSERT_OK_AND_ASSIGN, so that no check reads a report that is not there).
Result<json> bench(std::vector<std::string> args, int expected_status = 0) {
  const std::string out = "/tmp/vfio-bench.json";
  std::filesystem::remove(out);
  args.insert(args.begin(), "vfio-bench");
  args.insert(args.end(), {"--json", "--output", out, "--no-progress"});
  EXPECT_EQ(run(args), expected_status) << "vfio-bench's exit status";
  std::ifstream in(out);
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Error{{}, "vfio-bench", "wrote no JSON report to " + out + " that parses"};
  }
  std::printf("%s\n", j.dump().substr(0, 600).c_str());
  return j;
}

// What every job of every mode must satisfy.
void check_job(const json& job) {
  SCOPED_TRACE(job.value("name", "?"));
  const double seconds = job.at("seconds").get<double>();
  const auto ops = job.at("ops").get<std::uint64_t>();
  EXPECT_GT(seconds, 0.0);
  EXPECT_GT(ops, 0U);
  EXPECT_EQ(job.at("errors").get<std::uint64_t>(), 0U) << job.at("first_error");
  EXPECT_NEAR(job.at("ops_per_second").get<double>() * seconds, static_cast<double>(ops), 0.5 + ops * 1e-9)
      << "rate x time = operations done";
  const double mib = job.at("mib_per_second").get<double>() * seconds * (1 << 20);
  EXPECT_NEAR(mib, static_cast<double>(job.at("bytes").get<std::uint64_t>()), 1.0 + mib * 1e-9);
  const json& lat = job.at("latency");
  std::uint64_t in_buckets = 0;
  for (const auto& b : lat.at("buckets")) {
    EXPECT_LE(b[0].get<std::uint64_t>(), b[1].get<std::uint64_t>());
    in_buckets += b[2].get<std::uint64_t>();
  }
  EXPECT_EQ(in_buckets, lat.at("count").get<std::uint64_t>()) << "the histogram sums to its count";
  if (lat.at("count").get<std::uint64_t>() != 0) {
    EXPECT_LE(lat.at("min").get<std::uint64_t>(), lat.at("percentiles").at("p50").get<std::uint64_t>());
    EXPECT_LE(lat.at("percentiles").at("p50").get<std::uint64_t>(), lat.at("percentiles").at("p99").get<std::uint64_t>());
    EXPECT_LE(lat.at("percentiles").at("p99.9").get<std::uint64_t>(), lat.at("max").get<std::uint64_t>());
  }
}

// Fails fatally (call it under ASSERT_NO_FATAL_FAILURE) when the report has not `jobs` jobs, so
// that the caller does not index past them.
void check_report(const json& r, const std::string& mode, std::size_t jobs) {
  EXPECT_EQ(r.value("mode", ""), mode);
  EXPECT_EQ(r.value("errors", 1), 0);
  ASSERT_EQ(r.at("jobs").size(), jobs);
  for (const auto& job : r.at("jobs")) {
    check_job(job);
  }
}

std::string first(const std::string& kind) { return devices_of(kind).at(0).to_string(); }

// The scratch band of the NVMe tests (tests/vm/nvme_pattern.hpp): 40 to 56 MiB.
const std::vector<std::string> kScratch = {"--offset", "40M", "--size", "16M"};

TEST(VfioBenchVm, Loopback) {
  VFE_ASSERT_OK_AND_ASSIGN(const json r, bench({"loopback", "--time", "1"}));
  ASSERT_NO_FATAL_FAILURE(check_report(r, "loopback", 3));
  EXPECT_GT(r.at("comparison").at("ratio_to_nop_batch32").get<double>(), 0.0);
}

// Both controllers at once, a random 50/50 mix in the scratch band.
void nvme_both_controllers(const char* completion) {
  std::vector<std::string> args = {"nvme", first("nvme"), devices_of("nvme").at(1).to_string(), "--rw", "randrw",
                                   "--bs", "4k", "--qd", "32", "--time", "2", "--completion", completion};
  args.insert(args.end(), kScratch.begin(), kScratch.end());
  VFE_ASSERT_OK_AND_ASSIGN(const json r, bench(args));
  ASSERT_NO_FATAL_FAILURE(check_report(r, "nvme", 2));
  for (const auto& job : r.at("jobs")) {
    EXPECT_EQ(job.at("latency").at("count"), job.at("ops")) << "every I/O is timed";
    EXPECT_EQ(job.at("bytes").get<std::uint64_t>(), job.at("ops").get<std::uint64_t>() * 4096);
    const double mmio = job.at("extra").at("mmio_writes_per_io").get<double>();
    EXPECT_GT(mmio, 0.0);
    EXPECT_LE(mmio, 2.0) << "at most one SQ and one CQ doorbell per I/O";
  }
  EXPECT_EQ(r.at("jobs")[1].at("params").at("numa_node"), 1) << "the second controller is on node 1";
}

// --rate caps the rate, --ramp-time keeps the warm-up out of the count and the time, and a zipf
// pattern with a seed runs and is reported (its law and the seed's reproducibility are
// unit-tested: tests/unit/bench/access_pattern_test.cpp).
void nvme_rate_ramp_zipf(const char* completion) {
  constexpr double kRate = 1000, kSeconds = 2;
  constexpr std::uint32_t kQd = 8;
  std::vector<std::string> args = {"nvme", first("nvme"), "--rw", "randrw", "--qd", std::to_string(kQd), "--time",
                                   "2", "--rate", "1000", "--ramp-time", "0.5", "--random-distribution", "zipf:1.2",
                                   "--seed", "5", "--completion", completion, "--plot", "/tmp/vfio-bench.svg",
                                   "--percentiles", "50,99,99.9,99.99"};
  args.insert(args.end(), kScratch.begin(), kScratch.end());
  std::filesystem::remove("/tmp/vfio-bench.svg");
  VFE_ASSERT_OK_AND_ASSIGN(const json r, bench(args));
  ASSERT_NO_FATAL_FAILURE(check_report(r, "nvme", 1));
  const json& job = r.at("jobs")[0];
  const double seconds = job.at("seconds").get<double>();
  EXPECT_GE(seconds, kSeconds) << "the ramp is not counted in the time";
  EXPECT_LT(seconds, kSeconds + 0.5) << "the ramp is not counted in the time";
  // The bucket starts with 10 ms of tokens, and the requests in flight when counting began
  // complete inside the count.
  const auto ops = job.at("ops").get<double>();
  EXPECT_LE(ops, kRate * seconds + kRate / 100 + kQd) << "no more than --rate allows";
  EXPECT_GE(ops, 0.8 * kRate * seconds) << "close to --rate (the device does far more)";
  EXPECT_EQ(job.at("latency").at("count"), job.at("ops")) << "every I/O counted is timed";
  EXPECT_EQ(job.at("params").at("seed"), 5);
  EXPECT_EQ(job.at("params").at("random_distribution"), "zipf:1.2");
  EXPECT_EQ(job.at("params").at("rate"), kRate);
  EXPECT_TRUE(job.at("latency").at("percentiles").contains("p99.99")) << "--percentiles";
  EXPECT_FALSE(job.at("latency").at("percentiles").contains("p90")) << "--percentiles";
  // A timeline point per 0.1 s or so (fewer when the sampler is late on a loaded host), whose
  // rates average out near the job's.
  const json& timeline = job.at("timeline");
  EXPECT_GE(timeline.size(), 5U);
  EXPECT_LE(timeline.size(), 21U);
  double mean = 0;
  for (const auto& point : timeline) {
    mean += point[1].get<double>() / static_cast<double>(std::max<std::size_t>(timeline.size(), 1));
  }
  EXPECT_GT(mean, 0.5 * ops / seconds);
  EXPECT_LT(mean, 1.5 * ops / seconds);
  // --plot: the picture has this job's latency distribution and its rate over time.
  std::ifstream svg_in("/tmp/vfio-bench.svg");
  const std::string svg((std::istreambuf_iterator<char>(svg_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find(R"(class="latency" data-job="0")"), std::string::npos);
  EXPECT_NE(svg.find(R"(class="rate" data-job="0")"), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() >= 7 ? svg.size() - 7 : 0), "</svg>\n");
}

TEST(VfioBenchVm, NvmeRateRampAndZipfPolling) { nvme_rate_ramp_zipf("poll"); }
TEST(VfioBenchVm, NvmeRateRampAndZipfInterrupt) { nvme_rate_ramp_zipf("irq"); }

// How many bytes of the scratch band of controller 0 (namespace 1) are `value`, read with the
// library's own driver once vfio-bench has let the device go.
Result<std::uint64_t> count_scratch_bytes(std::uint8_t value) {
  VFE_TRY_ASSIGN(auto c, open_nvme(0));
  VFE_TRY_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  VFE_TRY_ASSIGN(auto q, c->create_io_queue(*w, {}));
  constexpr std::uint64_t kChunk = 64 * 1024;  // as the other NVMe tests read: fine in every mode
  VFE_TRY_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), kChunk));
  const nvme::DataSegment whole{buf.iova(), kChunk};
  std::uint64_t n = 0;
  for (std::uint64_t at = kScratchBegin; at < kScratchEnd; at += kChunk) {
    WaitableRequest rd(w.get(), nvme::IoOpcode::read, at / kBlock, kChunk / kBlock, {&whole, 1});
    if (const int rc = run_io(*q, rd); rc != 0) {
      return Error::from_errno(-rc, "read the scratch band", nvme::to_string(rd.status));
    }
    n += static_cast<std::uint64_t>(std::count(buf.as<std::uint8_t>(), buf.as<std::uint8_t>() + kChunk, value));
  }
  return n;
}

// Writes `blocks` blocks of `byte` at `lba` of controller 0's namespace 1 with the library's own
// driver: a second path to the medium, behind vfio-bench's back.
Result<void> write_behind(std::uint64_t lba, std::uint32_t blocks, std::uint8_t byte) {
  VFE_TRY_ASSIGN(auto c, open_nvme(0));
  VFE_TRY_ASSIGN(auto w, start_worker(engine::WorkerMode::polling));
  VFE_TRY_ASSIGN(auto q, c->create_io_queue(*w, {}));
  const std::uint64_t bytes = std::uint64_t{blocks} * kBlock;
  VFE_TRY_ASSIGN(const dma::DmaBuffer buf, dma::DmaBuffer::allocate(c->dma_space(), std::max<std::uint64_t>(bytes, 4096)));
  std::memset(buf.data(), byte, bytes);
  const nvme::DataSegment whole{buf.iova(), bytes};
  WaitableRequest wr(w.get(), nvme::IoOpcode::write, lba, blocks, {&whole, 1});
  if (const int rc = run_io(*q, wr); rc != 0) {
    return Error::from_errno(-rc, "write behind vfio-bench's back", nvme::to_string(wr.status));
  }
  return ok();
}

// --verify: a sequential write pass lays the pattern down and a read pass finds it intact, each
// 4 KiB read checked; a block then changed through a second path (the library's own driver) is
// caught by the next read pass, reported by its LBA, and vfio-bench exits 1. A random mix with
// --verify checks as it goes.
TEST(VfioBenchVm, NvmeVerifyCatchesABlockChangedBehindItsBack) {
  constexpr std::uint64_t kIos = (kScratchEnd - kScratchBegin) / 4096;
  auto pass = [&](const char* rw, int status = 0, const char* ios = nullptr) {
    std::vector<std::string> args = {"nvme", first("nvme"), "--rw", rw, "--qd", "8", "--verify", "--seed", "9"};
    if (ios != nullptr) {
      args.insert(args.end(), {"--ios", ios});
    } else {
      args.insert(args.end(), {"--time", "1"});
    }
    args.insert(args.end(), kScratch.begin(), kScratch.end());
    return bench(args, status);
  };
  const std::string all = std::to_string(kIos);
  VFE_ASSERT_OK_AND_ASSIGN(const json written, pass("write", 0, all.c_str()));
  ASSERT_NO_FATAL_FAILURE(check_report(written, "nvme", 1));
  VFE_ASSERT_OK_AND_ASSIGN(const json clean, pass("read", 0, all.c_str()));
  ASSERT_NO_FATAL_FAILURE(check_report(clean, "nvme", 1));
  EXPECT_EQ(clean.at("jobs")[0].at("extra").at("verify").at("blocks_checked"), kIos * 8);
  EXPECT_EQ(clean.at("jobs")[0].at("extra").at("verify").at("mismatches"), 0);

  const std::uint64_t bad = kScratchBegin / kBlock + 1234;
  VFE_ASSERT_OK(write_behind(bad, 1, 0x5a));
  VFE_ASSERT_OK_AND_ASSIGN(const json caught, pass("read", 1, all.c_str()));
  const json& job = caught.at("jobs")[0];
  EXPECT_EQ(job.at("errors"), 1) << "the one 4 KiB read that holds the block";
  EXPECT_EQ(job.at("extra").at("verify").at("mismatches"), 1);
  EXPECT_EQ(job.at("extra").at("verify").at("first_bad_lbas"), json::array({bad}));
  EXPECT_NE(job.at("first_error").get<std::string>().find("LBA " + std::to_string(bad)), std::string::npos)
      << job.at("first_error");

  // Put the pattern back (a write pass), then a random mix checks what it reads as it goes.
  VFE_ASSERT_OK_AND_ASSIGN(const json rewritten, pass("write", 0, all.c_str()));
  ASSERT_NO_FATAL_FAILURE(check_report(rewritten, "nvme", 1));
  VFE_ASSERT_OK_AND_ASSIGN(const json mixed, pass("randrw"));
  ASSERT_NO_FATAL_FAILURE(check_report(mixed, "nvme", 1));
  EXPECT_GT(mixed.at("jobs")[0].at("extra").at("verify").at("blocks_checked").get<std::uint64_t>(), 0U);
}

// --rw writezeroes, trim and flush. A sequential pass of write zeroes, or of trim, over the band
// that a write pass just filled (with 0xa5) leaves it reading as zeroes (QEMU's namespaces say
// DLFEAT 1), read back with the library's driver: the commands did what they are named for.
TEST(VfioBenchVm, NvmeWriteZeroesTrimAndFlushWorkloads) {
  constexpr std::uint64_t kIos = (kScratchEnd - kScratchBegin) / 4096;  // each 4 KiB once
  auto pass = [&](const char* rw, std::vector<std::string> more) {
    std::vector<std::string> args = {"nvme", first("nvme"), "--rw", rw, "--qd", "8"};
    args.insert(args.end(), more.begin(), more.end());
    args.insert(args.end(), kScratch.begin(), kScratch.end());
    return bench(args);
  };
  for (const char* rw : {"writezeroes", "trim"}) {
    SCOPED_TRACE(rw);
    VFE_ASSERT_OK_AND_ASSIGN(const json filled, pass("write", {"--ios", std::to_string(kIos)}));
    ASSERT_NO_FATAL_FAILURE(check_report(filled, "nvme", 1));
    VFE_ASSERT_OK_AND_ASSIGN(const std::uint64_t zeroes_before, count_scratch_bytes(0));
    EXPECT_EQ(zeroes_before, 0U) << "the write pass filled the band";
    VFE_ASSERT_OK_AND_ASSIGN(const json r, pass(rw, {"--ios", std::to_string(kIos)}));
    ASSERT_NO_FATAL_FAILURE(check_report(r, "nvme", 1));
    EXPECT_EQ(r.at("jobs")[0].at("ops").get<std::uint64_t>(), kIos);
    EXPECT_EQ(r.at("jobs")[0].at("bytes").get<std::uint64_t>(), kIos * 4096) << "the blocks each covers";
    VFE_ASSERT_OK_AND_ASSIGN(const std::uint64_t zeroes_after, count_scratch_bytes(0));
    EXPECT_EQ(zeroes_after, kScratchEnd - kScratchBegin);
  }
  VFE_ASSERT_OK_AND_ASSIGN(const json f, pass("flush", {"--time", "1"}));
  ASSERT_NO_FATAL_FAILURE(check_report(f, "nvme", 1));
  EXPECT_EQ(f.at("jobs")[0].at("bytes").get<std::uint64_t>(), 0U) << "a flush moves no data";
}

// Several namespaces in one run (namespaces 1 and 4 of the first controller, read only): a job
// each, with queues of their own, both counted, each request to its own namespace.
TEST(VfioBenchVm, NvmeTwoNamespacesInOneRun) {
  std::vector<std::string> args = {"nvme", first("nvme"), "--nsid", "1,4", "--rw", "randread", "--qd", "8",
                                   "--workers", "2", "--time", "1"};
  args.insert(args.end(), kScratch.begin(), kScratch.end());
  VFE_ASSERT_OK_AND_ASSIGN(const json r, bench(args));
  ASSERT_NO_FATAL_FAILURE(check_report(r, "nvme", 2));
  EXPECT_EQ(r.at("jobs")[0].at("params").at("nsid"), 1);
  EXPECT_EQ(r.at("jobs")[1].at("params").at("nsid"), 4);
  for (const auto& job : r.at("jobs")) {
    EXPECT_EQ(job.at("latency").at("count"), job.at("ops"));
    EXPECT_EQ(job.at("bytes").get<std::uint64_t>(), job.at("ops").get<std::uint64_t>() * 4096);
  }
}

TEST(VfioBenchVm, NvmeBothControllersPolling) { nvme_both_controllers("poll"); }
TEST(VfioBenchVm, NvmeBothControllersInterrupt) { nvme_both_controllers("irq"); }
TEST(VfioBenchVm, NvmeBothControllersAdaptive) { nvme_both_controllers("adaptive"); }

TEST(VfioBenchVm, MmioReadsTheNvmeCapRegister) {
  VFE_ASSERT_OK_AND_ASSIGN(const json r,
                           bench({"mmio", first("nvme"), "--offset", "0", "--width", "64", "--time", "1"}));
  ASSERT_NO_FATAL_FAILURE(check_report(r, "mmio", 1));
  EXPECT_NE(r.at("jobs")[0].at("extra").at("value"), "0x0") << "CAP is never 0";
}

TEST(VfioBenchVm, IrqThroughTheWholePath) {
  VFE_ASSERT_OK_AND_ASSIGN(const json r, bench({"irq", first("nvme"), "--vectors", "2", "--time", "1"}));
  ASSERT_NO_FATAL_FAILURE(check_report(r, "irq", 3));
  const auto& jobs = r.at("jobs");
  EXPECT_EQ(jobs[0].at("ops").get<std::uint64_t>(),
            jobs[1].at("ops").get<std::uint64_t>() + jobs[2].at("ops").get<std::uint64_t>())
      << "every trigger reached its vector's handler";
}

TEST(VfioBenchVm, DmaMapUnmapAndTheEduEngine) {
  // No-IOMMU mode maps only physically contiguous memory: one hugepage at most.
  const bool noiommu = mode() == vfio::IommuMode::noiommu;
  VFE_ASSERT_OK_AND_ASSIGN(const json r, bench({"dma", first("edu"), "--sizes", noiommu ? "4k,2M" : "4k,2M,16M",
                                                 "--edu", "--time", "3"}));
  ASSERT_NO_FATAL_FAILURE(check_report(r, "dma", noiommu ? 3 : 4));
}

// Frames from the first e1000e to the second for a second, in each completion mode: every frame
// timed, none lost or damaged (each would be an error), the devices' counters agreeing.
void nic_frames(const char* completion) {
  const auto nics = devices_of("e1000e");
  VFE_ASSERT_OK_AND_ASSIGN(const json r, bench({"nic", nics.at(0).to_string(), nics.at(1).to_string(), "--size",
                                                 "60-1514", "--time", "1", "--completion", completion}));
  ASSERT_NO_FATAL_FAILURE(check_report(r, "nic", 1));
  const json& job = r.at("jobs")[0];
  EXPECT_EQ(job.at("latency").at("count"), job.at("ops")) << "every frame received is timed";
  EXPECT_EQ(job.at("extra").at("sent"), job.at("ops")) << "all sent frames arrived";
  EXPECT_TRUE(job.at("extra").at("counters_agree").get<bool>());
  EXPECT_EQ(job.at("extra").at("device_rx_frames"), job.at("ops"));
}

TEST(VfioBenchVm, NicPolling) { nic_frames("poll"); }
TEST(VfioBenchVm, NicInterrupt) { nic_frames("irq"); }
TEST(VfioBenchVm, NicAdaptive) { nic_frames("adaptive"); }

// Last: the same NVMe on the kernel's nvme driver, fio with io_uring, the same load as
// vfio-bench's randread; the two rates side by side.
TEST(VfioBenchVm, FioOnTheKernelDriverForComparison) {
  if (!std::filesystem::exists("/opt/vfe/bin/fio")) {
    GTEST_SKIP() << "fio is not in this guest (the no-IOMMU guest's 256 MiB has no room for its libraries)";
  }
  std::vector<std::string> args = {"nvme", first("nvme"), "--rw", "randread", "--bs", "4k", "--qd", "32",
                                   "--time", "2", "--completion", "irq"};
  args.insert(args.end(), kScratch.begin(), kScratch.end());
  VFE_ASSERT_OK_AND_ASSIGN(const json ours, bench(args));
  ASSERT_NO_FATAL_FAILURE(check_report(ours, "nvme", 1));
  ASSERT_EQ(run({"devbind.sh", "unbind", first("nvme")}), 0);
  struct Rebind {  // back to vfio-pci however the test ends
    ~Rebind() { EXPECT_EQ(run({"devbind.sh", "bind", first("nvme")}), 0); }
  } rebind;
  // The kernel numbers its disks in the order its (parallel, on newer kernels) namespace scan
  // finds them, not by NSID: find namespace 1 of the one controller it drives by its nsid file.
  std::string disk;
  for (int i = 0; i < 200 && disk.empty(); ++i) {
    for (const auto& e : std::filesystem::directory_iterator("/sys/block")) {
      const std::string name = e.path().filename().string();
      std::ifstream nsid(e.path() / "nsid");
      std::string id;
      if (name.rfind("nvme", 0) == 0 && (nsid >> id) && id == "1" && std::filesystem::exists("/dev/" + name)) {
        disk = "/dev/" + name;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(disk.empty()) << "the kernel's nvme driver did not take the controller";
  ASSERT_EQ(run({"fio", "--name=cmp", "--filename=" + disk, "--ioengine=io_uring", "--rw=randread", "--bs=4k",
                 "--iodepth=32", "--direct=1", "--time_based", "--runtime=2", "--offset=40M", "--size=16M",
                 "--output-format=json", "--output=/tmp/fio.json"}),
            0);
  std::ifstream in("/tmp/fio.json");
  const json fio = json::parse(in, nullptr, false, true);
  ASSERT_FALSE(fio.is_discarded()) << "fio's JSON";
  const double fio_iops = fio.at("jobs")[0].at("read").at("iops").get<double>();
  const double our_iops = ours.at("jobs")[0].at("ops_per_second").get<double>();
  std::printf("comparison (TCG guest, for correctness only): vfio-bench nvme randread 4k qd32 %.0f IOPS; "
              "fio io_uring on the kernel driver %.0f IOPS; ratio %.2f\n", our_iops, fio_iops, our_iops / fio_iops);
  EXPECT_GT(fio_iops, 0.0);
}

}  // namespace
}  // namespace vfe::vmtest
