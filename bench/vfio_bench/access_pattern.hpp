#pragma once
/// \file
/// Where vfio-bench's random I/Os go, and how fast they may start: a seeded generator, fio's
/// random distributions (uniform, zipf, one hot zone) and a token-bucket rate limiter. All of it is
/// plain arithmetic on the caller's thread: no clock, no allocation after construction.

#include <cstdint>
#include <string>

#include "base/result.hpp"

namespace vfe::bench {

/// A seeded 64-bit generator (SplitMix64: every seed gives a full-period, well-mixed sequence).
/// The same seed gives the same sequence on every machine.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept : state_(seed) {}
  [[nodiscard]] std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1), 53 bits.
  [[nodiscard]] double next_unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [0, n) for n > 0 (the modulo's bias, under n / 2^64, is negligible for any
  /// region a device has).
  [[nodiscard]] std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }

 private:
  std::uint64_t state_;
};

/// fio's `--random_distribution`: which slots of the region random I/O picks, and how often.
struct Distribution {
  enum class Kind { uniform, zipf, zoned };
  Kind kind = Kind::uniform;
  double theta = 0;           ///< zipf: P(rank k) is proportional to k^-theta (0 < theta <= 100)
  double hot_io = 0;          ///< zoned: this fraction of I/Os ...
  double hot_space = 0;       ///< ... goes to this fraction of the region, at its start
};

/// Parses "random" (uniform), "zipf:THETA" or "zoned:IO/SPACE" (percentages: "zoned:90/10" sends
/// 90% of I/Os to the first 10% of the region). An error names what is wrong.
[[nodiscard]] Result<Distribution> parse_distribution(const std::string& text);
/// The text parse_distribution reads, for reports ("zipf:1.2").
[[nodiscard]] std::string to_string(const Distribution& d);

/// Picks slots in [0, slots) by a distribution. Zipf is sampled exactly, to double precision
/// (rejection-inversion, Hörmann and Derflinger 1996: O(1) per pick, no table; for theta > 1
/// ranks holding less than 1e-15 of the mass fold together), rank k at slot k - 1, so the hottest
/// blocks are at the region's start, as are the zoned mode's. Worker-owned: not thread-safe.
class SlotPicker {
 public:
  /// `slots` > 0; `d` as parse_distribution returns it.
  SlotPicker(const Distribution& d, std::uint64_t slots, std::uint64_t seed) noexcept;
  [[nodiscard]] std::uint64_t next() noexcept;
  [[nodiscard]] Rng& rng() noexcept { return rng_; }

 private:
  [[nodiscard]] std::uint64_t next_zipf() noexcept;
  [[nodiscard]] double h(double x) const noexcept;             // x^-theta
  [[nodiscard]] double h_integral(double x) const noexcept;    // its antiderivative, 0 at 1
  [[nodiscard]] double h_integral_inverse(double y) const noexcept;

  Distribution d_;
  std::uint64_t slots_;
  Rng rng_;
  std::uint64_t hot_slots_ = 0;  // zoned
  double h_x1_ = 0, h_n_ = 0;  // zipf: H(1.5) - 1 and H(N + 0.5), the ends of the range drawn from
};

/// Lets `per_second` events through on average, and at most `burst` at once after a pause (a
/// token bucket that starts full). The caller passes the time; nothing here reads a clock.
class RateLimiter {
 public:
  /// `per_second` > 0, `burst` >= 1.
  RateLimiter(double per_second, std::uint64_t burst) noexcept;
  /// True, and one token spent, when an event may start at `now_ns`.
  [[nodiscard]] bool try_take(std::uint64_t now_ns) noexcept;

 private:
  double ns_per_token_;
  double capacity_ns_;          // burst tokens' worth of time
  double credit_ns_;            // time banked, up to capacity_ns_
  std::uint64_t last_ns_ = 0;
  bool started_ = false;
};

}  // namespace vfe::bench
