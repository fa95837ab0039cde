// Parses the PCI address given on the command line with the installed library; exits 0 when it
// is valid and prints the canonical form.
#include <cstdio>

#include "vfio/bdf.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s BDF\n", argv[0]);
    return 2;
  }
  const auto bdf = vfe::vfio::Bdf::parse(argv[1]);
  if (!bdf) {
    std::fprintf(stderr, "%s\n", bdf.error().message().c_str());
    return 1;
  }
  std::printf("%s\n", bdf->to_string().c_str());
  return 0;
}
