// Host side of the NVMe data-integrity test: after the guest powered off, checks that each disk
// image holds exactly the pattern the guest wrote through the userspace driver, at each region.
//
// usage: vfe_disk_check IMAGE INDEX [IMAGE INDEX...]   (INDEX: the controller, 0 or 1)
// Exit 0 when every region matches, 1 on a mismatch, 2 on bad usage or an unreadable image.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tests/vm/nvme_pattern.hpp"

namespace {

int check(const char* path, unsigned index) {
  std::ifstream image(path, std::ios::binary);
  if (!image) {
    std::fprintf(stderr, "disk check: cannot open %s\n", path);
    return 2;
  }
  int bad = 0;
  std::uint64_t bytes = 0;
  for (const auto& region : vfe::vmtest::kPatternRegions) {
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
    std::printf("disk check: %s: %zu regions, %llu bytes exactly as written in the guest\n", path,
                vfe::vmtest::kPatternRegions.size(), static_cast<unsigned long long>(bytes));
  }
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc % 2 == 0) {
    std::fprintf(stderr, "usage: %s IMAGE INDEX [IMAGE INDEX...]\n", argv[0]);
    return 2;
  }
  int rc = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const int r = check(argv[i], static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 10)));
    rc = r > rc ? r : rc;
  }
  return rc;
}
