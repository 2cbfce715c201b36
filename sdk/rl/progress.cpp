#include "rl/progress.h"

#include <fmt/format.h>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace reason {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-";
  if (seconds >= 100000.0 * 3600.0) return ">99999h";
  const int64_t s = std::llround(seconds);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string format_field_value(double value) {
  if (std::isnan(value)) return "-";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return "0";  // also -0
  std::string s = fmt::format("{:.3g}", value);
  if (s.find("e+") == std::string::npos || std::fabs(value) >= 1e15) return s;
  // >= 1000 after rounding to 3 significant digits: 1.23k, 45.6M, 789G, 1.5T.
  const double rounded = std::stod(s);
  const int group = static_cast<int>(std::floor(std::log10(std::fabs(rounded)) / 3.0));
  static const char kSuffix[] = {' ', 'k', 'M', 'G', 'T'};
  if (group < 1 || group > 4) return s;
  return fmt::format("{:.3g}{}", rounded / std::pow(10.0, 3 * group), kSuffix[group]);
}

namespace {

// floor(scale * step / total) for 0 <= step <= total, exact (integer arithmetic) unless
// scale * total would overflow.
int scaled_floor(int64_t step, int64_t total, int scale) {
  if (total <= INT64_MAX / scale) return static_cast<int>(step * scale / total);
  const long double v = static_cast<long double>(step) * scale / static_cast<long double>(total);
  return step >= total ? scale : std::min(scale - 1, static_cast<int>(v));
}

}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total, FILE* out, bool enabled,
                         double min_interval_s)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      out_(out),
      enabled_(enabled && out != nullptr),
      min_interval_s_(std::isfinite(min_interval_s) ? std::max(0.0, min_interval_s) : 1e18) {
  if (enabled_) {
    const int fd = fileno(out_);
    tty_ = fd >= 0 && isatty(fd) == 1;
    if (tty_) {
      struct winsize ws {};
      if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) term_width_ = ws.ws_col;
    }
  }
  start(0);
}

ProgressBar::~ProgressBar() {
  try {
    finish();
  } catch (...) {  // formatting can only fail on allocation; never throw from a destructor
  }
}

void ProgressBar::start(int64_t start_step) {
  start_step_ = std::clamp<int64_t>(start_step, 0, total_);
  step_ = start_step_;
  tokens_ = 0;
  start_time_ = Clock::now();
}

std::string ProgressBar::render(int64_t step, const std::vector<std::pair<std::string, double>>& fields,
                                double tokens_per_s, double eta_s) const {
  step = std::clamp<int64_t>(step, 0, total_);
  constexpr int kBarWidth = 20;
  const int filled = scaled_floor(step, total_, kBarWidth);
  const int pct = scaled_floor(step, total_, 100);
  const std::string total_str = std::to_string(total_);
  std::string line = fmt::format("{} [{:>{}}/{}] {}{} {:>3}%", label_, step, total_str.size(), total_str,
                                 std::string(static_cast<size_t>(filled), '#'),
                                 std::string(static_cast<size_t>(kBarWidth - filled), '-'), pct);
  for (const auto& [name, value] : fields) {
    line += "  ";
    line += name;
    line += ' ';
    line += format_field_value(value);
  }
  if (std::isfinite(tokens_per_s) && tokens_per_s > 0) {
    const std::string rate =
        tokens_per_s < 1e6 ? fmt::format("{:.0f}", tokens_per_s) : format_field_value(tokens_per_s);
    line += fmt::format("  {} tok/s", rate);
  }
  line += "  ETA ";
  line += format_duration(eta_s);
  return line;
}

std::string ProgressBar::current_line() const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_time_).count();
  const int64_t done = step_ - start_step_;
  double tok_s = 0;
  double eta = std::nan("");
  if (elapsed > 0) {
    if (tokens_ > 0) tok_s = static_cast<double>(tokens_) / elapsed;
    if (done > 0) eta = static_cast<double>(total_ - step_) * elapsed / static_cast<double>(done);
  }
  if (step_ >= total_) eta = 0;
  return render(step_, fields_, tok_s, eta);
}

void ProgressBar::emit(const std::string& line, bool final_newline) {
  if (tty_) {
    std::string shown = line;
    if (term_width_ > 1 && shown.size() >= static_cast<size_t>(term_width_)) {
      shown.resize(static_cast<size_t>(term_width_ - 1));  // no wrap: '\r' must reach the line start
      // Do not leave half a UTF-8 character (a non-ASCII label) at the end.
      size_t cut = shown.size();
      while (cut > 0 && (static_cast<unsigned char>(shown[cut - 1]) & 0xC0) == 0x80) --cut;
      if (cut > 0 && static_cast<unsigned char>(shown[cut - 1]) >= 0xC0) {
        const auto lead = static_cast<unsigned char>(shown[cut - 1]);
        const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (shown.size() - (cut - 1) < need) shown.resize(cut - 1);
      }
    }
    std::fputs("\r", out_);
    std::fputs(shown.c_str(), out_);
    std::fputs("\x1b[K", out_);
    if (final_newline) std::fputs("\n", out_);
  } else {
    std::fputs(line.c_str(), out_);
    std::fputs("\n", out_);
  }
  std::fflush(out_);
  printed_any_ = true;
  last_print_time_ = Clock::now();
  last_printed_step_ = step_;
}

void ProgressBar::update(int64_t step, const std::vector<std::pair<std::string, double>>& fields,
                         int64_t tokens) {
  if (finished_) return;
  step_ = std::clamp<int64_t>(step, 0, total_);
  fields_ = fields;
  if (tokens > 0) tokens_ += tokens;
  if (!enabled_) return;
  const double since_print =
      printed_any_ ? std::chrono::duration<double>(Clock::now() - last_print_time_).count() : 1e300;
  const double interval = tty_ ? 0.1 : min_interval_s_;
  const bool last_step_unprinted = step_ >= total_ && last_printed_step_ != step_;
  if (last_step_unprinted || since_print >= interval) emit(current_line(), false);
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  if (tty_) {
    emit(current_line(), true);
  } else if (last_printed_step_ != step_) {
    emit(current_line(), false);
  }
}

}  // namespace reason
