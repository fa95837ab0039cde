#include "bench/vfio_bench/access_pattern.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace vfe::bench {
namespace {

// A whole string as a finite double, or nothing.
bool parse_number(std::string_view text, double& out) {
  const auto* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && p == end && std::isfinite(out);
}

Result<Distribution> bad_distribution(const std::string& text, const char* why) {
  return Error::invalid("--random-distribution",
                        fmt::format("'{}': {} (random, zipf:THETA with THETA > 0, or zoned:IO/SPACE in percent, "
                                    "e.g. zoned:90/10)", text, why));
}

}  // namespace

Result<Distribution> parse_distribution(const std::string& text) {
  Distribution d;
  if (text == "random" || text == "uniform") {
    return d;
  }
  if (text.rfind("zipf:", 0) == 0) {
    d.kind = Distribution::Kind::zipf;
    if (!parse_number(std::string_view(text).substr(5), d.theta) || d.theta <= 0 || d.theta > 100) {
      return bad_distribution(text, "THETA must be a number above 0 (and at most 100)");
    }
    return d;
  }
  if (text.rfind("zoned:", 0) == 0) {
    d.kind = Distribution::Kind::zoned;
    const std::string_view rest = std::string_view(text).substr(6);
    const auto slash = rest.find('/');
    double io = 0, space = 0;
    if (slash == std::string_view::npos || !parse_number(rest.substr(0, slash), io) ||
        !parse_number(rest.substr(slash + 1), space) || io < 0 || io > 100 || space <= 0 || space > 100) {
      return bad_distribution(text, "IO must be 0 to 100 and SPACE above 0 and at most 100");
    }
    d.hot_io = io / 100;
    d.hot_space = space / 100;
    return d;
  }
  return bad_distribution(text, "unknown distribution");
}

std::string to_string(const Distribution& d) {
  switch (d.kind) {
    case Distribution::Kind::zipf:
      return fmt::format("zipf:{:.6g}", d.theta);
    case Distribution::Kind::zoned:
      return fmt::format("zoned:{:.6g}/{:.6g}", d.hot_io * 100, d.hot_space * 100);
    case Distribution::Kind::uniform:
      break;
  }
  return "random";
}

SlotPicker::SlotPicker(const Distribution& d, std::uint64_t slots, std::uint64_t seed) noexcept
    : d_(d), slots_(std::max<std::uint64_t>(slots, 1)), rng_(seed) {
  if (d_.kind == Distribution::Kind::zoned) {
    const auto hot = static_cast<std::uint64_t>(std::llround(static_cast<double>(slots_) * d_.hot_space));
    hot_slots_ = std::clamp<std::uint64_t>(hot, 1, slots_);
  } else if (d_.kind == Distribution::Kind::zipf) {
    h_x1_ = h_integral(1.5) - 1.0;  // rank 1's interval is [H(1.5) - h(1), H(1.5)], h(1) = 1
    h_n_ = h_integral(static_cast<double>(slots_) + 0.5);
  }
}

std::uint64_t SlotPicker::next() noexcept {
  switch (d_.kind) {
    case Distribution::Kind::zipf:
      return next_zipf() - 1;
    case Distribution::Kind::zoned:
      if (hot_slots_ == slots_ || rng_.next_unit() < d_.hot_io) {
        return rng_.below(hot_slots_);
      }
      return hot_slots_ + rng_.below(slots_ - hot_slots_);
    case Distribution::Kind::uniform:
      break;
  }
  return rng_.below(slots_);
}

// Rejection-inversion (Hörmann and Derflinger, "Rejection-inversion to generate variates from
// monotone discrete distributions", 1996). Rank k owns [H(k + 1/2) - h(k), H(k + 1/2)] of the
// range of H, an interval of length h(k); the intervals are disjoint because h is convex. A u
// drawn uniformly over [H(3/2) - 1, H(N + 1/2)] either lands in the interval of the rank
// nearest H^-1(u), which is then drawn with probability proportional to h(k) = k^-theta, or in
// a gap and is drawn again. The gaps are small: few draws are rejected.
std::uint64_t SlotPicker::next_zipf() noexcept {
  for (;;) {
    const double u = h_n_ + rng_.next_unit() * (h_x1_ - h_n_);
    const double x = h_integral_inverse(u);
    const double rounded = std::clamp(std::floor(x + 0.5), 1.0, static_cast<double>(slots_));
    if (u >= h_integral(rounded + 0.5) - h(rounded)) {
      return static_cast<std::uint64_t>(rounded);
    }
  }
}

double SlotPicker::h(double x) const noexcept { return std::exp(-d_.theta * std::log(x)); }

// H(x) = (x^(1 - theta) - 1) / (1 - theta), or log x where theta is 1; expm1 keeps it exact
// near theta = 1.
double SlotPicker::h_integral(double x) const noexcept {
  const double l = std::log(x);
  const double a = 1.0 - d_.theta;
  return std::abs(a) < 1e-12 ? l : std::expm1(a * l) / a;
}

double SlotPicker::h_integral_inverse(double y) const noexcept {
  const double a = 1.0 - d_.theta;
  if (std::abs(a) < 1e-12) {
    return std::exp(y);
  }
  const double t = std::max(a * y, -1.0 + 1e-15);  // H's range ends there for theta > 1
  return std::exp(std::log1p(t) / a);
}

RateLimiter::RateLimiter(double per_second, std::uint64_t burst) noexcept
    : ns_per_token_(1e9 / per_second),
      capacity_ns_(ns_per_token_ * static_cast<double>(std::max<std::uint64_t>(burst, 1))),
      credit_ns_(capacity_ns_) {}

bool RateLimiter::try_take(std::uint64_t now_ns) noexcept {
  if (started_ && now_ns > last_ns_) {
    credit_ns_ = std::min(capacity_ns_, credit_ns_ + static_cast<double>(now_ns - last_ns_));
  }
  if (!started_ || now_ns > last_ns_) {
    last_ns_ = now_ns;
  }
  started_ = true;
  if (credit_ns_ < ns_per_token_) {
    return false;
  }
  credit_ns_ -= ns_per_token_;
  return true;
}

}  // namespace vfe::bench
