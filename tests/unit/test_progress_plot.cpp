// Stage progress bar (sdk/rl/progress.h) and SVG charts (sdk/rl/svg_plot.h): exact expectations
// for the formatting, the non-terminal print schedule on a tmpfile(), the terminal redraw on a
// pseudo-terminal, and structural checks of the SVG (well-formed, polylines, nice ticks, no
// NaN/inf, escaping), with xmllint as a second opinion when it is installed.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rl/progress.h"
#include "rl/svg_plot.h"

namespace fs = std::filesystem;
using namespace reason;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Everything written to `f` so far; leaves the position at the end for further writes.
std::string read_all(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fseek(f, 0, SEEK_END);
  return s;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t nl = s.find('\n', pos);
    if (nl == std::string::npos) {
      lines.push_back(s.substr(pos));
      break;
    }
    lines.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Minimal XML well-formedness: tags balance (every <tag> closed by </tag> or self-closed, in
// order), attribute values quoted, '&' only in the five predefined entities, no '<' in text.
// Returns "" when fine, else what is wrong.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> stack;
  size_t i = 0;
  int roots = 0;
  const auto check_entities = [&](size_t from, size_t to) -> std::string {
    for (size_t k = from; k < to; ++k) {
      if (s[k] == '&') {
        static const char* kEnt[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
        bool ok = false;
        for (const char* e : kEnt) ok = ok || s.compare(k, std::strlen(e), e) == 0;
        if (!ok) return "bad entity at " + std::to_string(k);
      }
      if (s[k] == '>' ) return "stray '>' in text at " + std::to_string(k);
    }
    return "";
  };
  while (i < s.size()) {
    const size_t lt = s.find('<', i);
    const size_t text_end = lt == std::string::npos ? s.size() : lt;
    if (auto p = check_entities(i, text_end); !p.empty()) return p;
    if (lt == std::string::npos) break;
    if (s.compare(lt, 5, "<?xml") == 0) {
      if (lt != 0) return "xml declaration not at start";
      const size_t end = s.find("?>", lt);
      if (end == std::string::npos) return "unterminated declaration";
      i = end + 2;
      continue;
    }
    // Find the end of the tag, skipping quoted attribute values.
    size_t k = lt + 1;
    char quote = 0;
    for (; k < s.size(); ++k) {
      const char c = s[k];
      if (quote) {
        if (c == quote) quote = 0;
        else if (c == '<') return "'<' in attribute value at " + std::to_string(k);
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '>') {
        break;
      } else if (c == '<') {
        return "'<' inside tag at " + std::to_string(k);
      }
    }
    if (k >= s.size()) return "unterminated tag at " + std::to_string(lt);
    std::string tag = s.substr(lt + 1, k - lt - 1);
    if (auto p = check_entities(lt + 1, k); !p.empty() && p.rfind("bad entity", 0) == 0) return p;
    i = k + 1;
    if (!tag.empty() && tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return "unmatched </" + name + ">";
      stack.pop_back();
      continue;
    }
    const bool self_close = !tag.empty() && tag.back() == '/';
    const size_t name_end = tag.find_first_of(" \t\n/");
    const std::string name = tag.substr(0, name_end);
    if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0]))) return "bad tag name '" + name + "'";
    if (stack.empty()) ++roots;
    if (!self_close) stack.push_back(name);
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "expected one root element, got " + std::to_string(roots);
  return "";
}

bool have_xmllint() { return access("/usr/bin/xmllint", X_OK) == 0; }

// xmllint's verdict on the document (true when xmllint is absent).
bool xmllint_ok(const std::string& svg) {
  if (!have_xmllint()) return true;
  const fs::path path = fs::temp_directory_path() / ("test_progress_plot_" + std::to_string(getpid()) + ".svg");
  {
    std::ofstream f(path, std::ios::binary);
    f << svg;
  }
  const std::string cmd = "/usr/bin/xmllint --noout '" + path.string() + "' 2>/dev/null";
  const int rc = std::system(cmd.c_str());
  fs::remove(path);
  return rc == 0;
}

void require_valid_svg(const std::string& svg) {
  INFO(svg.substr(0, 3000));
  CHECK(xml_problem(svg) == "");
  CHECK(xmllint_ok(svg));
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  std::string lower = svg;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  CHECK(lower.find("nan") == std::string::npos);
  CHECK(lower.find("inf") == std::string::npos);
}

std::vector<std::string> all_matches(const std::string& s, const std::regex& re, int group = 1) {
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(s.begin(), s.end(), re); it != std::sregex_iterator(); ++it) {
    out.push_back((*it)[group].str());
  }
  return out;
}

// Number of points of each <polyline>, in document order.
std::vector<size_t> polyline_sizes(const std::string& svg) {
  std::vector<size_t> sizes;
  for (const std::string& pts : all_matches(svg, std::regex("<polyline points=\"([^\"]*)\""))) {
    static const std::regex pair_re("-?[0-9.]+,-?[0-9.]+");
    size_t n = 0;
    for (auto it = std::sregex_iterator(pts.begin(), pts.end(), pair_re);
         it != std::sregex_iterator(); ++it) {
      ++n;
    }
    sizes.push_back(n);
  }
  return sizes;
}

std::vector<double> tick_values(const std::string& svg, const char* cls) {
  std::vector<double> v;
  for (const std::string& label :
       all_matches(svg, std::regex(std::string("<text class=\"") + cls + "\"[^>]*>([^<]*)</text>"))) {
    v.push_back(std::stod(label));
  }
  return v;
}

std::vector<std::string> tick_labels(const std::string& svg, const char* cls) {
  return all_matches(svg, std::regex(std::string("<text class=\"") + cls + "\"[^>]*>([^<]*)</text>"));
}

// Ticks are consecutive multiples of one step 1/2/5 x 10^k, and cover [lo, hi].
void require_nice_ticks(const std::vector<double>& t, double lo, double hi) {
  INFO("lo " << lo << " hi " << hi << " ticks " << t.size());
  REQUIRE(t.size() >= 2);
  REQUIRE(t.size() <= 12);
  const double step = t[1] - t[0];
  REQUIRE(step > 0);
  const double k = std::floor(std::log10(step) + 1e-9);
  const double mant = step / std::pow(10.0, k);
  INFO("step " << step << " mantissa " << mant);
  CHECK((std::fabs(mant - 1) < 1e-6 || std::fabs(mant - 2) < 1e-6 || std::fabs(mant - 5) < 1e-6));
  for (size_t i = 0; i < t.size(); ++i) {
    INFO("tick " << i << " = " << t[i]);
    const double q = t[i] / step;
    CHECK(std::fabs(q - std::round(q)) < 1e-6);
    if (i > 0) CHECK(std::fabs((t[i] - t[i - 1]) - step) <= 1e-6 * step);
  }
  const double slack = 1e-9 * std::max({std::fabs(lo), std::fabs(hi), step});
  CHECK(t.front() <= lo + slack);
  CHECK(t.back() >= hi - slack);
  const bool spread = hi - lo >= 1e-250 && hi - lo > 1e-9 * std::max(std::fabs(lo), std::fabs(hi));
  if (spread) {  // no more than needed
    CHECK(t.front() > lo - step - slack);
    CHECK(t.back() < hi + step + slack);
  } else {  // widened around the value
    CHECK(t.front() < lo);
    CHECK(t.back() > hi);
  }
}

size_t count_of(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + needle.size())) ++n;
  return n;
}

}  // namespace

// =============================================================================================
// Progress bar

TEST_CASE("format_duration", "[progress]") {
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(0.4) == "0s");
  CHECK(format_duration(45) == "45s");
  CHECK(format_duration(59.4) == "59s");
  CHECK(format_duration(59.6) == "1m00s");
  CHECK(format_duration(192) == "3m12s");
  CHECK(format_duration(65) == "1m05s");
  CHECK(format_duration(3599) == "59m59s");
  CHECK(format_duration(3600) == "1h00m");
  CHECK(format_duration(3725) == "1h02m");
  CHECK(format_duration(36000 + 59 * 60 + 59) == "10h59m");
  CHECK(format_duration(kNaN) == "-");
  CHECK(format_duration(kInf) == "-");
  CHECK(format_duration(-1) == "-");
  CHECK(format_duration(1e300) == ">99999h");
}

TEST_CASE("format_field_value: 3 significant digits", "[progress]") {
  CHECK(format_field_value(0.61) == "0.61");
  CHECK(format_field_value(0.6123) == "0.612");
  CHECK(format_field_value(0.003) == "0.003");
  CHECK(format_field_value(0.0031234) == "0.00312");
  CHECK(format_field_value(12.345) == "12.3");
  CHECK(format_field_value(-0.5) == "-0.5");
  CHECK(format_field_value(0.0) == "0");
  CHECK(format_field_value(-0.0) == "0");
  CHECK(format_field_value(1e-5) == "1e-05");
  CHECK(format_field_value(999) == "999");
  CHECK(format_field_value(999.7) == "1k");
  CHECK(format_field_value(1234) == "1.23k");
  CHECK(format_field_value(-45678) == "-45.7k");
  CHECK(format_field_value(2.5e6) == "2.5M");
  CHECK(format_field_value(7.891e9) == "7.89G");
  CHECK(format_field_value(1e16) == "1e+16");
  CHECK(format_field_value(std::numeric_limits<double>::max()) == "1.8e+308");
  CHECK(format_field_value(-std::numeric_limits<double>::max()) == "-1.8e+308");
  CHECK(format_field_value(kNaN) == "-");
  CHECK(format_field_value(kInf) == "inf");
  CHECK(format_field_value(-kInf) == "-inf");
}

TEST_CASE("ProgressBar::render formats a known state", "[progress]") {
  ProgressBar bar("grpo", 200, stderr, /*enabled=*/false);
  CHECK(bar.render(42, {{"reward", 0.6123}, {"kl", 0.0031234}, {"acc", kNaN}}, 1234.4, 192) ==
        "grpo [ 42/200] ####----------------  21%  reward 0.612  kl 0.00312  acc -  1234 tok/s  ETA 3m12s");
  // No fields, no tokens, unknown ETA.
  CHECK(bar.render(0, {}, 0, kNaN) == "grpo [  0/200] --------------------   0%  ETA -");
  CHECK(bar.render(1, {}, kNaN, -3) == "grpo [  1/200] --------------------   0%  ETA -");
  // 199/200 is not yet 100%; the last step is.
  CHECK(bar.render(199, {{"loss", 1.5}}, 10.6, 0.4) ==
        "grpo [199/200] ###################-  99%  loss 1.5  11 tok/s  ETA 0s");
  CHECK(bar.render(200, {}, 0, 0) == "grpo [200/200] #################### 100%  ETA 0s");
  CHECK(bar.render(200, {}, 2.5e6, 0) == "grpo [200/200] #################### 100%  2.5M tok/s  ETA 0s");
  CHECK(bar.render(200, {}, 1e300, 1e300) == "grpo [200/200] #################### 100%  1e+300 tok/s  ETA >99999h");
  // Out-of-range steps are clamped, never crash.
  CHECK(bar.render(500, {}, 0, 0) == "grpo [200/200] #################### 100%  ETA 0s");
  CHECK(bar.render(-5, {}, 0, kNaN) == "grpo [  0/200] --------------------   0%  ETA -");
  ProgressBar small("eval", 3, stderr, false);
  CHECK(small.render(2, {{"acc", 0.5}}, 0, 3725) == "eval [2/3] #############-------  66%  acc 0.5  ETA 1h02m");
}

TEST_CASE("ProgressBar takes a non-positive total as 1 (never throws)", "[progress]") {
  ProgressBar zero("x", 0, stderr, false);
  CHECK(zero.total() == 1);
  CHECK(zero.render(0, {}, 0, kNaN) == "x [0/1] --------------------   0%  ETA -");
  ProgressBar negative("x", -3, stderr, false);
  CHECK(negative.total() == 1);
  CHECK(negative.render(1, {}, 0, 0) == "x [1/1] #################### 100%  ETA 0s");
}

TEST_CASE("ProgressBar not on a TTY: first update, every interval, last step", "[progress]") {
  SECTION("huge interval: only the first update and the last step") {
    FILE* f = std::tmpfile();
    REQUIRE(f);
    {
      ProgressBar bar("sft", 5, f, true, 1e9);
      CHECK_FALSE(bar.is_tty());
      bar.start();
      for (int s = 1; s <= 4; ++s) bar.update(s, {{"loss", 2.0 / s}});
      CHECK(lines_of(read_all(f)).size() == 1);  // the first update only
      bar.update(5, {{"loss", 0.4}});
      CHECK(lines_of(read_all(f)).size() == 2);  // the last step, printed by update() itself
      bar.update(5, {{"loss", 0.4}});             // reported again: not printed again
      bar.finish();
      bar.finish();  // idempotent
      bar.update(5, {});  // after finish: nothing
    }  // destructor: nothing more either
    const auto lines = lines_of(read_all(f));
    std::fclose(f);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind("sft [1/5] ####---------------- ", 0) == 0);
    CHECK(lines[0].find("loss 2 ") != std::string::npos);
    CHECK(lines[1].rfind("sft [5/5] #################### 100%  loss 0.4  ETA 0s", 0) == 0);
    for (const auto& l : lines) {
      CHECK(l.find('\r') == std::string::npos);
      CHECK(l.find('\x1b') == std::string::npos);
    }
  }
  SECTION("zero interval: every update") {
    FILE* f = std::tmpfile();
    REQUIRE(f);
    ProgressBar bar("distill", 4, f, true, 0.0);
    for (int s = 1; s <= 4; ++s) bar.update(s, {});
    bar.finish();
    const auto lines = lines_of(read_all(f));
    std::fclose(f);
    REQUIRE(lines.size() == 4);
    for (int s = 1; s <= 4; ++s) CHECK(lines[s - 1].rfind("distill [" + std::to_string(s) + "/4]", 0) == 0);
  }
  SECTION("interval not yet passed: suppressed; finish prints a stage stopped early") {
    // An interval no test run can reach (an hour): whether a line is suppressed never depends on
    // how fast this machine runs the calls.
    FILE* f = std::tmpfile();
    REQUIRE(f);
    ProgressBar bar("rs", 10, f, true, 3600.0);
    bar.update(1, {});  // printed (first)
    bar.update(2, {});  // suppressed
    bar.update(3, {});  // suppressed
    bar.update(4, {});  // suppressed
    bar.finish();       // stage stopped at 4/10: its state is printed once
    bar.finish();
    const auto lines = lines_of(read_all(f));
    std::fclose(f);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind("rs [ 1/10]", 0) == 0);
    CHECK(lines[1].rfind("rs [ 4/10]", 0) == 0);
  }
  SECTION("interval passed: printed") {
    // sleep_for waits at least its duration on the steady clock, so after it the 0.3 s interval
    // has certainly passed (a slow machine only makes it pass by more).
    FILE* f = std::tmpfile();
    REQUIRE(f);
    ProgressBar bar("rs", 10, f, true, 0.3);
    bar.update(1, {});  // printed (first)
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    bar.update(3, {});  // printed: >= 0.4 s since the last line
    bar.finish();       // a line for step 3 was printed: nothing more
    const auto lines = lines_of(read_all(f));
    std::fclose(f);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind("rs [ 1/10]", 0) == 0);
    CHECK(lines[1].rfind("rs [ 3/10]", 0) == 0);
  }
  SECTION("disabled: nothing at all") {
    FILE* f = std::tmpfile();
    REQUIRE(f);
    {
      ProgressBar bar("eval", 3, f, false, 0.0);
      for (int s = 1; s <= 3; ++s) bar.update(s, {{"acc", 0.5}}, 100);
      bar.finish();
    }
    CHECK(read_all(f).empty());
    std::fclose(f);
  }
}

TEST_CASE("ProgressBar resumed: ETA and tok/s count only this process", "[progress]") {
  FILE* f = std::tmpfile();
  REQUIRE(f);
  ProgressBar bar("grpo", 100, f, true, 0.0);
  bar.start(50);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  bar.update(60, {{"reward", 0.5}}, 1000);
  bar.finish();
  const auto lines = lines_of(read_all(f));
  std::fclose(f);
  REQUIRE(lines.size() == 1);
  const std::string& l = lines[0];
  INFO(l);
  CHECK(l.rfind("grpo [ 60/100] ############--------  60%  reward 0.5  ", 0) == 0);
  // 10 steps in >= 1 s, 40 to go: ETA >= 4 s (counting the 60 steps since 0 would give < 1 s).
  // Only bounds that the sleep guarantees are asserted (sleep_for waits at least 1 s; a loaded
  // machine makes the ETA larger and the rate smaller, never the other way round).
  std::smatch m;
  REQUIRE(std::regex_search(l, m, std::regex("ETA ([0-9]+)s$")));
  CHECK(std::stoi(m[1].str()) >= 4);
  // 1000 tokens in >= 1 s.
  REQUIRE(std::regex_search(l, m, std::regex("  ([0-9]+) tok/s  ")));
  CHECK(std::stoi(m[1].str()) <= 1000);
}

TEST_CASE("ProgressBar on a terminal redraws in place", "[progress]") {
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    WARN("no pseudo-terminal available; terminal case skipped");
    if (master >= 0) close(master);
    return;
  }
  const char* name = ptsname(master);
  REQUIRE(name);
  const int slave = open(name, O_RDWR | O_NOCTTY);
  REQUIRE(slave >= 0);
  termios tio{};
  REQUIRE(tcgetattr(slave, &tio) == 0);
  cfmakeraw(&tio);  // no "\n" -> "\r\n" translation: we read back exactly what was written
  REQUIRE(tcsetattr(slave, TCSANOW, &tio) == 0);
  const int flags = fcntl(master, F_GETFL);
  fcntl(master, F_SETFL, flags | O_NONBLOCK);
  const auto drain = [&] {
    std::string s;
    char buf[4096];
    for (int idle = 0; idle < 20;) {
      const ssize_t n = read(master, buf, sizeof buf);
      if (n > 0) {
        s.append(buf, static_cast<size_t>(n));
        idle = 0;
      } else {
        ++idle;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    return s;
  };

  SECTION("full width") {
    FILE* out = fdopen(dup(slave), "w");
    REQUIRE(out);
    {
      ProgressBar bar("sft", 3, out, true, 1e9);
      CHECK(bar.is_tty());
      bar.update(1, {{"loss", 1.25}});
      bar.update(2, {{"loss", 1.0}});  // within 0.1 s of the first: may be skipped
      bar.update(3, {{"loss", 0.75}});
      bar.finish();
      bar.finish();
    }
    std::fclose(out);
    const std::string s = drain();
    INFO(s);
    CHECK(s.rfind("\rsft [1/3] ######-------------- ", 0) == 0);
    const std::string last = "\rsft [3/3] #################### 100%  loss 0.75  ETA 0s\x1b[K";
    // The last step is drawn by update() and once more, with the newline, by finish().
    CHECK(s.size() >= last.size() + 1);
    CHECK(s.substr(s.size() - last.size() - 1) == last + "\n");
    CHECK(count_of(s, "\n") == 1);
    CHECK(count_of(s, "\x1b[K") == count_of(s, "\r"));
  }
  SECTION("cut to the terminal width") {
    winsize ws{};
    ws.ws_row = 24;
    ws.ws_col = 30;
    REQUIRE(ioctl(master, TIOCSWINSZ, &ws) == 0);
    FILE* out = fdopen(dup(slave), "w");
    REQUIRE(out);
    {
      ProgressBar bar("grpo", 10, out, true, 1e9);
      bar.update(10, {{"reward", 0.5}, {"kl", 0.01}});
      bar.finish();
    }
    std::fclose(out);
    const std::string s = drain();
    CHECK(s == "\rgrpo [10/10] ################\x1b[K\rgrpo [10/10] ################\x1b[K\n");
  }
  SECTION("cut at a UTF-8 character boundary") {
    winsize ws{};
    ws.ws_row = 24;
    ws.ws_col = 8;
    REQUIRE(ioctl(master, TIOCSWINSZ, &ws) == 0);
    FILE* out = fdopen(dup(slave), "w");
    REQUIRE(out);
    {
      // "\xce\xbb" is one 2-byte character; 7 bytes would end in the middle of the fourth one.
      ProgressBar bar("\xce\xbb\xce\xbb\xce\xbb\xce\xbb", 2, out, true, 1e9);
      bar.update(1, {});
    }
    std::fclose(out);
    const std::string s = drain();
    CHECK(s == "\r\xce\xbb\xce\xbb\xce\xbb\x1b[K\r\xce\xbb\xce\xbb\xce\xbb\x1b[K\n");
  }
  close(slave);
  close(master);
}

// =============================================================================================
// SVG

TEST_CASE("svg: one series, ticks, no legend", "[svg]") {
  Plot plot;
  plot.title = "GRPO reward";
  plot.x_label = "step";
  plot.y_label = "reward";
  PlotSeries s{"reward", {}, {}};
  for (int i = 0; i < 100; ++i) {
    s.x.push_back(i);
    s.y.push_back(0.2 + 0.5 * (1 - std::exp(-i / 30.0)) + 0.03 * std::sin(i));
  }
  const double ymin = *std::min_element(s.y.begin(), s.y.end());
  const double ymax = *std::max_element(s.y.begin(), s.y.end());
  plot.series.push_back(s);
  const std::string svg = render_svg(plot);
  require_valid_svg(svg);
  CHECK(svg.find("width=\"640\" height=\"400\"") != std::string::npos);
  CHECK(polyline_sizes(svg) == std::vector<size_t>{100});
  CHECK(count_of(svg, "<g class=\"series\"") == 1);
  CHECK(svg.find("class=\"legend\"") == std::string::npos);
  CHECK(svg.find(">GRPO reward</text>") != std::string::npos);
  CHECK(svg.find(">step</text>") != std::string::npos);
  CHECK(svg.find(">reward</text>") != std::string::npos);
  require_nice_ticks(tick_values(svg, "xtick"), 0, 99);
  require_nice_ticks(tick_values(svg, "ytick"), ymin, ymax);
  CHECK(tick_values(svg, "xtick").size() >= 4);
  CHECK(tick_values(svg, "ytick").size() >= 4);
  // Every polyline coordinate lies inside the frame.
  std::smatch m;
  REQUIRE(std::regex_search(svg, m, std::regex("<rect class=\"frame\" x=\"([0-9.]+)\" y=\"([0-9.]+)\" "
                                               "width=\"([0-9.]+)\" height=\"([0-9.]+)\"")));
  const double fx = std::stod(m[1]), fy = std::stod(m[2]), fw = std::stod(m[3]), fh = std::stod(m[4]);
  CHECK(fx > 0);
  CHECK(fy > 0);
  CHECK(fx + fw <= 640);
  CHECK(fy + fh <= 400);
  const std::string pts = all_matches(svg, std::regex("<polyline points=\"([^\"]*)\""))[0];
  const std::regex pair_re("(-?[0-9.]+),(-?[0-9.]+)");
  for (auto it = std::sregex_iterator(pts.begin(), pts.end(), pair_re);
       it != std::sregex_iterator(); ++it) {
    const double px = std::stod((*it)[1]), py = std::stod((*it)[2]);
    CHECK(px >= fx - 0.01);
    CHECK(px <= fx + fw + 0.01);
    CHECK(py >= fy - 0.01);
    CHECK(py <= fy + fh + 0.01);
  }
}

TEST_CASE("svg: tick labels are exact nice numbers", "[svg]") {
  const auto labels_for = [](std::vector<double> y) {
    Plot p;
    std::vector<double> x(y.size());
    for (size_t i = 0; i < y.size(); ++i) x[i] = static_cast<double>(i);
    p.series.push_back({"a", x, y});
    return tick_labels(render_svg(p), "ytick");
  };
  CHECK(labels_for({0, 1}) == std::vector<std::string>{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"});
  CHECK(labels_for({0.13, 0.87}) == std::vector<std::string>{"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"});
  CHECK(labels_for({-3, 7}) == std::vector<std::string>{"-4", "-2", "0", "2", "4", "6", "8"});
  CHECK(labels_for({1200, 3400}) == std::vector<std::string>{"1000", "1500", "2000", "2500", "3000", "3500"});
  CHECK(labels_for({0, 2e6}) == std::vector<std::string>{"0", "5.0e+05", "1.0e+06", "1.5e+06", "2.0e+06"});
  CHECK(labels_for({1e-4, 3e-4}) == std::vector<std::string>{"0.00010", "0.00015", "0.00020", "0.00025", "0.00030"});
  CHECK(labels_for({-2e-6, 1e-6}) == std::vector<std::string>{"-2.0e-06", "-1.5e-06", "-1.0e-06", "-5.0e-07", "0", "5.0e-07", "1.0e-06"});
  // All-equal values: widened by 10% each side.
  CHECK(labels_for({1, 1}) == std::vector<std::string>{"0.90", "0.95", "1.00", "1.05", "1.10"});
  CHECK(labels_for({0, 0}) == std::vector<std::string>{"-1.0", "-0.5", "0.0", "0.5", "1.0"});
}

TEST_CASE("svg: several series get polylines, colours and a legend", "[svg]") {
  Plot plot;
  plot.title = "accuracy";
  const char* names[] = {"math", "code", "format"};
  for (int k = 0; k < 3; ++k) {
    PlotSeries s{names[k], {}, {}};
    for (int i = 0; i <= 40 + 10 * k; ++i) {
      s.x.push_back(i * 5);
      s.y.push_back(0.1 * k + i / 100.0);
    }
    plot.series.push_back(s);
  }
  const std::string svg = render_svg(plot, 800, 500);
  require_valid_svg(svg);
  CHECK(polyline_sizes(svg) == std::vector<size_t>{41, 51, 61});
  CHECK(count_of(svg, "<g class=\"series\"") == 3);
  CHECK(svg.find("class=\"legend\"") != std::string::npos);
  for (const char* n : names) CHECK(svg.find(std::string(">") + n + "</text>") != std::string::npos);
  const auto colours = all_matches(svg, std::regex("<g class=\"series\" stroke=\"(#[0-9a-f]{6})\""));
  REQUIRE(colours.size() == 3);
  CHECK(std::set<std::string>(colours.begin(), colours.end()).size() == 3);
  require_nice_ticks(tick_values(svg, "xtick"), 0, 300);
  require_nice_ticks(tick_values(svg, "ytick"), 0, 0.2 + 0.6);

  // Beyond the palette the colours repeat, dashed; unnamed series get a legend name.
  Plot many;
  for (int k = 0; k < 12; ++k) many.series.push_back({"", {0, 1}, {double(k), double(k + 1)}});
  const std::string svg2 = render_svg(many);
  require_valid_svg(svg2);
  CHECK(polyline_sizes(svg2).size() == 12);
  CHECK(count_of(svg2, "<g class=\"series\" stroke=\"#1f77b4\"") == 2);
  CHECK(count_of(svg2, "stroke-dasharray") == 4);  // 2 series + their 2 legend samples
  CHECK(svg2.find(">series 12</text>") != std::string::npos);
}

TEST_CASE("svg: NaN gaps split a series; lone points are circles", "[svg]") {
  Plot plot;
  plot.series.push_back({"kl", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, kNaN, 3, 4, 5, kInf, 6, kNaN, 7}});
  const std::string svg = render_svg(plot);
  require_valid_svg(svg);
  // Runs: {0,1} {3,4,5} {7} {9}: two polylines, the lone points as circles (10 points or fewer:
  // every point also gets a marker).
  CHECK(polyline_sizes(svg) == std::vector<size_t>{2, 3});
  CHECK(count_of(svg, "<circle") == 7);
  require_nice_ticks(tick_values(svg, "ytick"), 1, 7);
  require_nice_ticks(tick_values(svg, "xtick"), 0, 9);

  // x omitted: the index is x.
  Plot idx;
  idx.series.push_back({"len", {}, {100, 200, 300, 250}});
  const std::string svg2 = render_svg(idx);
  require_valid_svg(svg2);
  CHECK(polyline_sizes(svg2) == std::vector<size_t>{4});
  require_nice_ticks(tick_values(svg2, "xtick"), 0, 3);

  // Mismatched lengths: the common prefix.
  Plot mis;
  mis.series.push_back({"a", {0, 1, 2, 3, 4}, {5, 6, 7}});
  const std::string svg3 = render_svg(mis);
  require_valid_svg(svg3);
  CHECK(polyline_sizes(svg3) == std::vector<size_t>{3});
  require_nice_ticks(tick_values(svg3, "xtick"), 0, 2);
}

TEST_CASE("svg: degenerate inputs give valid SVG without nan/inf", "[svg]") {
  struct Case {
    const char* what;
    Plot plot;
    bool has_data;
    double xlo, xhi, ylo, yhi;
  };
  const double big = std::numeric_limits<double>::max();
  std::vector<Case> cases = {
      {"no series", Plot{"empty", "x", "y", {}}, false, 0, 1, 0, 1},
      {"empty series", Plot{"t", "", "", {{"a", {}, {}}, {"b", {}, {}}}}, false, 0, 1, 0, 1},
      {"one point", Plot{"t", "", "", {{"a", {3}, {0.5}}}}, true, 3, 3, 0.5, 0.5},
      {"one point at zero", Plot{"t", "", "", {{"a", {0}, {0}}}}, true, 0, 0, 0, 0},
      {"all equal y", Plot{"t", "", "", {{"a", {0, 1, 2, 3}, {2, 2, 2, 2}}}}, true, 0, 3, 2, 2},
      {"all NaN", Plot{"t", "", "", {{"a", {0, 1, 2}, {kNaN, kNaN, kNaN}}}}, false, 0, 1, 0, 1},
      {"inf and NaN x", Plot{"t", "", "", {{"a", {kNaN, 1, kInf, 2}, {kInf, 1, 2, -kInf}}}}, true, 1, 1, 1, 1},
      {"huge", Plot{"t", "", "", {{"a", {-big, big}, {big, -big}}}}, true, -1e300, 1e300, -1e300, 1e300},
      {"tiny", Plot{"t", "", "", {{"a", {0, 1}, {1e-320, 2e-320}}}}, true, 0, 1, 1e-320, 2e-320},
      {"near-equal", Plot{"t", "", "", {{"a", {0, 1}, {1.0, 1.0 + 1e-14}}}}, true, 0, 1, 1.0, 1.0},
      {"negative big spread", Plot{"t", "", "", {{"a", {1e9, 2e9}, {-5e-7, 3e12}}}}, true, 1e9, 2e9, -5e-7, 3e12},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    for (auto [w, h] : {std::pair{640, 400}, std::pair{0, -5}, std::pair{100000, 100000}}) {
      INFO("size " << w << "x" << h);
      const std::string svg = render_svg(c.plot, w, h);
      require_valid_svg(svg);
      if (c.has_data) {
        CHECK(svg.find("no data") == std::string::npos);
        require_nice_ticks(tick_values(svg, "xtick"), c.xlo, c.xhi);
        require_nice_ticks(tick_values(svg, "ytick"), c.ylo, c.yhi);
      } else {
        CHECK(svg.find("no data") != std::string::npos);
        CHECK(polyline_sizes(svg).empty());
        require_nice_ticks(tick_values(svg, "xtick"), 0, 1);
        require_nice_ticks(tick_values(svg, "ytick"), 0, 1);
      }
    }
  }
}

TEST_CASE("svg: text is escaped", "[svg]") {
  Plot plot;
  plot.title = "a<b & c>\"d\" 'e' </svg>";
  plot.x_label = "x & y";
  plot.y_label = "<script>alert(1)</script>";
  plot.series.push_back({"p<q", {0, 1}, {0, 1}});
  plot.series.push_back({"bad \xff\xfe utf8 \x01 ctl \xe2\x82", {0, 1}, {1, 0}});
  plot.series.push_back({"\xce\xbb \xe2\x86\x92 \xf0\x9f\x98\x80", {0, 1}, {0.5, 0.5}});  // λ → 😀 stay
  const std::string svg = render_svg(plot);
  require_valid_svg(svg);
  CHECK(svg.find(">a&lt;b &amp; c&gt;&quot;d&quot; &apos;e&apos; &lt;/svg&gt;</text>") != std::string::npos);
  CHECK(svg.find(">x &amp; y</text>") != std::string::npos);
  CHECK(svg.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(svg.find("<script") == std::string::npos);
  CHECK(svg.find(">p&lt;q</text>") != std::string::npos);
  CHECK(svg.find(">bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd ctl \xef\xbf\xbd</text>") != std::string::npos);
  CHECK(svg.find(">\xce\xbb \xe2\x86\x92 \xf0\x9f\x98\x80</text>") != std::string::npos);
  CHECK(svg.find('\x01') == std::string::npos);
  CHECK(svg.find('\xff') == std::string::npos);
  CHECK(count_of(svg, "</svg>") == 1);
}

TEST_CASE("svg: grid of charts", "[svg]") {
  std::vector<Plot> plots;
  const char* titles[] = {"reward", "accuracy", "KL", "response length", "entropy"};
  for (int k = 0; k < 5; ++k) {
    Plot p;
    p.title = titles[k];
    p.x_label = "step";
    PlotSeries s{titles[k], {}, {}};
    for (int i = 0; i < 50; ++i) {
      s.x.push_back(i);
      s.y.push_back(std::pow(1.05, i) * (k + 1));
    }
    p.series.push_back(s);
    if (k == 1) p.series.push_back({"eval", {0, 10, 20, 30, 40}, {0.1, 0.3, 0.4, 0.5, 0.55}});
    plots.push_back(p);
  }
  const std::string svg = render_svg_grid(plots);
  require_valid_svg(svg);
  CHECK(svg.find("width=\"960\" height=\"960\"") != std::string::npos);  // 2 columns x 3 rows of 480x320
  CHECK(count_of(svg, "<svg class=\"cell\"") == 5);
  CHECK(svg.find("<svg class=\"cell\" x=\"480\" y=\"640\"") == std::string::npos);  // 6th cell absent
  CHECK(svg.find("<svg class=\"cell\" x=\"0\" y=\"640\"") != std::string::npos);
  CHECK(polyline_sizes(svg) == std::vector<size_t>{50, 50, 5, 50, 50, 50});
  CHECK(count_of(svg, "class=\"legend\"") == 1);
  for (const char* t : titles) CHECK(svg.find(std::string(">") + t + "</text>") != std::string::npos);

  const std::string stacked = render_svg_grid(plots, 1, 600, 250);
  require_valid_svg(stacked);
  CHECK(stacked.find("width=\"600\" height=\"1250\"") != std::string::npos);
  const std::string clamped = render_svg_grid(plots, 0);
  CHECK(clamped.find("width=\"480\" height=\"1600\"") != std::string::npos);
  const std::string wide = render_svg_grid(plots, 99);
  CHECK(wide.find("width=\"2400\" height=\"320\"") != std::string::npos);
  const std::string none = render_svg_grid(std::span<const Plot>{});
  require_valid_svg(none);
  CHECK(none.find("no data") != std::string::npos);

  // Kept for a look: build/test_progress_plot_grid.svg.
  std::ofstream(fs::path(REASON_BINARY_DIR) / "test_progress_plot_grid.svg", std::ios::binary) << svg;
}

TEST_CASE("svg: rendering is thread-safe and deterministic", "[svg]") {
  Plot plot;
  plot.series.push_back({"a", {0, 1, 2}, {3, 1, 2}});
  plot.series.push_back({"b", {0, 1, 2}, {1, 2, 3}});
  const std::string expected = render_svg(plot);
  std::vector<std::string> got(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) got[t] = render_svg(plot);
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& g : got) CHECK(g == expected);
}
