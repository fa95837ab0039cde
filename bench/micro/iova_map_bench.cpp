// vaddr -> IOVA translation: vfio-engine's IovaMap (a 4-level radix table, lock-free reads)
// against std::map (an ordered search, what a simple driver would write), with 1 GiB to 64 GiB
// registered in 2 MiB blocks, looked up hot (one address over and over) and cold (random
// addresses over the whole registration). Nothing is mapped for real: only the tables are
// measured.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>
#include <vector>

#include "dma/iova_map.hpp"

namespace {
constexpr std::uint64_t kBlock = 2ULL << 20;
constexpr std::uint64_t kBase = 0x7f0000000000ULL;  // user virtual addresses, 2 MiB aligned

struct Registered {
  vfe::dma::IovaMap map;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> tree;  // va -> (size, iova)
  std::vector<const void*> probes;

  explicit Registered(std::uint64_t gib) {
    const std::uint64_t blocks = gib * 512;
    for (std::uint64_t i = 0; i < blocks; ++i) {
      const std::uint64_t va = kBase + i * kBlock;
      // Not contiguous in IOVA: each block its own registration, as separate buffers would be.
      const std::uint64_t iova = (blocks - i) * kBlock;
      static_cast<void>(map.add(reinterpret_cast<const void*>(va), kBlock, vfe::dma::Iova{iova}));
      tree.emplace(va, std::make_pair(kBlock, iova));
    }
    std::mt19937_64 rng(7);
    for (int i = 0; i < 4096; ++i) {
      probes.push_back(reinterpret_cast<const void*>(kBase + rng() % (blocks * kBlock)));
    }
  }
};

Registered& registered(std::uint64_t gib) {
  static std::map<std::uint64_t, std::unique_ptr<Registered>> cache;
  auto& r = cache[gib];
  if (!r) {
    r = std::make_unique<Registered>(gib);
  }
  return *r;
}

std::uint64_t tree_translate(const Registered& r, const void* p) {
  const auto va = reinterpret_cast<std::uint64_t>(p);
  auto it = r.tree.upper_bound(va);
  if (it == r.tree.begin()) {
    return 0;
  }
  --it;
  return va - it->first < it->second.first ? it->second.second + (va - it->first) : 0;
}

void BM_Translate_IovaMap(benchmark::State& state) {
  const auto& r = registered(static_cast<std::uint64_t>(state.range(0)));
  const bool hot = state.range(1) == 1;
  std::size_t i = 0;
  for (auto _ : state) {
    const void* p = r.probes[hot ? 0 : (i++ & 4095)];
    benchmark::DoNotOptimize(r.map.translate_or(p, vfe::dma::Iova{0}));
  }
}

void BM_Translate_StdMap(benchmark::State& state) {
  const auto& r = registered(static_cast<std::uint64_t>(state.range(0)));
  const bool hot = state.range(1) == 1;
  std::size_t i = 0;
  for (auto _ : state) {
    const void* p = r.probes[hot ? 0 : (i++ & 4095)];
    benchmark::DoNotOptimize(tree_translate(r, p));
  }
}

}  // namespace

// Args: GiB registered, hot (1) or cold (0).
BENCHMARK(BM_Translate_IovaMap)->ArgsProduct({{1, 8, 64}, {1, 0}});
BENCHMARK(BM_Translate_StdMap)->ArgsProduct({{1, 8, 64}, {1, 0}});
BENCHMARK_MAIN();
