// Standalone SVG line charts for the plots a pipeline run writes at the end of each stage
// (reward / accuracy / KL / response length per step, ...). No dependencies: the output is a
// complete SVG 1.1 document that browsers and image viewers open directly.
//
// Every function here is pure: no global state, no I/O, safe to call from any number of threads
// at once. Degenerate inputs (no series, no points, one point, all-equal values, NaN/inf,
// mismatched x/y lengths, huge values, odd bytes in text) give a valid SVG, never a crash, an
// exception or "nan"/"inf" in the output.
#pragma once

#include <span>
#include <string>
#include <vector>

namespace reason {

// One line. Points are (x[i], y[i]) for i < min(x.size(), y.size()), drawn in the order given;
// when x is empty, x is the index 0, 1, 2, ... of y. A point whose x or y is NaN or infinite is
// a gap: the line stops before it and resumes after it.
struct PlotSeries {
  std::string name;  // legend entry; "series N" (1-based) when empty
  std::vector<double> x, y;
};

struct Plot {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
};

// One chart as an SVG document of width x height pixels (each clamped to [160, 20000]).
//
// Axes: each axis spans from a tick at or below the smallest finite value to a tick at or above
// the largest, ticks being consecutive multiples of a "nice" step (1, 2 or 5 x 10^k), about one
// per 45 px of height and 70 px of width (fewer when the x labels would overlap). Labels show
// the digits down to the step, the same on every tick: fixed notation when the largest tick is
// in [1e-4, 1e6) ("0.0", "0.5", "1.0"; "1000", "1500"), else scientific ("5.0e+05", "1.0e+06";
// 0 is "0"). An axis without spread (one point, all-equal values, or a spread below 1e-9 of
// their magnitude) is widened around its value v by |v|/10 each way (by 1 when |v| <= 1e-200);
// an axis without data is [0, 1]. Values beyond +-1e300 are clamped there. Light grid lines at
// every tick.
// Series: each series is drawn as <polyline> elements, one per run of consecutive finite
// points (so a series without gaps is exactly one polyline with all of its points); a run of a
// single point is a <circle>; a series of at most 30 finite points also gets a dot at every
// point. Nothing is decimated. Colours cycle through a fixed 10-colour palette (matplotlib's
// tab10), dashed on the second cycle and later. A chart with no finite point says "no data".
// Legend (line sample + name) when there is more than one series, in the corner of the plot
// area that covers the fewest points. Title centred at the top, x label below, y label rotated
// on the left. Text is XML-escaped; control characters and invalid UTF-8 become U+FFFD.
// Machine-readable hooks (used by the tests): tick labels are <text class="xtick"> /
// <text class="ytick">, each series is a <g class="series">.
std::string render_svg(const Plot& plot, int width = 640, int height = 400);

// Several charts in one SVG document: a grid of `columns` columns (clamped to
// [1, plots.size()]; 1 = stacked vertically), filled row by row, each cell cell_width x
// cell_height pixels (clamped as above) rendered as by render_svg. No plots: one empty cell
// saying "no data".
std::string render_svg_grid(std::span<const Plot> plots, int columns = 2, int cell_width = 480,
                            int cell_height = 320);

}  // namespace reason
