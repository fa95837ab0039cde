// vfio-bench: throughput and latency of devices driven through vfio-engine, and of the engine
// itself. See `vfio-bench --help`, `vfio-bench MODE --help`, and docs/VFIO-BENCH.md.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench/vfio_bench/jobs.hpp"
#include "bench/vfio_bench/plot.hpp"

namespace {

using namespace vfe::bench;

constexpr const char* kDescription =
    "vfio-bench measures userspace drivers built on vfio-engine and the engine itself.\n"
    "\n"
    "Modes:\n"
    "  nvme BDF...  NVMe I/O (fio-like: --rw, --bs, --qd, --workers, --completion, --verify, --rate, ...)\n"
    "  mmio BDF     register read (or, asked for, write) rate and latency on a BAR\n"
    "  irq BDF      interrupt rate and latency: software-triggered vector -> kernel -> eventfd ->\n"
    "               io_uring -> handler on a worker\n"
    "  dma BDF      IOMMU map/unmap rate and latency per size (and the edu device's DMA copy)\n"
    "  nic TX RX    frames from one e1000e to another on the same wire: rate, latency, and every\n"
    "               frame lost, duplicated, reordered or corrupted\n"
    "  loopback     the engine's own cost per I/O against a software device, next to io_uring NOP\n"
    "\n"
    "Devices must be bound to vfio-pci (scripts/devbind.sh bind BDF). nvme writes destroy data\n"
    "in the region tested. Exit status: 0 when every operation succeeded, 1 when one failed\n"
    "(the first errors are printed), 2 for bad usage or a setup failure.";

// What the run is printed and drawn with.
struct OutputOptions {
  bool json = false;
  std::string output;         // "" for stdout
  std::string plot;           // --plot FILE.svg, "" for none
  std::vector<double> percentiles = Report::kDefaultPercentiles;
};

// Writes `text` to `path`; false (and a message) when it cannot.
bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) {
    fmt::print(stderr, "vfio-bench: cannot write {}\n", path);
    return false;
  }
  return true;
}

int finish(vfe::Result<Report> report, const OutputOptions& out_opts) {
  if (!report) {
    fmt::print(stderr, "vfio-bench: {}\n", report.error().message());
    return 2;
  }
  report->percentiles = out_opts.percentiles;
  const bool json = out_opts.json;
  const std::string& output = out_opts.output;

  const std::string text = json ? to_json(*report).dump(2) + "\n" : to_text(*report);
  if (output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else if (!write_file(output, text)) {
    return 2;
  }
  // After the results, so that a plot that cannot be written loses nothing else.
  if (!out_opts.plot.empty() && !write_file(out_opts.plot, to_svg(*report))) {
    return 2;
  }
  if (report->errors() != 0) {
    for (const Job& j : report->jobs) {
      if (j.errors != 0) {
        fmt::print(stderr, "vfio-bench: {}: {} operation(s) failed; first: {}\n", j.name, j.errors, j.first_error);
      }
    }
    return 1;
  }
  return 0;
}

// A size option ("4k", "2M") checked and converted by parse_size.
CLI::Option* add_size(CLI::App& app, const std::string& name, std::uint64_t& target, const std::string& help) {
  return app
      .add_option_function<std::string>(
          name,
          [&target, name](const std::string& text) {
            auto v = parse_size(text);
            if (!v) {
              throw CLI::ValidationError(name, v.error().message());
            }
            target = *v;
          },
          help)
      ->type_name("SIZE");
}

// Everything the command line sets.
struct Cli {
  CommonOptions common;
  OutputOptions out;
  NvmeOptions nvme;
  MmioOptions mmio;
  std::string write_value;
  CLI::Option* write_opt = nullptr;
  IrqOptions irq;
  DmaOptions dma;
  std::vector<std::string> sizes{"4k", "64k", "2M", "64M", "1G"};
  NicOptions nic;
  LoopbackOptions loop;
};

void add_global_options(CLI::App& app, Cli& c) {
  app.add_option("--time", c.common.seconds, "seconds per job")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--ios", c.common.ops, "stop each job after this many operations instead of --time");
  app.add_flag("--json", c.out.json, "print JSON instead of the summary");
  app.add_option("--output", c.out.output, "write the summary or JSON to FILE instead of stdout")->type_name("FILE");
  app.add_option("--plot", c.out.plot,
                 "also draw the run as an SVG (vfio-bench draws it): each job's latency distribution, and "
                 "its rate over time where the mode samples one (nvme)")->type_name("FILE.svg");
  app.add_option_function<std::string>(
         "--percentiles",
         [&c](const std::string& text) {
           auto v = parse_percentiles(text);
           if (!v) {
             throw CLI::ValidationError(v.error().message());  // the message names the option
           }
           c.out.percentiles = *v;
         },
         "latency percentiles to report, comma-separated (default 50,90,99,99.9)")
      ->type_name("LIST");
  app.add_flag("--progress,!--no-progress", c.common.progress, "a progress line once a second (default: on a terminal)");
  app.add_option("--iommu-mode", c.common.mode, "type1, iommufd or noiommu (default: $VFE_IOMMU_MODE, else the best)");
}

CLI::App* add_nvme(CLI::App& app, Cli& c) {
  auto* cmd = app.add_subcommand("nvme", "NVMe I/O on one or several controllers");
  cmd->add_option("BDF", c.nvme.bdfs, "controllers, bound to vfio-pci")->required();
  cmd->add_option("--rw", c.nvme.rw,
                       "read, write, randread, randwrite, rw (sequential mix), randrw, trim, randtrim "
                       "(deallocate --bs at a time), writezeroes, randwritezeroes, or flush")
      ->capture_default_str()
      ->check(CLI::IsMember({"read", "write", "randread", "randwrite", "rw", "randrw", "trim", "randtrim",
                             "writezeroes", "randwritezeroes", "flush"}));
  cmd->add_option("--rwmixread", c.nvme.rwmixread, "percent reads in rw and randrw")
      ->capture_default_str()->check(CLI::Range(0, 100));
  add_size(*cmd, "--bs", c.nvme.bs, "bytes per I/O, a multiple of the block size (default 4k)");
  cmd->add_option("--qd", c.nvme.qd, "I/Os in flight per worker")->capture_default_str()->check(CLI::Range(1, 4095));
  cmd->add_option("--workers", c.nvme.workers, "workers (queues) per controller, on the controller's NUMA node")
      ->capture_default_str()->check(CLI::Range(1, 64));
  cmd->add_option("--completion,--mode", c.nvme.completion, "poll, irq or adaptive")
      ->capture_default_str()->check(CLI::IsMember({"poll", "irq", "adaptive"}));
  cmd->add_option("--nsid", c.nvme.nsids,
                       "namespaces, comma-separated: each is a job of its own, with --workers queues of its own")
      ->delimiter(',')->capture_default_str();
  add_size(*cmd, "--offset", c.nvme.offset, "first byte of the region tested (default 0)");
  add_size(*cmd, "--size", c.nvme.size, "bytes of the region (default: to the namespace end)");
  cmd->add_option("--seed", c.nvme.seed, "seed of the random offsets, the read/write mix and the --verify pattern "
                                            "(same seed, same LBA sequence); the run's k-th worker draws from "
                                            "SEED + k")->capture_default_str();
  cmd->add_option("--random-distribution", c.nvme.distribution,
                       "where random I/O goes: random (uniform), zipf:THETA (rank k drawn in proportion to "
                       "k^-THETA, hottest at the region's start) or zoned:IO/SPACE (IO percent of I/Os to the "
                       "first SPACE percent of the region)")->capture_default_str();
  cmd->add_option("--rate", c.nvme.rate, "cap on I/Os per second of each job (a namespace of a controller), shared by its "
                                           "workers (0: none)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--ramp-time", c.nvme.ramp_seconds, "seconds of I/O before counting starts (with --time)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_flag("--verify", c.nvme.verify,
                     "writes carry a pattern of the LBA and --seed, and every read is checked against it "
                     "(off the I/O workers, on threads of the controller's NUMA node); mismatches are errors, "
                     "reported by LBA. Reads expect the pattern: write the region with the same --seed first");
  cmd->add_flag("!--no-irq-masking", c.nvme.mask_interrupts,
                     "adaptive mode: leave each queue's MSI-X vector unmasked while its worker polls");
  cmd->add_flag("!--no-shadow-doorbells", c.nvme.shadow_doorbells,
                     "write every doorbell to its register, even where the controller offers shadow doorbells");
  return cmd;
}

CLI::App* add_mmio(CLI::App& app, Cli& c) {
  auto* cmd = app.add_subcommand("mmio", "register access rate and latency on a BAR");
  cmd->add_option("BDF", c.mmio.bdf, "device, bound to vfio-pci")->required();
  cmd->add_option("--bar", c.mmio.bar, "BAR index")->capture_default_str()->check(CLI::Range(0, 5));
  cmd->add_option("--offset", c.mmio.offset, "register offset (default 0: for NVMe, the read-only CAP)");
  cmd->add_option("--width", c.mmio.width, "8, 16, 32 or 64 bits")->capture_default_str()
      ->check(CLI::IsMember({8, 16, 32, 64}));
  c.write_opt = cmd->add_option("--write", c.write_value,
                                    "write this value instead of reading (only with an explicit --offset)");
  return cmd;
}

CLI::App* add_irq(CLI::App& app, Cli& c) {
  auto* cmd = app.add_subcommand("irq", "interrupt rate and latency through the whole path");
  cmd->add_option("BDF", c.irq.bdf, "device with MSI-X or MSI, bound to vfio-pci")->required();
  cmd->add_option("--vectors", c.irq.vectors, "vectors, each on its own worker")->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--completion,--mode", c.irq.completion, "irq (workers sleep) or poll")->capture_default_str()
      ->check(CLI::IsMember({"irq", "poll"}));
  return cmd;
}

CLI::App* add_dma(CLI::App& app, Cli& c) {
  auto* cmd = app.add_subcommand("dma", "IOMMU map/unmap rate and latency per size");
  cmd->add_option("BDF", c.dma.bdf, "device whose IOMMU domain is used, bound to vfio-pci")->required();
  cmd->add_option("--sizes", c.sizes, "mapping sizes")->delimiter(',')->capture_default_str();
  cmd->add_flag("--edu", c.dma.edu, "also time the edu device's DMA engine (BDF must be edu)");
  return cmd;
}

CLI::App* add_nic(CLI::App& app, Cli& c) {
  auto* cmd = app.add_subcommand("nic", "frames between two e1000e NICs on one wire");
  cmd->add_option("TX_BDF", c.nic.tx_bdf, "the sending NIC, bound to vfio-pci")->required();
  cmd->add_option("RX_BDF", c.nic.rx_bdf, "the receiving NIC, bound to vfio-pci")->required();
  cmd->add_option("--size", c.nic.size, "frame length without FCS: N or MIN-MAX within 60..1514")
      ->capture_default_str();
  cmd->add_option("--window", c.nic.window, "frames in flight at most")->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--batch", c.nic.batch, "frames per transmit batch")->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--completion,--mode", c.nic.completion, "poll, irq or adaptive")->capture_default_str()
      ->check(CLI::IsMember({"poll", "irq", "adaptive"}));
  return cmd;
}

CLI::App* add_loopback(CLI::App& app, Cli& c) {
  auto* cmd = app.add_subcommand("loopback", "the engine's per-I/O cost with a software device");
  cmd->add_option("--qd", c.loop.qd, "requests in flight")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--completion,--mode", c.loop.completion, "poll, irq or adaptive")->capture_default_str()
      ->check(CLI::IsMember({"poll", "irq", "adaptive"}));
  cmd->add_option("--latency-sample", c.loop.latency_sample, "time one request in N")->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  return cmd;
}

// mmio --write VALUE: only with an explicit --offset, and a value of the width.
int run_mmio_command(Cli& c, const CLI::App& cmd) {
  if (*c.write_opt) {
    if (cmd.count("--offset") == 0) {
      fmt::print(stderr, "vfio-bench: mmio --write needs an explicit --offset (writing registers has effects)\n");
      return 2;
    }
    char* end = nullptr;
    errno = 0;
    c.mmio.value = std::strtoull(c.write_value.c_str(), &end, 0);
    const bool fits = c.mmio.width == 64 || c.mmio.value < (1ULL << c.mmio.width);
    if (c.write_value.empty() || c.write_value[0] == '-' || *end != '\0' || errno != 0 || !fits) {
      fmt::print(stderr, "vfio-bench: mmio --write '{}' is not a {}-bit value (decimal or 0x hex)\n",
                 c.write_value, c.mmio.width);
      return 2;
    }
    c.mmio.write = true;
  }
  return finish(run_mmio(c.common, c.mmio), c.out);
}

int run_dma_command(Cli& c) {
  for (const auto& s : c.sizes) {
    auto v = parse_size(s);
    if (!v) {
      fmt::print(stderr, "vfio-bench: {}\n", v.error().message());
      return 2;
    }
    c.dma.sizes.push_back(*v);
  }
  return finish(run_dma(c.common, c.dma), c.out);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "vfio-bench"};
  app.require_subcommand(1);
  app.fallthrough();
  Cli c;
  c.common.progress = ::isatty(STDERR_FILENO) == 1;
  add_global_options(app, c);
  const CLI::App* nvme = add_nvme(app, c);
  const CLI::App* mmio = add_mmio(app, c);
  const CLI::App* irq = add_irq(app, c);
  const CLI::App* dma = add_dma(app, c);
  const CLI::App* nic = add_nic(app, c);
  add_loopback(app, c);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is success; any usage error is status 2
  }
  if (*nvme) {
    return finish(run_nvme(c.common, c.nvme), c.out);
  }
  if (*mmio) {
    return run_mmio_command(c, *mmio);
  }
  if (*irq) {
    return finish(run_irq(c.common, c.irq), c.out);
  }
  if (*nic) {
    return finish(run_nic(c.common, c.nic), c.out);
  }
  if (*dma) {
    return run_dma_command(c);
  }
  return finish(run_loopback(c.common, c.loop), c.out);
}
