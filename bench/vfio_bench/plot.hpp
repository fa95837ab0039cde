#pragma once
/// \file
/// `--plot FILE.svg`: a picture of a vfio-bench run, drawn by vfio-bench itself (no plotting
/// program needed): each job's latency distribution and its rate over time, as an SVG that a
/// browser or an image viewer opens.

#include <string>

#include "bench/vfio_bench/report.hpp"

namespace vfe::bench {

/// The report as a standalone SVG document with two panels. Top: the latency distribution, one
/// line per job: the percent of operations that took at most x nanoseconds (x on a log scale),
/// one point per non-empty histogram bucket at its upper edge. Bottom: operations per second
/// over time, one line per job with a timeline (one point per sampling interval); a job without
/// one is left out of that panel, and a report without any says so in it. Each line is a
/// `<polyline class="latency|rate" data-job="N">`; job names are escaped.
[[nodiscard]] std::string to_svg(const Report& report);

}  // namespace vfe::bench
