// Math accuracy reward: boxed-answer extraction, LaTeX normalisation, a small parser for answer
// expressions and the comparison rules of math-verify (see rl/rewards.h for the exact rules).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rl/rewards.h"

namespace reason {
namespace {

using i128 = __int128;

constexpr size_t kMaxAnswerBytes = 4096;  // longer answers are compared as strings only
constexpr int kMaxDepth = 400;            // recursion limit of the parser (about 55 nested groups)
constexpr int kMaxFactors = 256;          // factors in one product/quotient chain

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, size_t pos, std::string_view what) {
  return pos <= s.size() && s.substr(pos, what.size()) == what;
}

// ------------------------------------------------------------------------------------------
// Extraction
// ------------------------------------------------------------------------------------------

// Position of the last `cmd` in `text` that is not the prefix of a longer command name.
size_t rfind_command(std::string_view text, std::string_view cmd) {
  size_t pos = text.rfind(cmd);
  while (pos != std::string_view::npos) {
    size_t end = pos + cmd.size();
    if (end >= text.size() || !is_alpha(text[end])) return pos;
    if (pos == 0) break;
    pos = text.rfind(cmd, pos - 1);
  }
  return std::string_view::npos;
}

// ------------------------------------------------------------------------------------------
// Exact rationals on 128 bits (nullopt on overflow)
// ------------------------------------------------------------------------------------------
struct Rat {
  i128 p = 0;
  i128 q = 1;  // > 0, gcd(p, q) == 1
};

i128 abs128(i128 v) { return v < 0 ? -v : v; }
i128 gcd128(i128 a, i128 b) {
  a = abs128(a);
  b = abs128(b);
  while (b != 0) {
    i128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

std::optional<Rat> make_rat(i128 p, i128 q) {
  if (q == 0) return std::nullopt;
  // -min would overflow
  constexpr i128 kMin = static_cast<i128>(static_cast<unsigned __int128>(1) << 127);
  if (p == kMin || q == kMin) return std::nullopt;
  if (q < 0) {
    p = -p;
    q = -q;
  }
  i128 g = gcd128(p, q);
  if (g > 1) {
    p /= g;
    q /= g;
  }
  return Rat{p, q};
}
std::optional<Rat> rat_mul(const Rat& a, const Rat& b) {
  i128 g1 = gcd128(a.p, b.q), g2 = gcd128(b.p, a.q);
  if (g1 == 0) g1 = 1;
  if (g2 == 0) g2 = 1;
  i128 p, q;
  if (__builtin_mul_overflow(a.p / g1, b.p / g2, &p)) return std::nullopt;
  if (__builtin_mul_overflow(a.q / g2, b.q / g1, &q)) return std::nullopt;
  return make_rat(p, q);
}
std::optional<Rat> rat_add(const Rat& a, const Rat& b) {
  i128 x, y, p, q;
  if (__builtin_mul_overflow(a.p, b.q, &x)) return std::nullopt;
  if (__builtin_mul_overflow(b.p, a.q, &y)) return std::nullopt;
  if (__builtin_add_overflow(x, y, &p)) return std::nullopt;
  if (__builtin_mul_overflow(a.q, b.q, &q)) return std::nullopt;
  return make_rat(p, q);
}
std::optional<Rat> rat_div(const Rat& a, const Rat& b) {
  if (b.p == 0) return std::nullopt;
  auto inv = make_rat(b.q, b.p);
  if (!inv) return std::nullopt;
  return rat_mul(a, *inv);
}
std::optional<i128> isqrt_exact(i128 v) {
  if (v < 0) return std::nullopt;
  i128 r = static_cast<i128>(std::sqrt(static_cast<long double>(v)));
  for (i128 c = (r > 2 ? r - 2 : 0); c <= r + 2; ++c) {
    i128 sq;
    if (__builtin_mul_overflow(c, c, &sq)) break;
    if (sq == v) return c;
  }
  return std::nullopt;
}

// ------------------------------------------------------------------------------------------
// Normalisation
// ------------------------------------------------------------------------------------------

// math-verify's unit list (latex2sympy2_extended.math_normalization.units), verbatim; '.' is a
// regex wildcard there and is one here. ("integer" "point" is one string in Python.)
constexpr std::string_view kUnits[] = {
    "integerpoint", "feet", "sue", "digit", "pound", "meal", "edge", "student", "children ticket",
    "multiple", "east", "degree", "mph", "kmph", "ft", "m square", " m east", "sq m", "deg", "mile",
    "q .", "monkey", "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per",
    "dm", "lt", "gain", "ab", "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .",
    "t", "h", "no change", "men", "soldier", "pie", "bc", "excess", "st", "inches", "noon", "cent",
    "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "\xcf\x80 r 2", "sq", "mark", "l", "toy",
    "coin", "sq . m", "gallon", "\xc2\xb0 f", "profit", "minw", "yr", "women", "am", "pm", "hr",
    "cu cm", "square", "v \xc3\xa2 \xe2\x82\xac \xe2\x84\xa2", "are", "rupee", "rounds", "cubic",
    "cc", "mtr", "s", "ohm", "number", "kmph", "day", "hour", "minute", "min", "second", "man",
    "woman", "sec", "cube", "mt", "sq inch", "mp", "\xe2\x88\x8f cm \xc2\xb3", "hectare", "more",
    "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm", "apple",
    "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre",
    "pi sq m", "s .", "metre", "meter", "inch"};

bool wildcard_equal(std::string_view s, std::string_view pattern) {
  if (s.size() != pattern.size()) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (pattern[i] != '.' && pattern[i] != s[i]) return false;
  return true;
}

// Does `rest` (already right-trimmed) equal UNIT, UNIT+"s" or UNIT+"es"?
bool is_unit_word(std::string_view rest) {
  for (std::string_view u : kUnits) {
    if (wildcard_equal(rest, u)) return true;
    if (rest.size() == u.size() + 1 && rest.back() == 's' && wildcard_equal(rest.substr(0, u.size()), u)) return true;
    if (rest.size() == u.size() + 2 && rest.substr(u.size()) == "es" && wildcard_equal(rest.substr(0, u.size()), u))
      return true;
  }
  return false;
}

// units_regex: (\d|\}|\s)\s*UNIT(?:s|es)?\s*$ -> \1 (leftmost match).
std::string strip_unit_word(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!(is_digit(c) || c == '}' || is_space(c))) continue;
    size_t j = i + 1;
    while (j < s.size() && is_space(s[j])) ++j;
    std::string_view rest(s);
    rest = rest.substr(j);
    while (!rest.empty() && is_space(rest.back())) rest.remove_suffix(1);
    if (!rest.empty() && is_unit_word(rest)) return s.substr(0, i + 1);
  }
  return s;
}

// unit_superscript_regex: (\\(?:text|mbox){.*?})(\^\d|\{\^\d\})?$ removed (leftmost \text{).
std::string strip_trailing_text(const std::string& s) {
  size_t pos = s.find("\\text{");
  if (pos == std::string::npos) return s;
  std::string_view v(s);
  bool ends = false;
  if (!v.empty() && v.back() == '}') ends = true;
  if (v.size() >= 3 && v[v.size() - 3] == '}' && v[v.size() - 2] == '^' && is_digit(v.back())) ends = true;
  if (v.size() >= 5 && v.substr(v.size() - 5, 3) == "}{^" && is_digit(v[v.size() - 2]) && v.back() == '}')
    ends = true;
  if (!ends) return s;
  return s.substr(0, pos);
}

bool word_at(std::string_view s, size_t i, std::string_view w) {
  if (!starts_with(s, i, w)) return false;
  if (i > 0 && is_alpha(s[i - 1])) return false;
  size_t e = i + w.size();
  return e >= s.size() || !is_alpha(s[e]);
}

void rtrim(std::string& s) {
  while (!s.empty() && is_space(s.back())) s.pop_back();
}

// Pass 1: LaTeX commands and characters.
std::string normalize_commands(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t n = s.size();
  for (size_t i = 0; i < n;) {
    char c = s[i];
    if (c == '\\' && i + 1 < n && is_alpha(s[i + 1])) {
      size_t j = i + 1;
      while (j < n && is_alpha(s[j])) ++j;
      std::string_view name = s.substr(i + 1, j - i - 1);
      i = j;
      static constexpr std::string_view kDrop[] = {
          "left", "right", "mleft", "mright", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "Biggl",
          "Biggr", "big", "Big", "bigg", "Bigg", "displaystyle", "textstyle", "circ", "degree"};
      static constexpr std::string_view kText[] = {"mathrm", "mathit", "mathbf", "mathsf", "mathtt",
                                                   "textbf", "textit", "textrm", "textnormal", "textup",
                                                   "textsf", "texttt", "mbox", "operatorname", "text"};
      bool done = false;
      for (auto d : kDrop)
        if (name == d) done = true;
      if (done) continue;
      for (auto t : kText)
        if (name == t) {
          out += "\\text";
          done = true;
        }
      if (done) continue;
      if (name == "dfrac" || name == "tfrac" || name == "cfrac") {
        out += "\\frac";
      } else if (name == "lbrace") {
        out += "\\{";
      } else if (name == "rbrace") {
        out += "\\}";
      } else if (name == "vert" || name == "lvert" || name == "rvert") {
        out += '|';
      } else if (name == "quad" || name == "qquad") {
        out += ' ';
      } else if (name == "ldots" || name == "dots" || name == "cdots") {
        out += ' ';
      } else if (name == "le" || name == "leq" || name == "leqslant") {
        out += "\\le ";
      } else if (name == "ge" || name == "geq" || name == "geqslant") {
        out += "\\ge ";
      } else if (name == "ne" || name == "neq") {
        out += "\\ne ";
      } else if (name == "lt") {
        out += '<';
      } else if (name == "gt") {
        out += '>';
      } else {
        out += '\\';
        out += name;
      }
      continue;
    }
    if (c == '\\' && i + 1 < n) {
      char d = s[i + 1];
      i += 2;
      switch (d) {
        case '!':
        case '$':
          break;
        case ',':
          // thin space as a thousands separator: digit \, ddd (not followed by a digit)
          if (!out.empty() && is_digit(out.back()) && i + 3 <= n && is_digit(s[i]) && is_digit(s[i + 1]) &&
              is_digit(s[i + 2]) && (i + 3 == n || !is_digit(s[i + 3])))
            break;
          out += ' ';
          break;
        case ';':
        case ':':
        case '>':
        case ' ':
        case '\n':
        case '\t':
          out += ' ';
          break;
        case '\\':
          out += ' ';
          break;
        case '%':
          out += '%';
          break;
        default:
          out += '\\';
          out += d;
      }
      continue;
    }
    if (c == '$' || c == '"') {
      ++i;
      continue;
    }
    if (c == '~' || c == '\n' || c == '\t' || c == '\r') {
      out += ' ';
      ++i;
      continue;
    }
    if (c == '{' && starts_with(s, i, "{,}")) {
      out += ',';
      i += 3;
      continue;
    }
    if (starts_with(s, i, "\xc2\xb0")) {  // degree sign
      i += 2;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// `\text{ and }` / `\text{ or }` (with an optional leading comma and spaces) -> ","
std::string replace_text_and_or(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (starts_with(s, i, "\\text{")) {
      size_t j = i + 6;
      while (j < s.size() && is_space(s[j])) ++j;
      size_t w = 0;
      if (starts_with(s, j, "and")) w = 3;
      else if (starts_with(s, j, "or")) w = 2;
      if (w) {
        size_t k = j + w;
        while (k < s.size() && is_space(s[k])) ++k;
        if (k < s.size() && s[k] == '}') {
          rtrim(out);
          if (!out.empty() && out.back() == ',') out.pop_back();
          out += ',';
          i = k + 1;
          continue;
        }
      }
    }
    out += s[i++];
  }
  return out;
}

// Words: and/or -> ","; percent/percentage/pct -> "%"; infinity/inf -> \infty.
std::string replace_words(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    bool after_backslash = i > 0 && s[i - 1] == '\\';
    if (!after_backslash) {
      if (word_at(s, i, "and") || word_at(s, i, "or")) {
        size_t w = s[i] == 'a' ? 3 : 2;
        rtrim(out);
        if (!out.empty() && out.back() == ',') out.pop_back();
        out += ',';
        i += w;
        continue;
      }
      if (word_at(s, i, "percentage") || word_at(s, i, "percent") || word_at(s, i, "pct")) {
        size_t w = word_at(s, i, "percentage") ? 10 : word_at(s, i, "percent") ? 7 : 3;
        rtrim(out);
        out += '%';
        i += w;
        continue;
      }
      if (starts_with(s, i, "infinity")) {
        out += "\\infty";
        i += 8;
        continue;
      }
      if (starts_with(s, i, "inf") && !starts_with(s, i, "infty")) {
        out += "\\infty";
        i += 3;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

std::string normalize_impl(std::string_view answer) {
  std::string s = normalize_commands(answer);
  // degrees written as a superscript leave an empty ^{} or a bare ^ behind
  s = replace_all(std::move(s), "^{}", "");
  s = replace_all(std::move(s), "\\text{}", "");
  s = replace_all(std::move(s), "\\text{ }", "");
  s = replace_all(std::move(s), "\\text{percentage}", "%");
  s = replace_all(std::move(s), "\\text{percent}", "%");
  s = replace_all(std::move(s), "\\text{pct}", "%");
  s = replace_all(std::move(s), "\\text{%}", "%");
  s = replace_text_and_or(s);
  s = replace_words(s);
  {
    std::string_view t = trim(s);
    s = std::string(t);
  }
  while (!s.empty() && s.back() == '^') {  // "30^" left by "30^\circ"
    s.pop_back();
    rtrim(s);
  }
  if (!s.empty() && s.back() == '.') {  // one trailing period ("5.", "10 cm.")
    s.pop_back();
    rtrim(s);
  }
  // units
  {
    std::string t(trim(strip_trailing_text(s)));
    if (!t.empty() && t != s) s = t;
    for (int k = 0; k < 2; ++k) {
      std::string u = strip_unit_word(s);
      if (!u.empty() && u != s) s = u;
    }
  }
  return std::string(trim(s));
}

// ------------------------------------------------------------------------------------------
// Expression tree
// ------------------------------------------------------------------------------------------
enum class K : uint8_t { Num, Sym, Pi, E, Inf, Add, Neg, Mul, Div, Pow, Func, Fact, Pct, List, Rel, Union };
enum class RelOp : uint8_t { Eq, Lt, Le, Gt, Ge, Ne };

struct Node {
  K k = K::Num;
  std::vector<Node> kids;
  std::string name;  // Sym / Func name
  // Num
  std::optional<Rat> q;  // exact value
  double d = 0.0;
  bool decimal = false;  // written with a decimal point
  // List
  bool is_set = false;
  char open = 0, close = 0;
  // Rel
  std::vector<RelOp> ops;
};

Node leaf(K k) {
  Node n;
  n.k = k;
  return n;
}
Node unary_node(K k, Node a) {
  Node n;
  n.k = k;
  n.kids.push_back(std::move(a));
  return n;
}
Node binary_node(K k, Node a, Node b) {
  Node n;
  n.k = k;
  n.kids.push_back(std::move(a));
  n.kids.push_back(std::move(b));
  return n;
}
Node func_node(std::string name, std::vector<Node> args) {
  Node n;
  n.k = K::Func;
  n.name = std::move(name);
  n.kids = std::move(args);
  return n;
}

struct ParseError {};

// Number from a digit string with an optional decimal point position.
Node number_node(const std::string& int_digits, const std::string& frac_digits) {
  Node n;
  n.k = K::Num;
  n.decimal = !frac_digits.empty();
  std::string all = int_digits + frac_digits;
  std::string text = (int_digits.empty() ? std::string("0") : int_digits) + "." + frac_digits + "0";
  n.d = std::strtod(text.c_str(), nullptr);
  i128 p = 0;
  bool ok = all.size() <= 36;
  for (char c : all) {
    if (!ok) break;
    p = p * 10 + (c - '0');
  }
  if (ok) {
    i128 q = 1;
    for (size_t i = 0; i < frac_digits.size(); ++i) q *= 10;
    n.q = make_rat(p, q);
  }
  return n;
}

constexpr std::string_view kGreek[] = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "rho", "sigma", "tau", "upsilon", "phi",
    "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Upsilon",
    "Phi", "Psi", "Omega"};
constexpr std::string_view kFuncs[] = {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos",
                                       "arctan", "sinh", "cosh", "tanh", "ln", "log", "lg", "exp"};

class Parser {
 public:
  explicit Parser(std::string_view s, int depth = 0) : s_(s), depth_(depth) {}

  Node parse_all() {
    Node n = list_until(true);
    ws();
    if (i_ != s_.size()) throw ParseError{};
    return n;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
  int depth_ = 0;
  int bracket_depth_ = 0;

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& pp) : p(pp) {
      if (++p.depth_ > kMaxDepth) throw ParseError{};
    }
    ~DepthGuard() { --p.depth_; }
  };

  void ws() {
    while (i_ < s_.size() && is_space(s_[i_])) ++i_;
  }
  bool at_end() {
    ws();
    return i_ >= s_.size();
  }
  char peek() {
    ws();
    return i_ < s_.size() ? s_[i_] : '\0';
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  // A command \name not followed by a letter.
  bool at_cmd(std::string_view name) {
    ws();
    if (i_ >= s_.size() || s_[i_] != '\\') return false;
    if (!starts_with(s_, i_ + 1, name)) return false;
    size_t e = i_ + 1 + name.size();
    return e >= s_.size() || !is_alpha(s_[e]);
  }
  bool eat_cmd(std::string_view name) {
    if (!at_cmd(name)) return false;
    i_ += 1 + name.size();
    return true;
  }
  std::string_view peek_cmd_name() {
    ws();
    if (i_ + 1 >= s_.size() || s_[i_] != '\\' || !is_alpha(s_[i_ + 1])) return {};
    size_t j = i_ + 1;
    while (j < s_.size() && is_alpha(s_[j])) ++j;
    return s_.substr(i_ + 1, j - i_ - 1);
  }

  // Comma/semicolon separated items up to `closers` (empty: end of input). One item is returned
  // as itself; several as a set (top level and braces) or a tuple (brackets, set by the caller).
  Node list_until(bool top) {
    DepthGuard g(*this);
    std::vector<Node> items;
    items.push_back(union_of_relations());
    while (true) {
      ws();
      if (i_ < s_.size() && (s_[i_] == ',' || s_[i_] == ';')) {
        ++i_;
        items.push_back(union_of_relations());
        continue;
      }
      break;
    }
    if (items.size() == 1) return std::move(items[0]);
    Node n;
    n.k = K::List;
    n.is_set = top;
    n.kids = std::move(items);
    return n;
  }

  std::optional<RelOp> relop() {
    ws();
    if (i_ >= s_.size()) return std::nullopt;
    char c = s_[i_];
    auto next = [&](size_t k) { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; };
    if (c == '<' && next(1) == '=') return i_ += 2, RelOp::Le;
    if (c == '>' && next(1) == '=') return i_ += 2, RelOp::Ge;
    if (c == '!' && next(1) == '=') return i_ += 2, RelOp::Ne;
    if (c == '=') {
      i_ += (next(1) == '=') ? 2 : 1;
      return RelOp::Eq;
    }
    if (c == '<') return i_ += 1, RelOp::Lt;
    if (c == '>') return i_ += 1, RelOp::Gt;
    if (eat_cmd("le")) return RelOp::Le;
    if (eat_cmd("ge")) return RelOp::Ge;
    if (eat_cmd("ne")) return RelOp::Ne;
    if (eat_cmd("in")) return RelOp::Eq;
    return std::nullopt;
  }

  // a \cup b \cup ... (lowest precedence inside a list item)
  Node union_of_relations() {
    Node first = relation();
    if (!at_cmd("cup")) return first;
    Node u = leaf(K::Union);
    u.kids.push_back(std::move(first));
    while (eat_cmd("cup")) u.kids.push_back(relation());
    return u;
  }

  Node relation() {
    Node first = expr();
    std::vector<Node> kids;
    std::vector<RelOp> ops;
    while (auto op = relop()) {
      if (kids.empty()) kids.push_back(std::move(first));
      ops.push_back(*op);
      kids.push_back(expr());
    }
    if (ops.empty()) return first;
    Node n;
    n.k = K::Rel;
    n.kids = std::move(kids);
    n.ops = std::move(ops);
    return n;
  }

  Node expr() {
    DepthGuard g(*this);
    Node left = term();
    while (true) {
      if (eat('+')) {
        left = add(std::move(left), term());
      } else if (peek() == '-') {
        ++i_;
        left = add(std::move(left), unary_node(K::Neg, term()));
      } else {
        break;
      }
    }
    return left;
  }
  static Node add(Node a, Node b) {
    if (a.k == K::Add) {
      a.kids.push_back(std::move(b));
      return a;
    }
    return binary_node(K::Add, std::move(a), std::move(b));
  }

  bool starts_implicit_factor() {
    ws();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (is_digit(c) || is_alpha(c) || c == '(' || c == '{') return true;
    if (c == '.' && i_ + 1 < s_.size() && is_digit(s_[i_ + 1])) return true;
    if (c == '\\') {
      std::string_view name = peek_cmd_name();
      if (name.empty()) return false;
      if (name == "frac" || name == "sqrt" || name == "pi" || name == "infty" || name == "text" ||
          name == "binom" || name == "dbinom" || name == "tbinom")
        return true;
      for (auto gname : kGreek)
        if (name == gname) return true;
      for (auto f : kFuncs)
        if (name == f) return true;
    }
    return false;
  }

  Node term() {
    DepthGuard g(*this);
    Node left = unary();
    for (int factors = 1;; ++factors) {
      if (factors > kMaxFactors) throw ParseError{};  // keeps the tree shallow
      if (eat('*') || eat_cmd("cdot") || eat_cmd("times") || eat_cmd("ast")) {
        left = binary_node(K::Mul, std::move(left), unary());
      } else if (eat('/') || eat_cmd("div")) {
        left = binary_node(K::Div, std::move(left), unary());
      } else if (starts_implicit_factor()) {
        left = binary_node(K::Mul, std::move(left), power());
      } else {
        break;
      }
    }
    return left;
  }

  Node unary() {
    DepthGuard g(*this);
    if (eat('-')) return unary_node(K::Neg, unary());
    if (eat('+')) return unary();
    return power();
  }

  Node power() {
    DepthGuard g(*this);
    Node base = postfix();
    if (eat('^')) {
      Node e = script_arg();
      base = binary_node(K::Pow, std::move(base), std::move(e));
      while (true) {  // (x^2)! is rare; allow a trailing factorial/percent
        if (peek() == '!' && !(i_ + 1 < s_.size() && s_[i_ + 1] == '=')) {
          ++i_;
          base = unary_node(K::Fact, std::move(base));
        } else if (eat('%')) {
          base = unary_node(K::Pct, std::move(base));
        } else {
          break;
        }
      }
    }
    return base;
  }

  // Argument of ^: {group}, a sign and an argument, or a single token.
  Node script_arg() {
    DepthGuard g(*this);
    ws();
    if (eat('-')) return unary_node(K::Neg, script_arg());
    if (eat('+')) return script_arg();
    return single_arg();
  }

  // Argument of \frac, \sqrt, \binom, ^: a braced group or one token (digit, letter, command).
  Node single_arg() {
    ws();
    if (i_ >= s_.size()) throw ParseError{};
    char c = s_[i_];
    if (c == '{') {
      ++i_;
      ++bracket_depth_;
      Node n = list_until(false);
      --bracket_depth_;
      if (!eat('}')) throw ParseError{};
      if (n.k == K::List) n.is_set = true;
      return n;
    }
    if (is_digit(c)) {
      ++i_;
      return number_node(std::string(1, c), "");
    }
    if (is_alpha(c)) {
      ++i_;
      return letter_symbol(c);
    }
    if (c == '\\') return primary();
    throw ParseError{};
  }

  Node postfix() {
    DepthGuard g(*this);
    Node n = primary();
    while (true) {
      ws();
      if (i_ < s_.size() && s_[i_] == '!' && !(i_ + 1 < s_.size() && s_[i_ + 1] == '=')) {
        ++i_;
        n = unary_node(K::Fact, std::move(n));
      } else if (eat('%')) {
        n = unary_node(K::Pct, std::move(n));
      } else {
        break;
      }
    }
    return n;
  }

  Node letter_symbol(char c) {
    if (c == 'e') return leaf(K::E);
    Node n = leaf(K::Sym);
    n.name = std::string(1, lower(c));
    return n;
  }

  // Raw text of a balanced {...} group starting at i_ (which must be '{').
  std::string_view raw_group() {
    ws();
    if (i_ >= s_.size() || s_[i_] != '{') throw ParseError{};
    int depth = 0;
    size_t start = i_ + 1;
    for (size_t j = i_; j < s_.size(); ++j) {
      if (s_[j] == '{') ++depth;
      else if (s_[j] == '}') {
        if (--depth == 0) {
          i_ = j + 1;
          return s_.substr(start, j - start);
        }
      }
    }
    throw ParseError{};
  }

  Node number() {
    std::string ip, fp;
    while (i_ < s_.size() && is_digit(s_[i_])) ip += s_[i_++];
    // thousands separators at the top level: [1-9]\d{0,2}(,\d{3})+ not followed by a digit
    if (bracket_depth_ == 0 && !ip.empty() && ip.size() <= 3 && ip[0] != '0') {
      while (i_ + 3 < s_.size() && s_[i_] == ',' && is_digit(s_[i_ + 1]) && is_digit(s_[i_ + 2]) &&
             is_digit(s_[i_ + 3]) && (i_ + 4 >= s_.size() || !is_digit(s_[i_ + 4]))) {
        ip.append(s_.substr(i_ + 1, 3));
        i_ += 4;
      }
    }
    if (i_ + 1 < s_.size() && s_[i_] == '.' && is_digit(s_[i_ + 1])) {
      ++i_;
      while (i_ < s_.size() && is_digit(s_[i_])) fp += s_[i_++];
    }
    Node n = number_node(ip, fp);
    // mixed number: 2\frac{1}{2} (integer literal followed by a fraction of integer literals)
    if (fp.empty() && !ip.empty()) {
      size_t save = i_;
      if (eat_cmd("frac")) {
        auto int_arg = [&]() -> std::optional<std::string> {
          ws();
          if (i_ < s_.size() && is_digit(s_[i_]) ) {
            return std::string(1, s_[i_++]);
          }
          if (i_ < s_.size() && s_[i_] == '{') {
            size_t j = i_ + 1;
            while (j < s_.size() && is_space(s_[j])) ++j;
            size_t st = j;
            while (j < s_.size() && is_digit(s_[j])) ++j;
            size_t en = j;
            while (j < s_.size() && is_space(s_[j])) ++j;
            if (en > st && j < s_.size() && s_[j] == '}') {
              i_ = j + 1;
              return std::string(s_.substr(st, en - st));
            }
          }
          return std::nullopt;
        };
        auto a = int_arg();
        auto b = a ? int_arg() : std::nullopt;
        if (a && b) {
          // not a mixed number if more multiplication follows, e.g. 2\frac{1}{2}x
          size_t after = i_;
          bool more = starts_implicit_factor() || peek() == '^';
          i_ = after;
          if (!more) {
            Node frac = binary_node(K::Div, number_node(*a, ""), number_node(*b, ""));
            return binary_node(K::Add, std::move(n), std::move(frac));
          }
        }
      }
      i_ = save;
    }
    return n;
  }

  Node bracketed(char open, std::string_view closers) {
    ++bracket_depth_;
    Node n = list_until(false);
    --bracket_depth_;
    ws();
    if (i_ >= s_.size() || closers.find(s_[i_]) == std::string_view::npos) throw ParseError{};
    char close = s_[i_++];
    if (n.k != K::List) {
      if ((open == '(' && close != ')') || (open == '[' && close != ']')) {
        // "(a]" with one element is not an interval; tolerate "[x]" as grouping only
        throw ParseError{};
      }
      return n;
    }
    n.is_set = false;
    n.open = open;
    n.close = close;
    return n;
  }

  Node function_call(std::string_view name) {
    std::optional<Node> exponent;
    std::optional<Node> base;
    for (int k = 0; k < 2; ++k) {
      if (eat('^')) exponent = script_arg();
      else if (eat('_')) base = script_arg();
    }
    Node arg;
    ws();
    if (i_ < s_.size() && s_[i_] == '(') {
      ++i_;
      ++bracket_depth_;
      arg = list_until(false);
      --bracket_depth_;
      if (!eat(')')) throw ParseError{};
    } else {
      arg = power();
    }
    Node f;
    if (name == "log" && base) {
      f = func_node("logb", {});
      f.kids.push_back(std::move(arg));
      f.kids.push_back(std::move(*base));
    } else {
      std::string fname(name);
      if (fname == "lg") fname = "log";
      f = func_node(fname, {});
      f.kids.push_back(std::move(arg));
    }
    if (exponent) f = binary_node(K::Pow, std::move(f), std::move(*exponent));
    return f;
  }

  Node primary() {
    DepthGuard g(*this);
    ws();
    if (i_ >= s_.size()) throw ParseError{};
    char c = s_[i_];
    if (is_digit(c) || (c == '.' && i_ + 1 < s_.size() && is_digit(s_[i_ + 1]))) return number();
    if (is_alpha(c)) {
      size_t j = i_;
      while (j < s_.size() && is_alpha(s_[j])) ++j;
      if (j - i_ >= 3) {  // a word
        Node n = leaf(K::Sym);
        for (size_t k = i_; k < j; ++k) n.name += lower(s_[k]);
        i_ = j;
        return n;
      }
      ++i_;
      Node n = letter_symbol(c);
      if (n.k == K::Sym) subscript(n);
      return n;
    }
    if (c == '(') {
      ++i_;
      return bracketed('(', ")]");
    }
    if (c == '[') {
      ++i_;
      return bracketed('[', "])");
    }
    if (c == '{') {
      ++i_;
      ++bracket_depth_;
      Node n = list_until(false);
      --bracket_depth_;
      if (!eat('}')) throw ParseError{};
      if (n.k == K::List) n.is_set = true;
      return n;
    }
    if (c == '|') {
      ++i_;
      ++bracket_depth_;
      Node inner = expr();
      --bracket_depth_;
      if (!eat('|')) throw ParseError{};
      return func_node("abs", {std::move(inner)});
    }
    if (c != '\\') throw ParseError{};
    if (i_ + 1 < s_.size() && s_[i_ + 1] == '{') {
      i_ += 2;
      ++bracket_depth_;
      Node n = list_until(false);
      --bracket_depth_;
      ws();
      if (!starts_with(s_, i_, "\\}")) throw ParseError{};
      i_ += 2;
      if (n.k != K::List) {
        Node set;
        set.k = K::List;
        set.kids.push_back(std::move(n));
        n = std::move(set);
      }
      n.is_set = true;
      n.open = n.close = 0;
      return n;
    }
    std::string_view name = peek_cmd_name();
    if (name.empty()) throw ParseError{};
    i_ += 1 + name.size();
    if (name == "frac") {
      Node a = single_arg();
      Node b = single_arg();
      return binary_node(K::Div, std::move(a), std::move(b));
    }
    if (name == "binom" || name == "dbinom" || name == "tbinom") {
      Node a = single_arg();
      Node b = single_arg();
      return func_node("binom", {std::move(a), std::move(b)});
    }
    if (name == "sqrt") {
      ws();
      if (i_ < s_.size() && s_[i_] == '[') {
        ++i_;
        ++bracket_depth_;
        Node idx = expr();
        --bracket_depth_;
        if (!eat(']')) throw ParseError{};
        Node x = single_arg();
        return func_node("root", {std::move(x), std::move(idx)});
      }
      return func_node("sqrt", {single_arg()});
    }
    if (name == "pi") return leaf(K::Pi);
    if (name == "infty") return leaf(K::Inf);
    if (name == "text") {
      std::string_view raw = raw_group();
      std::string compact;
      bool letters_only = true;
      for (char ch : raw) {
        if (is_space(ch)) continue;
        compact += lower(ch);
        if (!is_alpha(ch)) letters_only = false;
      }
      if (compact.empty()) throw ParseError{};
      if (letters_only && compact.size() >= 2) {
        Node n = leaf(K::Sym);
        n.name = compact;
        return n;
      }
      Parser sub(raw, depth_ + 1);
      sub.bracket_depth_ = bracket_depth_;
      return sub.parse_all();
    }
    for (auto gname : kGreek) {
      if (name == gname) {
        Node n = leaf(K::Sym);
        for (char ch : name) n.name += lower(ch);
        subscript(n);
        return n;
      }
    }
    for (auto f : kFuncs)
      if (name == f) return function_call(name);
    throw ParseError{};
  }

  void subscript(Node& sym) {
    ws();
    if (i_ >= s_.size() || s_[i_] != '_') return;
    ++i_;
    ws();
    if (i_ >= s_.size()) throw ParseError{};
    std::string sub;
    if (s_[i_] == '{') {
      for (char ch : raw_group())
        if (!is_space(ch)) sub += lower(ch);
    } else {
      sub = std::string(1, lower(s_[i_++]));
    }
    sym.name += "_" + sub;
  }
};

// ------------------------------------------------------------------------------------------
// Evaluation
// ------------------------------------------------------------------------------------------
struct Env {
  const std::vector<std::string>* names = nullptr;
  const std::vector<double>* values = nullptr;
};

std::optional<Rat> eval_exact(const Node& n) {
  switch (n.k) {
    case K::Num:
      return n.q;
    case K::Neg: {
      auto a = eval_exact(n.kids[0]);
      if (!a) return std::nullopt;
      return make_rat(-a->p, a->q);
    }
    case K::Add: {
      std::optional<Rat> acc = Rat{0, 1};
      for (const auto& k : n.kids) {
        auto v = eval_exact(k);
        if (!v) return std::nullopt;
        acc = rat_add(*acc, *v);
        if (!acc) return std::nullopt;
      }
      return acc;
    }
    case K::Mul: {
      auto a = eval_exact(n.kids[0]);
      if (!a) return std::nullopt;
      auto b = eval_exact(n.kids[1]);
      if (!b) return std::nullopt;
      return rat_mul(*a, *b);
    }
    case K::Div: {
      auto a = eval_exact(n.kids[0]);
      if (!a) return std::nullopt;
      auto b = eval_exact(n.kids[1]);
      if (!b) return std::nullopt;
      return rat_div(*a, *b);
    }
    case K::Pct: {
      auto a = eval_exact(n.kids[0]);
      if (!a) return std::nullopt;
      return rat_div(*a, Rat{100, 1});
    }
    case K::Pow: {
      auto b = eval_exact(n.kids[0]);
      auto e = eval_exact(n.kids[1]);
      if (!b || !e || e->q != 1) return std::nullopt;
      i128 ex = e->p;
      if (ex > 128 || ex < -128) return std::nullopt;
      if (b->p == 0 && ex < 0) return std::nullopt;
      std::optional<Rat> r = Rat{1, 1};
      for (i128 k = 0; k < abs128(ex); ++k) {
        r = rat_mul(*r, *b);
        if (!r) return std::nullopt;
      }
      if (ex < 0) return rat_div(Rat{1, 1}, *r);
      return r;
    }
    case K::Fact: {
      auto a = eval_exact(n.kids[0]);
      if (!a || a->q != 1 || a->p < 0 || a->p > 30) return std::nullopt;
      i128 r = 1;
      for (i128 k = 2; k <= a->p; ++k) r *= k;
      return Rat{r, 1};
    }
    case K::Func: {
      if (n.name == "sqrt") {
        auto a = eval_exact(n.kids[0]);
        if (!a) return std::nullopt;
        auto sp = isqrt_exact(a->p), sq = isqrt_exact(a->q);
        if (!sp || !sq) return std::nullopt;
        return make_rat(*sp, *sq);
      }
      if (n.name == "binom") {
        auto a = eval_exact(n.kids[0]), b = eval_exact(n.kids[1]);
        if (!a || !b || a->q != 1 || b->q != 1 || a->p < 0 || a->p > 120 || b->p < 0 || b->p > a->p)
          return std::nullopt;
        i128 k = std::min(b->p, a->p - b->p), r = 1;
        for (i128 j = 1; j <= k; ++j) {
          if (__builtin_mul_overflow(r, a->p - k + j, &r)) return std::nullopt;
          r /= j;
        }
        return Rat{r, 1};
      }
      if (n.name == "abs") {
        auto a = eval_exact(n.kids[0]);
        if (!a) return std::nullopt;
        return Rat{abs128(a->p), a->q};
      }
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

double eval_num(const Node& n, const Env& env) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  switch (n.k) {
    case K::Num:
      return n.d;
    case K::Sym: {
      if (env.names)
        for (size_t i = 0; i < env.names->size(); ++i)
          if ((*env.names)[i] == n.name) return (*env.values)[i];
      return kNaN;
    }
    case K::Pi:
      return 3.14159265358979323846;
    case K::E:
      return 2.71828182845904523536;
    case K::Inf:
      return std::numeric_limits<double>::infinity();
    case K::Neg:
      return -eval_num(n.kids[0], env);
    case K::Add: {
      double s = 0;
      for (const auto& k : n.kids) s += eval_num(k, env);
      return s;
    }
    case K::Mul:
      return eval_num(n.kids[0], env) * eval_num(n.kids[1], env);
    case K::Div: {
      double b = eval_num(n.kids[1], env);
      if (b == 0.0) return kNaN;
      return eval_num(n.kids[0], env) / b;
    }
    case K::Pct:
      return eval_num(n.kids[0], env) / 100.0;
    case K::Pow: {
      double b = eval_num(n.kids[0], env), e = eval_num(n.kids[1], env);
      if (b < 0 && e != std::floor(e)) {
        // odd roots of negative numbers, e.g. (-8)^(1/3)
        double inv = 1.0 / e;
        if (std::abs(inv - std::round(inv)) < 1e-12 && static_cast<long long>(std::round(inv)) % 2 != 0)
          return -std::pow(-b, e);
        return kNaN;
      }
      return std::pow(b, e);
    }
    case K::Fact: {
      double a = eval_num(n.kids[0], env);
      if (!(a >= 0) || a != std::floor(a) || a > 170) return kNaN;
      return std::tgamma(a + 1);
    }
    case K::Func: {
      double a = eval_num(n.kids[0], env);
      const std::string& f = n.name;
      if (f == "sqrt") return a < 0 ? kNaN : std::sqrt(a);
      if (f == "root") {
        double k = eval_num(n.kids[1], env);
        if (k == 0) return kNaN;
        if (a < 0) {
          if (k == std::floor(k) && static_cast<long long>(k) % 2 != 0) return -std::pow(-a, 1.0 / k);
          return kNaN;
        }
        return std::pow(a, 1.0 / k);
      }
      if (f == "abs") return std::abs(a);
      if (f == "sin") return std::sin(a);
      if (f == "cos") return std::cos(a);
      if (f == "tan") return std::tan(a);
      if (f == "cot") return 1.0 / std::tan(a);
      if (f == "sec") return 1.0 / std::cos(a);
      if (f == "csc") return 1.0 / std::sin(a);
      if (f == "arcsin") return std::asin(a);
      if (f == "arccos") return std::acos(a);
      if (f == "arctan") return std::atan(a);
      if (f == "sinh") return std::sinh(a);
      if (f == "cosh") return std::cosh(a);
      if (f == "tanh") return std::tanh(a);
      if (f == "ln") return a <= 0 ? kNaN : std::log(a);
      if (f == "log") return a <= 0 ? kNaN : std::log10(a);
      if (f == "exp") return std::exp(a);
      if (f == "logb") {
        double b = eval_num(n.kids[1], env);
        if (a <= 0 || b <= 0 || b == 1) return kNaN;
        return std::log(a) / std::log(b);
      }
      if (f == "binom") {
        double b = eval_num(n.kids[1], env);
        if (a != std::floor(a) || b != std::floor(b) || b < 0 || a < b || a > 1000) return kNaN;
        double r = 1;
        for (double j = 1; j <= b; ++j) r = r * (a - b + j) / j;
        return std::round(r);
      }
      return kNaN;
    }
    default:
      return kNaN;
  }
}

void collect_symbols(const Node& n, std::vector<std::string>& out) {
  if (n.k == K::Sym) {
    if (std::find(out.begin(), out.end(), n.name) == out.end()) out.push_back(n.name);
    return;
  }
  for (const auto& k : n.kids) collect_symbols(k, out);
}

// Fixed, irrational-looking sample values for the identity test.
constexpr double kSamples[] = {0.5772156649, 1.4142135624, 2.7182818285, 0.6931471806, 1.6180339887,
                               2.2360679775, 0.3183098862, 1.7320508076, 1.2020569032, 0.8862269255,
                               2.6457513111, 1.3862943611, 0.4142135624};
constexpr int kNumPoints = 7;

bool close_rel(double a, double b, double tol) {
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::abs(a - b) <= tol * std::max({1.0, std::abs(a), std::abs(b)});
}

// Numeric identity test over all symbols of a and b. `ratio` mode: a == k*b for one constant k
// (k > 0 when positive_ratio), for comparing relations.
bool agree_at_points(const Node& a, const Node& b, bool ratio, bool positive_ratio) {
  std::vector<std::string> names;
  collect_symbols(a, names);
  collect_symbols(b, names);
  std::vector<double> values(names.size());
  Env env{&names, &values};
  int valid = 0;
  std::optional<double> k;
  int points = names.empty() ? 1 : kNumPoints;
  constexpr int kCount = static_cast<int>(sizeof(kSamples) / sizeof(kSamples[0]));
  for (int p = 0; p < points; ++p) {
    for (size_t j = 0; j < names.size(); ++j) values[j] = kSamples[(p * 5 + static_cast<int>(j) * 3) % kCount];
    double va = eval_num(a, env), vb = eval_num(b, env);
    bool na = std::isnan(va), nb = std::isnan(vb);
    if (na && nb) continue;
    if (na || nb) return false;
    if (!ratio) {
      if (!close_rel(va, vb, names.empty() ? 1e-12 : 1e-9)) return false;
      ++valid;
      continue;
    }
    if (va == 0 && vb == 0) {
      ++valid;
      continue;
    }
    if (va == 0 || vb == 0 || std::isinf(va) || std::isinf(vb)) return false;
    double r = va / vb;
    if (positive_ratio && r <= 0) return false;
    if (!k) k = r;
    else if (!close_rel(*k, r, 1e-9)) return false;
    ++valid;
  }
  return valid > 0;
}

// ------------------------------------------------------------------------------------------
// Comparison
// ------------------------------------------------------------------------------------------
bool equiv(Node g, Node p, int depth);

bool is_equation(const Node& n) {
  if (n.k != K::Rel) return false;
  for (auto op : n.ops)
    if (op != RelOp::Eq) return false;
  return true;
}
bool only_symbols(const Node& n) {
  if (n.k == K::Sym) return true;
  if (n.k == K::Mul) return only_symbols(n.kids[0]) && only_symbols(n.kids[1]);
  return false;
}
bool is_assignment(const Node& n) { return is_equation(n) && only_symbols(n.kids.front()); }

// Single number literal (or a fraction of integer literals), possibly negated and/or a percentage.
struct Atomic {
  bool atomic = false;
  bool decimal = false;
  bool integer = false;
  bool percent = false;
};
Atomic classify(const Node& n0) {
  Atomic a;
  const Node* n = &n0;
  if (n->k == K::Pct) {
    a.percent = true;
    n = &n->kids[0];
  }
  if (n->k == K::Neg) n = &n->kids[0];
  if (n->k == K::Num) {
    a.atomic = true;
    a.decimal = n->decimal;
    a.integer = !n->decimal;
    return a;
  }
  if (n->k == K::Div && n->kids[0].k == K::Num && n->kids[1].k == K::Num && !n->kids[0].decimal &&
      !n->kids[1].decimal) {
    a.atomic = true;
    auto v = eval_exact(*n);
    a.integer = v && v->q == 1;
    return a;
  }
  return {};
}

const Node& strip_pct(const Node& n) { return n.k == K::Pct ? n.kids[0] : n; }

bool round6_equal(const Node& a, const Node& b) {
  auto qa = eval_exact(a), qb = eval_exact(b);
  if (qa && qb) {
    auto r6 = [](const Rat& r) -> std::optional<i128> {
      i128 num;
      if (__builtin_mul_overflow(r.p, static_cast<i128>(1000000), &num)) return std::nullopt;
      i128 fl = num / r.q, rem = num % r.q;
      if (rem < 0) {
        fl -= 1;
        rem += r.q;
      }
      if (rem >= r.q - rem) fl += 1;  // nearest, ties up (no overflow: 0 <= rem < q)
      return fl;
    };
    auto ra = r6(*qa), rb = r6(*qb);
    if (ra && rb) return *ra == *rb;
  }
  Env env;
  double x = eval_num(a, env), y = eval_num(b, env);
  if (std::isnan(x) || std::isnan(y)) return false;
  if (std::isinf(x) || std::isinf(y)) return x == y;
  if (std::abs(x) < 1e9 && std::abs(y) < 1e9) return std::floor(x * 1e6 + 0.5) == std::floor(y * 1e6 + 0.5);
  return close_rel(x, y, 1e-15);
}

bool values_equal(const Node& g, const Node& p) {
  Atomic ga = classify(g), pa = classify(p);
  if (ga.atomic || pa.atomic) {
    std::vector<std::string> syms;
    collect_symbols(g, syms);
    collect_symbols(p, syms);
    if (syms.empty()) {
      if (ga.decimal || pa.decimal) return round6_equal(g, p);
      if (ga.integer && pa.integer) {
        auto a = eval_exact(strip_pct(g)), b = eval_exact(strip_pct(p));
        if (a && b) return a->p == b->p && a->q == b->q;
        Env env;
        return close_rel(eval_num(strip_pct(g), env), eval_num(strip_pct(p), env), 1e-15);
      }
    }
  }
  auto a = eval_exact(g), b = eval_exact(p);
  if (a && b) return a->p == b->p && a->q == b->q;
  return agree_at_points(g, p, false, false);
}

bool relations_equal(const Node& g, const Node& p) {
  if (g.ops.size() != p.ops.size()) return false;
  for (size_t r = 0; r < g.ops.size(); ++r) {
    RelOp go = g.ops[r], po = p.ops[r];
    Node dg = binary_node(K::Add, g.kids[r], unary_node(K::Neg, g.kids[r + 1]));
    Node dp = binary_node(K::Add, p.kids[r], unary_node(K::Neg, p.kids[r + 1]));
    bool ok = false;
    if (go == RelOp::Eq || go == RelOp::Ne) {
      ok = go == po && agree_at_points(dg, dp, true, false);
    } else {
      auto flip = [](RelOp o) {
        switch (o) {
          case RelOp::Lt: return RelOp::Gt;
          case RelOp::Gt: return RelOp::Lt;
          case RelOp::Le: return RelOp::Ge;
          case RelOp::Ge: return RelOp::Le;
          default: return o;
        }
      };
      if (go == po) ok = agree_at_points(dg, dp, true, true);
      else if (flip(go) == po) ok = agree_at_points(dg, unary_node(K::Neg, dp), true, true);
    }
    if (!ok) return false;
  }
  return true;
}

// An interval: two elements in brackets; "(a, b)" only when a < b (else it is a pair).
bool is_interval(const Node& n) {
  if (n.k != K::List || n.is_set || n.kids.size() != 2) return false;
  if (n.open != '(' && n.open != '[') return false;
  if (n.close != ')' && n.close != ']') return false;
  if (n.open == '(' && n.close == ')') {
    Env env;
    double a = eval_num(n.kids[0], env), b = eval_num(n.kids[1], env);
    return !std::isnan(a) && !std::isnan(b) && a < b;
  }
  return true;
}
bool has_closed_end(const Node& n) { return is_interval(n) && (n.open == '[' || n.close == ']'); }

// Elements of sets are sorted by value; tuples and intervals lexicographically by their elements;
// anything that does not evaluate goes last, in written order.
std::vector<double> sort_key(const Node& n) {
  const Node* x = &n;
  if (is_equation(*x)) x = &x->kids.back();
  if (x->k == K::List || x->k == K::Union) {
    std::vector<double> key;
    for (const auto& k : x->kids) {
      auto sub = sort_key(k);
      key.insert(key.end(), sub.begin(), sub.end());
    }
    return key;
  }
  Env env;
  double v = eval_num(*x, env);
  return {std::isnan(v) ? std::numeric_limits<double>::infinity() : v};
}

std::vector<const Node*> sorted_elements(const Node& list) {
  std::vector<std::pair<std::vector<double>, const Node*>> v;
  for (const auto& k : list.kids) v.emplace_back(sort_key(k), &k);
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<const Node*> out;
  for (auto& e : v) out.push_back(e.second);
  return out;
}

bool lists_equal(Node g, Node p, int depth) {
  auto wrap = [](Node n) {
    if (n.k == K::List) return n;
    Node s;
    s.k = K::List;
    s.is_set = true;
    s.kids.push_back(std::move(n));
    return s;
  };
  g = wrap(std::move(g));
  p = wrap(std::move(p));
  bool gi = is_interval(g), pi = is_interval(p);
  if (gi && pi)
    return g.open == p.open && g.close == p.close && equiv(g.kids[0], p.kids[0], depth + 1) &&
           equiv(g.kids[1], p.kids[1], depth + 1);
  if (has_closed_end(g) || has_closed_end(p)) return false;
  if (g.kids.size() != p.kids.size()) return false;
  std::vector<const Node*> ge, pe;
  if (g.is_set) {
    ge = sorted_elements(g);
    pe = sorted_elements(p);
  } else {
    for (const auto& k : g.kids) ge.push_back(&k);
    for (const auto& k : p.kids) pe.push_back(&k);
  }
  for (size_t i = 0; i < ge.size(); ++i)
    if (!equiv(*ge[i], *pe[i], depth + 1)) return false;
  return true;
}

// A product of single-letter symbols written as a word ("ab") against a word symbol.
std::optional<std::string> concat_symbols(const Node& n) {
  if (n.k == K::Sym) return n.name;
  if (n.k == K::E) return std::string("e");
  if (n.k == K::Mul) {
    auto a = concat_symbols(n.kids[0]), b = concat_symbols(n.kids[1]);
    if (a && b) return *a + *b;
  }
  return std::nullopt;
}

bool equiv(Node g, Node p, int depth) {
  if (depth > kMaxDepth) return false;
  if (is_assignment(g)) {
    Node r = binary_node(K::Rel, g.kids.front(), g.kids.back());
    r.ops = {RelOp::Eq};
    g = std::move(r);
  }
  if (is_assignment(p)) {
    Node r = binary_node(K::Rel, p.kids.front(), p.kids.back());
    r.ops = {RelOp::Eq};
    p = std::move(r);
  }
  bool g_eq = is_equation(g), p_eq = is_equation(p);
  if (p_eq && !g_eq) {
    Node rhs = p.kids.back();
    p = std::move(rhs);
  } else if (is_assignment(g) && !p_eq) {
    Node rhs = g.kids.back();
    g = std::move(rhs);
  }
  if (g.k == K::Union || p.k == K::Union) {
    if (g.k != p.k || g.kids.size() != p.kids.size()) return false;
    auto ge = sorted_elements(g), pe = sorted_elements(p);
    for (size_t i = 0; i < ge.size(); ++i)
      if (!equiv(*ge[i], *pe[i], depth + 1)) return false;
    return true;
  }
  if (g.k == K::Rel && p.k == K::Rel) return relations_equal(g, p);
  if (g.k == K::Rel || p.k == K::Rel) return false;
  if (g.k == K::List || p.k == K::List) return lists_equal(std::move(g), std::move(p), depth);
  if ((g.k == K::Sym && g.name.size() > 1) || (p.k == K::Sym && p.name.size() > 1)) {
    auto a = concat_symbols(g), b = concat_symbols(p);
    if (a && b && *a == *b) return true;
  }
  return values_equal(g, p);
}

// `a \pm b` (one \pm or \mp at brace depth 0) -> "{a+(b)}, {a-(b)}" as a set.
std::optional<std::pair<std::string, std::string>> split_pm(const std::string& s) {
  int depth = 0;
  size_t found = std::string::npos;
  size_t len = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '{') ++depth;
    else if (c == '}') --depth;
    else if (c == '\\' && depth == 0 && (starts_with(s, i, "\\pm") || starts_with(s, i, "\\mp")) &&
             (i + 3 >= s.size() || !is_alpha(s[i + 3]))) {
      if (found != std::string::npos) return std::nullopt;
      found = i;
      len = 3;
    }
  }
  if (found == std::string::npos) return std::nullopt;
  std::string left = s.substr(0, found), right = s.substr(found + len);
  bool plus_first = s.compare(found, 3, "\\pm") == 0;
  // keep a relation's left side out of the sum: "x = 1 \pm 2" -> "x = 1 + (2)"
  std::string a = left + (plus_first ? "+(" : "-(") + right + ")";
  std::string b = left + (plus_first ? "-(" : "+(") + right + ")";
  if (std::string(trim(left)).empty() || trim(left).back() == '=') {
    a = left + "(" + right + ")";
    b = left + "-(" + right + ")";
  }
  return std::make_pair(a, b);
}

std::optional<Node> parse_answer(const std::string& s) {
  if (s.empty() || s.size() > kMaxAnswerBytes) return std::nullopt;
  try {
    if (auto pm = split_pm(s)) {
      Node set;
      set.k = K::List;
      set.is_set = true;
      set.kids.push_back(Parser(pm->first).parse_all());
      set.kids.push_back(Parser(pm->second).parse_all());
      return set;
    }
    return Parser(s).parse_all();
  } catch (const ParseError&) {
    return std::nullopt;
  }
}

std::string without_spaces(const std::string& s) {
  std::string out;
  for (char c : s)
    if (!is_space(c)) out += c;
  return out;
}

std::string gold_answer_of(std::string_view gold) {
  if (rfind_command(gold, "\\boxed") != std::string_view::npos ||
      rfind_command(gold, "\\fbox") != std::string_view::npos) {
    if (auto b = extract_last_boxed(gold)) return *b;
  }
  return std::string(gold);
}

}  // namespace

std::optional<std::string> extract_last_boxed(std::string_view text) {
  size_t a = rfind_command(text, "\\boxed");
  size_t b = rfind_command(text, "\\fbox");
  size_t pos;
  size_t len;
  if (a == std::string_view::npos && b == std::string_view::npos) return std::nullopt;
  if (b == std::string_view::npos || (a != std::string_view::npos && a > b)) {
    pos = a;
    len = 6;
  } else {
    pos = b;
    len = 5;
  }
  size_t i = pos + len;
  while (i < text.size() && is_space(text[i])) ++i;
  if (i >= text.size()) return std::nullopt;
  if (text[i] == '{') {
    int depth = 0;
    for (size_t j = i; j < text.size(); ++j) {
      if (text[j] == '{') ++depth;
      else if (text[j] == '}' && --depth == 0) return std::string(text.substr(i + 1, j - i - 1));
    }
    return std::nullopt;  // never closed
  }
  size_t j = i;
  while (j < text.size() && !is_space(text[j]) && text[j] != '$') ++j;
  if (j == i) return std::nullopt;
  return std::string(text.substr(i, j - i));
}

std::string normalize_math_answer(std::string_view answer) { return normalize_impl(answer); }

bool math_answers_equivalent(std::string_view gold_answer, std::string_view predicted_answer) {
  try {
    std::string g = normalize_impl(gold_answer);
    std::string p = normalize_impl(predicted_answer);
    if (g.empty() || p.empty()) return false;
    auto gn = parse_answer(g);
    auto pn = parse_answer(p);
    if (gn && pn) return equiv(std::move(*gn), std::move(*pn), 0);
    return without_spaces(g) == without_spaces(p);
  } catch (const std::exception&) {
    return false;
  }
}

float math_accuracy_reward(std::string_view completion, std::string_view gold) {
  try {
    auto pred = extract_last_boxed(completion);
    if (!pred) return 0.0f;
    return math_answers_equivalent(gold_answer_of(gold), *pred) ? 1.0f : 0.0f;
  } catch (const std::exception&) {
    return 0.0f;
  }
}

}  // namespace reason
