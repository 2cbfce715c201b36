#include "rl/svg_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace reason {
namespace {

constexpr std::array<const char*, 10> kPalette = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr int kMinSide = 160;
constexpr int kMaxSide = 20000;
constexpr double kTickFont = 11, kLabelFont = 12, kTitleFont = 14, kLegendFont = 11;
constexpr double kCharWidth = 0.6;        // average glyph width / font size (sans-serif estimate)
constexpr double kValueLimit = 1e300;     // data is clamped here so that differences stay finite
constexpr size_t kMarkerMaxPoints = 30;   // series with at most this many points get dot markers
constexpr size_t kMaxLegendChars = 40;

// ---------------------------------------------------------------------------------------------
// Text

// Decodes `text` as UTF-8; invalid sequences, control characters (other than tab) and code
// points XML 1.0 forbids become U+FFFD. Returns the code points.
std::vector<char32_t> decode_text(std::string_view text) {
  std::vector<char32_t> cps;
  cps.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    char32_t cp = 0xFFFD;
    size_t len = 1;
    if (b0 < 0x80) {
      cp = b0;
    } else {
      int extra = 0;
      char32_t min = 0;
      if ((b0 & 0xE0) == 0xC0) {
        extra = 1, cp = b0 & 0x1F, min = 0x80;
      } else if ((b0 & 0xF0) == 0xE0) {
        extra = 2, cp = b0 & 0x0F, min = 0x800;
      } else if ((b0 & 0xF8) == 0xF0) {
        extra = 3, cp = b0 & 0x07, min = 0x10000;
      }
      // A truncated sequence (lead byte and the continuation bytes that are there) is one U+FFFD.
      size_t valid = 0;
      bool ok = extra > 0;
      for (int k = 1; ok && k <= extra; ++k) {
        const size_t at = i + static_cast<size_t>(k);
        if (at >= text.size() || (static_cast<unsigned char>(text[at]) & 0xC0) != 0x80) {
          ok = false;
        } else {
          cp = (cp << 6) | (static_cast<unsigned char>(text[at]) & 0x3F);
          ++valid;
        }
      }
      if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) {
        cp = 0xFFFD;  // overlong, surrogate or out of range: the whole sequence is one U+FFFD
      } else if (!ok) {
        cp = 0xFFFD;
      }
      len = 1 + valid;
    }
    if ((cp < 0x20 && cp != '\t') || cp == 0xFFFE || cp == 0xFFFF) cp = 0xFFFD;
    if (cp == '\t') cp = ' ';
    cps.push_back(cp);
    i += len;
  }
  return cps;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Text ready to sit between tags or in an attribute: sanitized, at most max_chars code points
// (longer text ends with an ellipsis), XML-escaped. `chars` receives the shown length.
std::string xml_text(std::string_view text, size_t max_chars = SIZE_MAX, size_t* chars = nullptr) {
  std::vector<char32_t> cps = decode_text(text);
  if (cps.size() > max_chars && max_chars > 0) {
    cps.resize(max_chars - 1);
    cps.push_back(0x2026);
  }
  if (chars) *chars = cps.size();
  std::string out;
  out.reserve(cps.size() + 8);
  for (char32_t cp : cps) {
    switch (cp) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: append_utf8(out, cp);
    }
  }
  return out;
}

double text_width(size_t chars, double font_size) { return static_cast<double>(chars) * font_size * kCharWidth; }

// A coordinate: finite by construction, printed with 2 decimals; anything else becomes 0.
std::string num(double v) {
  if (!std::isfinite(v)) v = 0;
  if (std::fabs(v) < 0.005) v = 0;  // no "-0.00"
  return fmt::format("{:.2f}", v);
}

// ---------------------------------------------------------------------------------------------
// Axes

struct Axis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;
  std::vector<std::string> labels;
  size_t max_label_chars = 0;
};

// Ticks at multiples of a nice step (1, 2, 5 x 10^k) about `target` of them, covering [lo, hi]
// (lo < hi, both finite, hi - lo >= 1e-250 and not negligible against their magnitude).
Axis nice_axis(double lo, double hi, int target) {
  target = std::max(target, 1);
  const double raw = (hi - lo) / target;
  int k = static_cast<int>(std::floor(std::log10(raw)));
  double mant = raw / std::pow(10.0, k);
  double m;
  if (mant <= 1.0 + 1e-9) {
    m = 1;
  } else if (mant <= 2.0 + 1e-9) {
    m = 2;
  } else if (mant <= 5.0 + 1e-9) {
    m = 5;
  } else {
    m = 1;
    ++k;
  }
  const double step = m * std::pow(10.0, k);
  // |lo / step| <= 1e11 or so given the spread (see make_axis), so these are exact integers.
  const double i0 = std::floor(lo / step + 1e-9);
  const double i1 = std::ceil(hi / step - 1e-9);
  const int count = std::clamp(static_cast<int>(i1 - i0), 1, 4 * target + 4) + 1;
  Axis axis;
  double max_abs = 0;
  for (int j = 0; j < count; ++j) {
    double v = (i0 + j) * step;
    if (std::fabs(v) < step * 1e-9) v = 0;
    axis.ticks.push_back(v);
    max_abs = std::max(max_abs, std::fabs(v));
  }
  axis.lo = axis.ticks.front();
  axis.hi = axis.ticks.back();
  // Labels with the digits down to the step, the same number of decimals on every tick: fixed
  // notation for magnitudes in [1e-4, 1e6), else scientific ("2.5e+06"); 0 is always "0".
  const int top = max_abs > 0 ? static_cast<int>(std::floor(std::log10(max_abs))) : k;
  const bool fixed = max_abs == 0 || (max_abs >= 1e-4 && max_abs < 1e6);
  for (double v : axis.ticks) {
    if (fixed) {
      axis.labels.push_back(fmt::format("{:.{}f}", v, std::max(0, -k)));
    } else if (v == 0) {
      axis.labels.push_back("0");
    } else {
      axis.labels.push_back(fmt::format("{:.{}e}", v, std::clamp(top - k, 0, 16)));
    }
    axis.max_label_chars = std::max(axis.max_label_chars, axis.labels.back().size());
  }
  return axis;
}

// The axis for data in [dmin, dmax] (has_data false: no finite value). Widens degenerate ranges.
// About one tick per min_px_per_tick pixels; on a horizontal axis, fewer until the labels fit.
Axis make_axis(bool has_data, double dmin, double dmax, double length_px, double min_px_per_tick,
               bool horizontal) {
  double lo = 0, hi = 1;
  if (has_data) {
    lo = dmin;
    hi = dmax;
    const double mag = std::max(std::fabs(lo), std::fabs(hi));
    if (!(hi - lo >= 1e-250) || hi - lo <= mag * 1e-9) {
      const double c = lo / 2 + hi / 2;
      const double d = std::fabs(c) > 1e-200 ? std::fabs(c) * 0.1 : 1.0;
      lo = c - d;
      hi = c + d;
    }
  }
  int target = std::clamp(static_cast<int>(length_px / min_px_per_tick), 2, 10);
  Axis axis = nice_axis(lo, hi, target);
  if (horizontal) {
    // Labels must not overlap: each needs its width plus a gap.
    while (target > 2) {
      const double need = static_cast<double>(axis.ticks.size()) *
                          (text_width(axis.max_label_chars, kTickFont) + 10.0);
      if (need <= length_px) break;
      axis = nice_axis(lo, hi, --target);
    }
  }
  return axis;
}

// ---------------------------------------------------------------------------------------------
// Chart

struct Point {
  double x, y;
};

double clamp_value(double v) { return std::clamp(v, -kValueLimit, kValueLimit); }

// The elements of one chart (no <svg> root) in a width x height box at the origin.
std::string chart_body(const Plot& plot, int width, int height) {
  const double W = width, H = height;

  // Data: per series, runs of consecutive finite points.
  struct SeriesData {
    std::vector<std::vector<Point>> runs;
    size_t points = 0;
  };
  std::vector<SeriesData> data(plot.series.size());
  bool has_data = false;
  double xmin = 0, xmax = 0, ymin = 0, ymax = 0;
  for (size_t s = 0; s < plot.series.size(); ++s) {
    const PlotSeries& series = plot.series[s];
    const bool index_x = series.x.empty();
    const size_t n = index_x ? series.y.size() : std::min(series.x.size(), series.y.size());
    std::vector<Point> run;
    for (size_t i = 0; i < n; ++i) {
      const double x = index_x ? static_cast<double>(i) : series.x[i];
      const double y = series.y[i];
      if (!std::isfinite(x) || !std::isfinite(y)) {
        if (!run.empty()) data[s].runs.push_back(std::move(run));
        run.clear();
        continue;
      }
      const Point p{clamp_value(x), clamp_value(y)};
      if (!has_data) {
        xmin = xmax = p.x;
        ymin = ymax = p.y;
        has_data = true;
      }
      xmin = std::min(xmin, p.x), xmax = std::max(xmax, p.x);
      ymin = std::min(ymin, p.y), ymax = std::max(ymax, p.y);
      run.push_back(p);
      ++data[s].points;
    }
    if (!run.empty()) data[s].runs.push_back(std::move(run));
  }

  // Layout.
  size_t title_chars = 0, xl_chars = 0, yl_chars = 0;
  const std::string title = xml_text(plot.title, SIZE_MAX, &title_chars);
  const std::string x_label = xml_text(plot.x_label, SIZE_MAX, &xl_chars);
  const std::string y_label = xml_text(plot.y_label, SIZE_MAX, &yl_chars);
  const double top = title_chars ? 34 : 14;
  const double bottom = 26 + (xl_chars ? 20 : 0);
  const double plot_h = H - top - bottom;
  const Axis yaxis = make_axis(has_data, ymin, ymax, plot_h, 45, false);
  const double left = 10 + (yl_chars ? 20 : 0) + text_width(yaxis.max_label_chars, kTickFont) + 6;
  const double right = 18;
  const double plot_w = std::max(W - left - right, 20.0);  // very long tick labels: spill over
  const Axis xaxis = make_axis(has_data, xmin, xmax, plot_w, 70, true);
  const auto sx = [&](double v) { return left + (v - xaxis.lo) / (xaxis.hi - xaxis.lo) * plot_w; };
  const auto sy = [&](double v) { return top + plot_h - (v - yaxis.lo) / (yaxis.hi - yaxis.lo) * plot_h; };

  std::string out;
  out += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"white\"/>\n", width, height);
  if (title_chars) {
    out += fmt::format("<text class=\"title\" x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"{}\" "
                       "font-weight=\"bold\">{}</text>\n",
                       num(W / 2), kTitleFont, title);
  }

  // Grid and frame.
  out += "<g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
  for (double t : xaxis.ticks) {
    out += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\"/>\n", num(sx(t)), num(top), num(top + plot_h));
  }
  for (double t : yaxis.ticks) {
    out += fmt::format("<line x1=\"{1}\" y1=\"{0}\" x2=\"{2}\" y2=\"{0}\"/>\n", num(sy(t)), num(left), num(left + plot_w));
  }
  out += "</g>\n";
  out += fmt::format("<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
                     "stroke=\"#444444\" stroke-width=\"1\"/>\n",
                     num(left), num(top), num(plot_w), num(plot_h));

  // Tick marks and labels.
  out += "<g class=\"ticks\" stroke=\"#444444\" stroke-width=\"1\">\n";
  for (double t : xaxis.ticks) {
    out += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\"/>\n", num(sx(t)), num(top + plot_h),
                       num(top + plot_h + 4));
  }
  for (double t : yaxis.ticks) {
    out += fmt::format("<line x1=\"{1}\" y1=\"{0}\" x2=\"{2}\" y2=\"{0}\"/>\n", num(sy(t)), num(left - 4), num(left));
  }
  out += "</g>\n";
  out += fmt::format("<g font-size=\"{}\" fill=\"#222222\">\n", kTickFont);
  for (size_t i = 0; i < xaxis.ticks.size(); ++i) {
    out += fmt::format("<text class=\"xtick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                       num(sx(xaxis.ticks[i])), num(top + plot_h + 16), xaxis.labels[i]);
  }
  for (size_t i = 0; i < yaxis.ticks.size(); ++i) {
    out += fmt::format("<text class=\"ytick\" x=\"{}\" y=\"{}\" dy=\"0.35em\" text-anchor=\"end\">{}</text>\n",
                       num(left - 6), num(sy(yaxis.ticks[i])), yaxis.labels[i]);
  }
  out += "</g>\n";
  if (xl_chars) {
    out += fmt::format("<text class=\"xlabel\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\">{}</text>\n",
                       num(left + plot_w / 2), num(H - 8), kLabelFont, x_label);
  }
  if (yl_chars) {
    const double cx = 16, cy = top + plot_h / 2;
    out += fmt::format("<text class=\"ylabel\" x=\"{0}\" y=\"{1}\" transform=\"rotate(-90 {0} {1})\" "
                       "text-anchor=\"middle\" font-size=\"{2}\">{3}</text>\n",
                       num(cx), num(cy), kLabelFont, y_label);
  }

  // Series.
  for (size_t s = 0; s < data.size(); ++s) {
    const char* colour = kPalette[s % kPalette.size()];
    const bool dashed = s >= kPalette.size();
    out += fmt::format("<g class=\"series\" stroke=\"{}\" fill=\"none\" stroke-width=\"1.5\" "
                       "stroke-linejoin=\"round\" stroke-linecap=\"round\"{}>\n",
                       colour, dashed ? " stroke-dasharray=\"6 3\"" : "");
    const bool markers = data[s].points <= kMarkerMaxPoints;
    for (const auto& run : data[s].runs) {
      if (run.size() >= 2) {
        out += "<polyline points=\"";
        for (size_t i = 0; i < run.size(); ++i) {
          if (i) out += ' ';
          out += num(sx(run[i].x));
          out += ',';
          out += num(sy(run[i].y));
        }
        out += "\"/>\n";
      }
      if (markers || run.size() == 1) {
        for (const Point& p : run) {
          out += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{}\" stroke=\"none\"/>\n",
                             num(sx(p.x)), num(sy(p.y)), colour);
        }
      }
    }
    out += "</g>\n";
  }

  if (!has_data) {
    out += fmt::format("<text class=\"nodata\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\" "
                       "fill=\"#888888\">no data</text>\n",
                       num(left + plot_w / 2), num(top + plot_h / 2), kLabelFont);
  }

  // Legend: in the corner of the plot area that covers the fewest points.
  if (plot.series.size() > 1) {
    std::vector<std::string> names;
    size_t max_chars = 0;
    for (size_t s = 0; s < plot.series.size(); ++s) {
      size_t chars = 0;
      const std::string& name = plot.series[s].name;
      names.push_back(xml_text(name.empty() ? fmt::format("series {}", s + 1) : name, kMaxLegendChars, &chars));
      max_chars = std::max(max_chars, chars);
    }
    const double row = 16, pad = 6, sample = 20;
    const double box_w = pad + sample + 6 + text_width(max_chars, kLegendFont) + pad;
    const double box_h = pad + row * static_cast<double>(names.size()) + pad - 4;
    const double inset = 8;
    const std::array<std::pair<double, double>, 4> corners = {{
        {left + plot_w - inset - box_w, top + inset},                  // top right
        {left + inset, top + inset},                                   // top left
        {left + plot_w - inset - box_w, top + plot_h - inset - box_h}, // bottom right
        {left + inset, top + plot_h - inset - box_h},                  // bottom left
    }};
    size_t best = 0, best_count = SIZE_MAX;
    for (size_t c = 0; c < corners.size(); ++c) {
      const auto [bx, by] = corners[c];
      size_t count = 0;
      for (const auto& sd : data) {
        for (const auto& run : sd.runs) {
          for (const Point& p : run) {
            const double px = sx(p.x), py = sy(p.y);
            if (px >= bx && px <= bx + box_w && py >= by && py <= by + box_h) ++count;
          }
        }
      }
      if (count < best_count) best = c, best_count = count;
    }
    const auto [bx, by] = corners[best];
    out += "<g class=\"legend\">\n";
    out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"white\" fill-opacity=\"0.85\" "
                       "stroke=\"#bbbbbb\" stroke-width=\"1\"/>\n",
                       num(bx), num(by), num(box_w), num(box_h));
    for (size_t s = 0; s < names.size(); ++s) {
      const double cy = by + pad + row * (static_cast<double>(s) + 0.5);
      out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"{}/>\n",
                         num(bx + pad), num(cy), num(bx + pad + sample), num(cy), kPalette[s % kPalette.size()],
                         s >= kPalette.size() ? " stroke-dasharray=\"6 3\"" : "");
      out += fmt::format("<text x=\"{}\" y=\"{}\" dy=\"0.35em\" font-size=\"{}\" fill=\"#222222\">{}</text>\n",
                         num(bx + pad + sample + 6), num(cy), kLegendFont, names[s]);
    }
    out += "</g>\n";
  }
  return out;
}

int clamp_side(int v) { return std::clamp(v, kMinSide, kMaxSide); }

std::string svg_open(int64_t width, int64_t height) {
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
      width, height);
}

}  // namespace

std::string render_svg(const Plot& plot, int width, int height) {
  width = clamp_side(width);
  height = clamp_side(height);
  return svg_open(width, height) + chart_body(plot, width, height) + "</svg>\n";
}

std::string render_svg_grid(std::span<const Plot> plots, int columns, int cell_width, int cell_height) {
  cell_width = clamp_side(cell_width);
  cell_height = clamp_side(cell_height);
  if (plots.empty()) return render_svg(Plot{}, cell_width, cell_height);
  const size_t n = plots.size();
  const size_t cols = static_cast<size_t>(std::clamp<int64_t>(columns, 1, static_cast<int64_t>(n)));
  const size_t rows = (n + cols - 1) / cols;
  const int64_t width = static_cast<int64_t>(cols) * cell_width;
  const int64_t height = static_cast<int64_t>(rows) * cell_height;
  std::string out = svg_open(width, height);
  out += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"white\"/>\n", width, height);
  for (size_t i = 0; i < n; ++i) {
    const size_t r = i / cols, c = i % cols;
    out += fmt::format("<svg class=\"cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\">\n",
                       c * static_cast<size_t>(cell_width), r * static_cast<size_t>(cell_height), cell_width,
                       cell_height, cell_width, cell_height);
    out += chart_body(plots[i], cell_width, cell_height);
    out += "</svg>\n";
  }
  out += "</svg>\n";
  return out;
}

}  // namespace reason
