#include "bench/vfio_bench/plot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string_view>

namespace vfe::bench {
namespace {

constexpr double kWidth = 1180;  // the legend, right of the plots, holds long job names
constexpr double kLeft = 90;     // room for the y labels
constexpr double kPlotWidth = 600;
constexpr double kPanelHeight = 280;
constexpr double kTop = 50;
constexpr double kGap = 90;      // between the panels: the x labels and the next title
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* color(std::size_t job) { return kColors[job % std::size(kColors)]; }

// The plot area of a panel, and the value ranges it shows.
struct Panel {
  double top;
  double x_lo, x_hi;  // for a log axis, log10 of the values
  double y_lo, y_hi;
  bool x_log;

  [[nodiscard]] double px(double x) const {
    const double v = x_log ? std::log10(std::max(x, 1.0)) : x;
    return kLeft + (x_hi > x_lo ? (v - x_lo) / (x_hi - x_lo) : 0.5) * kPlotWidth;
  }
  [[nodiscard]] double py(double y) const {
    return top + kPanelHeight - (y_hi > y_lo ? (y - y_lo) / (y_hi - y_lo) : 0.5) * kPanelHeight;
  }
};

std::string text(double x, double y, std::string_view s, const char* anchor = "middle", int size = 12) {
  return fmt::format(R"svg(<text x="{:.1f}" y="{:.1f}" font-size="{}" text-anchor="{}">{}</text>)svg"
                     "\n", x, y, size, anchor, escape(s));
}

// The box, the title, the axis names, and the ticks: decades on a log x axis, else five steps.
std::string frame(const Panel& p, std::string_view title, std::string_view x_name, std::string_view y_name,
                  std::string (*x_label)(double)) {
  std::string out = fmt::format(R"svg(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#444"/>)svg"
                                "\n", kLeft, p.top, kPlotWidth, kPanelHeight);
  out += text(kLeft + kPlotWidth / 2, p.top - 14, title, "middle", 15);
  out += text(kLeft + kPlotWidth / 2, p.top + kPanelHeight + 38, x_name);
  out += fmt::format(R"svg(<text x="20" y="{:.1f}" font-size="12" text-anchor="middle" transform="rotate(-90 20 {:.1f})">{}</text>)svg"
                     "\n", p.top + kPanelHeight / 2, p.top + kPanelHeight / 2, escape(y_name));
  for (int i = 0; i <= 4; ++i) {
    const double y = p.y_lo + (p.y_hi - p.y_lo) * i / 4;
    out += text(kLeft - 6, p.py(y) + 4, y >= 100 ? fmt::format("{:.0f}", y) : fmt::format("{:.3g}", y), "end", 11);
  }
  const int steps = p.x_log ? static_cast<int>(p.x_hi - p.x_lo) : 4;
  for (int i = 0; i <= steps; ++i) {
    const double x = p.x_log ? std::pow(10.0, p.x_lo + i) : p.x_lo + (p.x_hi - p.x_lo) * i / steps;
    out += fmt::format(R"svg(<line x1="{0:.1f}" y1="{1:.1f}" x2="{0:.1f}" y2="{2:.1f}" stroke="#ddd"/>)svg"
                       "\n", p.px(x), p.top, p.top + kPanelHeight);
    out += text(p.px(x), p.top + kPanelHeight + 16, x_label(x), "middle", 11);
  }
  return out;
}

std::string polyline(std::string_view cls, std::size_t job, const std::string& points) {
  return fmt::format(R"svg(<polyline class="{}" data-job="{}" fill="none" stroke="{}" stroke-width="1.6" points="{}"/>)svg"
                     "\n", cls, job, color(job), points);
}

std::string latency_panel(const Report& r, double top) {
  std::uint64_t lo = ~0ULL, hi = 1;
  for (const Job& j : r.jobs) {
    if (j.latency.count() != 0) {
      lo = std::min(lo, std::max<std::uint64_t>(j.latency.min(), 1));
      hi = std::max(hi, j.latency.max());
    }
  }
  Panel p{top, 0, 1, 0, 100, true};
  if (lo != ~0ULL) {
    p.x_lo = std::floor(std::log10(static_cast<double>(lo)));
    p.x_hi = std::max(p.x_lo + 1, std::ceil(std::log10(static_cast<double>(hi) + 1)));
  }
  std::string out = frame(p, "Latency distribution", "latency (log scale)", "% of operations at or below",
                          [](double ns) { return format_ns(ns); });
  for (std::size_t i = 0; i < r.jobs.size(); ++i) {
    const Histogram& h = r.jobs[i].latency;
    std::string points;
    std::uint64_t below = 0;
    for (const auto& b : h.nonempty_buckets()) {
      below += b.count;
      const double pct = 100.0 * static_cast<double>(below) / static_cast<double>(h.count());
      points += fmt::format("{:.1f},{:.1f} ", p.px(static_cast<double>(std::min(b.high, h.max()))), p.py(pct));
    }
    if (!points.empty()) {
      out += polyline("latency", i, points);
    }
  }
  return out;
}

std::string rate_panel(const Report& r, double top) {
  double end = 0, peak = 0;
  for (const Job& j : r.jobs) {
    for (const auto& pt : j.timeline) {
      end = std::max(end, pt.seconds);
      peak = std::max(peak, pt.ops_per_second);
    }
  }
  const Panel p{top, 0, end > 0 ? end : 1, 0, peak > 0 ? peak * 1.1 : 1, false};
  std::string out = frame(p, "Operations per second over time", "seconds", "operations per second",
                          [](double s) { return fmt::format("{:.3g}", s); });
  if (end == 0) {
    return out + text(kLeft + kPlotWidth / 2, top + kPanelHeight / 2,
                      "(no timeline: the mode records none, or the run was shorter than an interval)");
  }
  for (std::size_t i = 0; i < r.jobs.size(); ++i) {
    std::string points;
    for (const auto& pt : r.jobs[i].timeline) {
      points += fmt::format("{:.1f},{:.1f} ", p.px(pt.seconds), p.py(pt.ops_per_second));
    }
    if (!points.empty()) {
      out += polyline("rate", i, points);
    }
  }
  return out;
}

std::string legend(const Report& r) {
  std::string out;
  const double x = kLeft + kPlotWidth + 24;
  for (std::size_t i = 0; i < r.jobs.size(); ++i) {
    const double y = kTop + 10 + 22.0 * static_cast<double>(i);
    out += fmt::format(R"svg(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="{}" stroke-width="3"/>)svg"
                       "\n", x, y, x + 22, y, color(i));
    out += text(x + 28, y + 4, r.jobs[i].name, "start", 11);
  }
  return out;
}

}  // namespace

std::string to_svg(const Report& report) {
  const double height = kTop + 2 * kPanelHeight + kGap + 60;
  std::string out = fmt::format(R"svg(<?xml version="1.0" encoding="UTF-8"?>)svg"
                                "\n" R"svg(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="sans-serif">)svg"
                                "\n", kWidth, height, kWidth, height);
  out += fmt::format(R"svg(<rect width="100%" height="100%" fill="white"/>)svg" "\n");
  out += text(kWidth / 2, 22, fmt::format("vfio-bench {}", report.mode), "middle", 17);
  out += latency_panel(report, kTop + 10);
  out += rate_panel(report, kTop + 10 + kPanelHeight + kGap);
  out += legend(report);
  return out + "</svg>\n";
}

}  // namespace vfe::bench
