// Host side of the NVMe data-integrity test: after the guest powered off, checks that each disk
// image holds exactly the pattern the guest wrote through the userspace driver, at each region.
// With INDEX "ublk", the image of the namespace vfe-ublk served, and the region the guest wrote
// through the block device. In the guest, `--ublk-pattern` prints what that is to write.
//
// usage: vfe_disk_check IMAGE INDEX [IMAGE INDEX...]   (INDEX: the controller, 0 or 1; or ublk)
//        vfe_disk_check --ublk-pattern                 (the bytes of the ublk region, to stdout)
// Exit 0 when every region matches, 1 on a mismatch, 2 on bad usage or an unreadable image.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "tests/vm/nvme_pattern.hpp"

namespace {

int check(const char* path, unsigned index, std::span<const vfe::vmtest::PatternRegion> regions) {
  std::ifstream image(path, std::ios::binary);
  if (!image) {
    std::fprintf(stderr, "disk check: cannot open %s\n", path);
    return 2;
  }
  int bad = 0;
  std::uint64_t bytes = 0;
  for (const auto& region : regions) {
    std::vector<std::uint64_t> words(region.length / 8);
    image.seekg(static_cast<std::streamoff>(region.offset));
    image.read(reinterpret_cast<char*>(words.data()), static_cast<std::streamsize>(region.length));
    if (!image) {
      std::fprintf(stderr, "disk check: %s: cannot read %llu bytes at %llu\n", path,
                   static_cast<unsigned long long>(region.length), static_cast<unsigned long long>(region.offset));
      return 2;
    }
    for (std::size_t i = 0; i < words.size(); ++i) {
      const std::uint64_t at = region.offset + i * 8;
      if (words[i] != vfe::vmtest::pattern_word(index, at)) {
        std::fprintf(stderr, "disk check: %s: byte %llu differs from what the guest wrote (region at %llu)\n",
                     path, static_cast<unsigned long long>(at), static_cast<unsigned long long>(region.offset));
        ++bad;
        break;
      }
    }
    bytes += region.length;
  }
  if (bad == 0) {
    std::printf("disk check: %s: %zu region(s), %llu bytes exactly as written in the guest\n", path,
                regions.size(), static_cast<unsigned long long>(bytes));
  }
  return bad == 0 ? 0 : 1;
}

// Writes the ublk region's pattern to stdout.
int print_ublk_pattern() {
  const auto& r = vfe::vmtest::kUblkRegion;
  std::vector<std::uint64_t> words(r.length / 8);
  for (std::size_t i = 0; i < words.size(); ++i) {
    words[i] = vfe::vmtest::pattern_word(vfe::vmtest::kUblkPatternIndex, r.offset + i * 8);
  }
  const std::size_t bytes = words.size() * 8;
  return std::fwrite(words.data(), 1, bytes, stdout) == bytes && std::fflush(stdout) == 0 ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--ublk-pattern") == 0) {
    return print_ublk_pattern();
  }
  if (argc < 3 || argc % 2 == 0) {
    std::fprintf(stderr, "usage: %s IMAGE INDEX [IMAGE INDEX...] | --ublk-pattern\n", argv[0]);
    return 2;
  }
  int rc = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const bool ublk = std::strcmp(argv[i + 1], "ublk") == 0;
    const int r = ublk ? check(argv[i], vfe::vmtest::kUblkPatternIndex, {&vfe::vmtest::kUblkRegion, 1})
                       : check(argv[i], static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 10)),
                               vfe::vmtest::kPatternRegions);
    rc = r > rc ? r : rc;
  }
  return rc;
}
