// nic_loopback: the example NIC driver. It opens two Intel 82574L (e1000e) NICs that share a wire
// (in the test rig, a QEMU hub), sends sequence-numbered, checksummed frames from the first and
// receives them on the second, and reports what was lost, duplicated, reordered or corrupted, the
// rate, and whether the NICs' own statistics counters agree with the driver's counts.
//
//   nic_loopback 0000:00:04.0 0000:00:05.0 --frames 10000 --size 60-1514 --completion interrupt
//
// Read it from top to bottom to see how a NIC driver sits on vfio-engine: a Nic (the device, its
// BAR, DMA space, rings and packet buffers), a Worker (a thread with an io_uring), and a handler
// that the worker calls with received frames (drivers/e1000e/loopback.cpp has the traffic).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "drivers/e1000e/loopback.hpp"
#include "drivers/e1000e/nic.hpp"
#include "engine/worker.hpp"
#include "vfio/iommu_mode.hpp"

namespace {

using namespace vfe;

struct Options {
  std::string tx_bdf, rx_bdf;
  std::uint64_t frames = 10'000;
  std::string size = "60-1514";
  std::string completion = "polling";
  std::string iommu_mode = "auto";
  std::uint32_t window = 256;
  bool promiscuous = false;
};

int fail(const std::string& message, int code = 1) {
  fmt::print(stderr, "nic_loopback: {}\n", message);
  return code;
}

// What arrived, how fast, and whether the NICs' counters agree; true when all is well.
bool print_report(const e1000e::LoopbackReport& r) {
  fmt::print("sent {} frames ({} bytes), received {}: lost {}, duplicated {}, reordered {}, corrupt {}, "
             "foreign {}; the full transmit ring pushed back {} times\n",
             r.sent, r.sent_bytes, r.received, r.lost, r.duplicates, r.reordered, r.corrupt,
             r.foreign, r.backpressure);
  if (r.seconds > 0) {
    fmt::print("rate: {:.0f} frames/s, {:.2f} Mbit/s over {:.3f} s\n", static_cast<double>(r.received) / r.seconds,
               static_cast<double>(r.received_bytes) * 8 / r.seconds / 1e6, r.seconds);
  }
  fmt::print("device counters: tx GPTC {} GOTC {}, rx GPRC {} GORC {}; driver: tx {} frames {} bytes, rx {} "
             "frames {} bytes: {}\n",
             r.device_tx_frames, r.device_tx_bytes, r.device_rx_frames, r.device_rx_bytes, r.ring_tx_frames,
             r.ring_tx_bytes, r.ring_rx_frames, r.ring_rx_bytes, r.counters_agree() ? "agree" : "DISAGREE");
  const bool pass = r.clean() && r.counters_agree();
  fmt::print("{}\n", pass ? "PASS" : "FAIL");
  return pass;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Example e1000e driver on vfio-engine: send numbered, checksummed frames from one\n"
               "82574L to another on the same wire and check every frame that arrives.",
               "nic_loopback"};
  app.add_option("TX_BDF", opt.tx_bdf, "PCI address of the sending NIC, bound to vfio-pci")->required();
  app.add_option("RX_BDF", opt.rx_bdf, "PCI address of the receiving NIC, bound to vfio-pci")->required();
  app.add_option("--frames", opt.frames, "frames to send")->capture_default_str()->check(CLI::Range(1, 1 << 30));
  app.add_option("--size", opt.size, "frame length without FCS: N or MIN-MAX (60..1514)")->capture_default_str();
  app.add_option("--completion", opt.completion, "polling, interrupt or adaptive")
      ->capture_default_str()
      ->check(CLI::IsMember({"polling", "interrupt", "adaptive"}));
  app.add_option("--window", opt.window, "frames in flight at most")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--iommu-mode", opt.iommu_mode, "type1, iommufd, noiommu or auto")->capture_default_str();
  app.add_flag("--promiscuous", opt.promiscuous, "receive every frame, not only those to the NIC's address");
  CLI11_PARSE(app, argc, argv);

  const auto lengths = e1000e::parse_frame_lengths(opt.size);
  if (!lengths) {
    return fail(lengths.error().message(), 2);
  }
  e1000e::NicOptions nopt;
  nopt.promiscuous = opt.promiscuous;
  if (opt.iommu_mode != "auto") {
    auto m = vfio::parse_iommu_mode(opt.iommu_mode);
    if (!m) {
      return fail(m.error().message(), 2);
    }
    nopt.mode = *m;
  }

  // 1. Bring both NICs up: reset, station address, rings and buffers, link.
  auto tx = e1000e::Nic::create(opt.tx_bdf, nopt);
  if (!tx) {
    return fail(tx.error().message());
  }
  auto rx = e1000e::Nic::create(opt.rx_bdf, nopt);
  if (!rx) {
    return fail(rx.error().message());
  }
  fmt::print("tx {} ({}) -> rx {} ({}), links {} / {}\n", opt.tx_bdf, (*tx)->mac_string(), opt.rx_bdf,
             (*rx)->mac_string(), (*tx)->link_up() ? "up" : "down", (*rx)->link_up() ? "up" : "down");

  // 2. One worker runs both NICs: it polls them, or sleeps until a receive or transmit vector
  //    fires, or both (adaptive).
  const engine::CompletionMode completion = *engine::parse_completion_mode(opt.completion);
  engine::WorkerOptions wopt;
  wopt.mode = engine::worker_mode_for(completion);
  wopt.name = "nic_loopback";
  auto worker = engine::Worker::start(wopt);
  if (!worker) {
    return fail(worker.error().message());
  }

  // 3. The traffic: the worker builds frames into the sender's packet buffers, hands them to its
  //    transmit ring in batches, and checks each frame the receiver's ring hands back.
  e1000e::LoopbackOptions lopt;
  lopt.frames = opt.frames;
  lopt.min_length = lengths->first;
  lopt.max_length = lengths->second;
  lopt.window = opt.window;
  e1000e::Loopback run(**tx, **rx, lopt);
  fmt::print("sending {} frames of {} bytes, {} in flight at most, {} completion\n", opt.frames, opt.size,
             opt.window, opt.completion);
  if (auto r = run.start(**worker, completion); !r) {
    return fail(r.error().message());
  }
  auto report = run.finish();  // waits until all arrived, or nothing has for 2 s
  if (!report) {
    return fail(report.error().message());
  }
  return print_report(*report) ? 0 : 1;
}
