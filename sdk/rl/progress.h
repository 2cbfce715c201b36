// Terminal progress line for one training/eval stage (SFT, GRPO, rejection sampling, distill,
// eval) of a pipeline run, e.g.
//
//   grpo [ 42/200] ####----------------  21%  reward 0.61  kl 0.003  1234 tok/s  ETA 3m12s
//
// On a terminal the line is redrawn in place; in CI logs and pipes plain lines are printed now and
// then, so logs stay readable. Output only: a bar never throws (out-of-range arguments are
// clamped) and never changes what training does.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace reason {

// "45s", "3m12s" (seconds zero-padded), "1h02m" (minutes zero-padded, seconds dropped).
// Rounded to whole seconds. NaN, infinities and negative values give "-"; 100000 hours or more
// give ">99999h".
std::string format_duration(double seconds);

// A field value with 3 significant digits: 0.61 -> "0.61", 0.003 -> "0.003", 12.345 -> "12.3",
// 1e-5 -> "1e-05"; values of 1000 and more use k/M/G/T (1234 -> "1.23k", 2.5e6 -> "2.5M",
// beyond that "1.23e+15"). NaN gives "-", infinities "inf" / "-inf".
std::string format_field_value(double value);

// One stage's progress line.
//
// Threads: not thread-safe; one thread uses a bar (the stage's driver loop).
class ProgressBar {
 public:
  // total: number of steps of the stage (> 0; a smaller value is taken as 1, so that an empty
  // stage cannot abort a run).
  // label: the stage name, first on the line. out: where to write (stderr normally; not owned).
  // When out is a terminal (isatty(fileno(out))) the line is redrawn in place ('\r', then the
  // line, then ESC[K to clear what a longer previous line left), at most 10 times a second and
  // always at the last step, cut to the terminal width when that is known. Otherwise (CI logs,
  // pipes, files) a plain '\n'-terminated line is printed at the first update, then at most once
  // every `min_interval_s` seconds, and always when the last step is first reported.
  // `enabled = false` prints nothing at all. Timing starts at construction (as start(0)).
  ProgressBar(std::string label, int64_t total, FILE* out = stderr, bool enabled = true,
              double min_interval_s = 10.0);
  ~ProgressBar();  // calls finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // (Re)starts the clock. start_step: when resuming at step k, ETA and rates count only the work
  // done in this process (steps after k, tokens reported from now on). Clamped to [0, total].
  void start(int64_t start_step = 0);

  // Reports that `step` (1-based, <= total; clamped to [0, total]) is done. `fields` are shown in
  // the order given as "name value" (format_field_value: 3 significant digits, NaN as "-").
  // tokens: tokens processed by this step; tok/s is the sum over the updates since start()
  // divided by the time since start(), shown once some tokens were reported.
  // ETA = remaining steps x (time since start() / steps done since start()).
  void update(int64_t step, const std::vector<std::pair<std::string, double>>& fields,
              int64_t tokens = 0);

  // Ends the line. Terminal: redraws the latest state and writes '\n'. Not a terminal: prints the
  // latest state unless a line for that step was already printed (e.g. when a stage stopped
  // early). Idempotent; update() after finish() prints nothing.
  void finish();

  // Pure formatting used by update(), exposed for tests: the line without '\r' or escape codes.
  //   "<label> [<step>/<total>] <20-char bar> <pct>%[  <name> <value>]...[  <n> tok/s]  ETA <d>"
  // step is right-aligned to the width of total; the bar has floor(20 * step / total) '#' and
  // '-' for the rest; pct = floor(100 * step / total), right-aligned in 3 characters. tok/s
  // (rounded to an integer below 1e6, else as a field value: "2.5M") is left out unless
  // tokens_per_s is finite and > 0. The ETA is format_duration(eta_s): "-" when eta_s is NaN or
  // negative.
  std::string render(int64_t step, const std::vector<std::pair<std::string, double>>& fields,
                     double tokens_per_s, double eta_s) const;

  int64_t total() const { return total_; }
  bool is_tty() const { return tty_; }  // whether `out` was a terminal at construction

 private:
  using Clock = std::chrono::steady_clock;
  void emit(const std::string& line, bool final_newline);
  std::string current_line() const;

  std::string label_;
  int64_t total_;
  FILE* out_;
  bool enabled_;
  double min_interval_s_;
  bool tty_ = false;
  int term_width_ = 0;  // 0 = unknown

  Clock::time_point start_time_;
  Clock::time_point last_print_time_;
  int64_t start_step_ = 0;
  int64_t step_ = 0;
  int64_t tokens_ = 0;
  std::vector<std::pair<std::string, double>> fields_;
  bool printed_any_ = false;
  int64_t last_printed_step_ = -1;
  bool finished_ = false;
};

}  // namespace reason
