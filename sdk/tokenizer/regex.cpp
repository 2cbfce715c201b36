#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <memory>

#include <utf8proc.h>

#include "core/error.h"
#include "tokenizer/unicode_util.h"

namespace reason::tok {
namespace {

// Unicode White_Space, as class members (no brackets).
constexpr std::string_view kSpaceMembers =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
constexpr std::string_view kHexMembers = "0-9a-fA-F";

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Per-thread matching state shared by every pattern: a match block (only the overall match is
// read, so one ovector pair fits any pattern), a JIT stack that can grow to 8 MiB, and a
// match context whose match limit find_all() scales with the subject: the real patterns are
// linear per match, yet one match can legitimately backtrack over a whole piece (\s*[\r\n]+
// tried on 20 MB of spaces), which PCRE2's fixed default (10M) would refuse; a catastrophic
// pattern from a hostile file still stops after ~64 steps per subject byte.
struct ThreadMatchState {
  pcre2_match_data* md = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  ThreadMatchState() {
    md = pcre2_match_data_create(1, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (ctx) {
      if (jit_stack) pcre2_jit_stack_assign(ctx, nullptr, jit_stack);
    }
  }
  ~ThreadMatchState() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(jit_stack);
  }
  ThreadMatchState(const ThreadMatchState&) = delete;
  ThreadMatchState& operator=(const ThreadMatchState&) = delete;
};

ThreadMatchState& thread_match_state() {
  thread_local ThreadMatchState st;
  if (!st.md || !st.ctx) fail(ErrorCode::OutOfMemory, "tokenizer: cannot allocate PCRE2 match state");
  return st;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, sizeof(buf));
  if (n < 0) return "PCRE2 error " + std::to_string(code);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

}  // namespace

namespace {

// ---- Unicode version gap ---------------------------------------------------------------------
// PCRE2's property tables are as old as the PCRE2 release (10.42: Unicode 14), Oniguruma's in
// HF tokenizers are newer. Characters assigned since (CJK Extension H, new emoji such as U+1FA77
// PINK HEART, ...) would be \p{Cn} to PCRE2 but letters or symbols to HF, and split differently.
// We close the gap as far as utf8proc's tables reach (2.8: Unicode 15): every code point
// utf8proc assigns but PCRE2 calls Cn is added, by its utf8proc category, to the classes
// \p{X} expands to.
constexpr int kNumCategories = 30;  // utf8proc_category_t values
constexpr const char* kCategoryNames[kNumCategories] = {
    "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
    "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};

struct UnicodeGap {
  std::array<std::vector<std::pair<char32_t, char32_t>>, kNumCategories> ranges;  // by category
};

UnicodeGap build_unicode_gap() {
  UnicodeGap gap;
  std::string assigned;  // every code point utf8proc assigns (private use and surrogates aside)
  assigned.reserve(1 << 20);
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
    if (cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS) continue;
    append_utf8(assigned, cp);
  }
  const char* pat = "\\p{Cn}";
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                   &err, &off, nullptr);
  if (!code) return gap;
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  size_t pos = 0;
  while (md && pos < assigned.size()) {
    int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(assigned.data()), assigned.size(), pos, PCRE2_NO_UTF_CHECK,
                         md, nullptr);
    if (rc < 0) break;
    size_t at = pcre2_get_ovector_pointer(md)[0];
    size_t next = at;
    char32_t cp = next_code_point(assigned, next);
    auto& list = gap.ranges[static_cast<size_t>(utf8proc_category(static_cast<utf8proc_int32_t>(cp)))];
    if (!list.empty() && list.back().second + 1 == cp) list.back().second = cp;
    else list.emplace_back(cp, cp);
    pos = next;
  }
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  return gap;
}

const UnicodeGap& unicode_gap() {
  static const UnicodeGap gap = build_unicode_gap();  // thread-safe one-time init
  return gap;
}

// Class members (no brackets) for general category `name` ("L", "Lu", ...): \p{name} plus the
// code points PCRE2 does not know yet. `extra` tells whether any were added.
std::string category_members(std::string_view name, bool& extra) {
  std::string out = "\\p{" + std::string(name) + "}";
  extra = false;
  if (name.empty() || name.size() > 2) return out;
  const UnicodeGap& gap = unicode_gap();
  for (int c = 1; c < kNumCategories; ++c) {
    std::string_view cn = kCategoryNames[c];
    if (cn[0] != name[0] || (name.size() == 2 && cn[1] != name[1])) continue;
    for (auto [lo, hi] : gap.ranges[static_cast<size_t>(c)]) {
      out += fmt::format("\\x{{{:X}}}", static_cast<uint32_t>(lo));
      if (hi != lo) out += fmt::format("-\\x{{{:X}}}", static_cast<uint32_t>(hi));
      extra = true;
    }
  }
  return out;
}

bool is_general_category(std::string_view name) {
  if (name.size() == 1) return std::string_view("LMNPSZC").find(name[0]) != std::string_view::npos;
  if (name.size() != 2) return false;
  for (int c = 1; c < kNumCategories; ++c)
    if (name == kCategoryNames[c]) return true;
  return false;
}

// Appends \p{name} (or its negation) for use inside or outside a character class.
void append_property(std::string& out, std::string_view name, bool negated, bool in_class, std::string_view p) {
  bool extra = false;
  std::string members = is_general_category(name) ? category_members(name, extra) : "\\p{" + std::string(name) + "}";
  if (!extra) {
    out += negated ? "\\P{" + std::string(name) + "}" : members;
    return;
  }
  if (!negated) {
    if (in_class) out += members;
    else out.append("[").append(members).append("]");
    return;
  }
  if (in_class)
    fail(ErrorCode::Unsupported, "regex '{}': a negated property (\\P{{{}}}) inside a character class is not supported", p, name);
  out.append("[^").append(members).append("]");
}

}  // namespace

std::string onig_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t class_start = 0;  // index in p just after '[' or '[^'
  auto word_members = [&] {
    std::string m;
    bool extra;
    for (std::string_view cat : {"L", "M", "Nd", "Pc"}) m += category_members(cat, extra);
    return m;
  };
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[++i];
      switch (e) {
        case 's':
          if (in_class) out += kSpaceMembers;
          else out.append("[").append(kSpaceMembers).append("]");
          continue;
        case 'S':
          if (in_class) fail(ErrorCode::Unsupported, "regex '{}': \\S inside a character class is not supported", p);
          out.append("[^").append(kSpaceMembers).append("]");
          continue;
        case 'w':
          if (in_class) out += word_members();
          else out.append("[").append(word_members()).append("]");
          continue;
        case 'W':
          if (in_class) fail(ErrorCode::Unsupported, "regex '{}': \\W inside a character class is not supported", p);
          out.append("[^").append(word_members()).append("]");
          continue;
        case 'd':
          append_property(out, "Nd", false, in_class, p);
          continue;
        case 'D':
          append_property(out, "Nd", true, in_class, p);
          continue;
        case 'h':
          if (in_class) out += kHexMembers;
          else out.append("[").append(kHexMembers).append("]");
          continue;
        case 'H':
          if (in_class) fail(ErrorCode::Unsupported, "regex '{}': \\H inside a character class is not supported", p);
          out.append("[^").append(kHexMembers).append("]");
          continue;
        case 'p':
        case 'P': {
          bool negated = e == 'P';
          std::string_view name;
          if (i + 1 < p.size() && p[i + 1] == '{') {
            size_t close = p.find('}', i + 2);
            if (close == std::string_view::npos) fail(ErrorCode::Format, "regex '{}': unterminated \\{}{{", p, e);
            name = p.substr(i + 2, close - i - 2);
            i = close;
          } else if (i + 1 < p.size()) {
            name = p.substr(i + 1, 1);
            i += 1;
          } else {
            fail(ErrorCode::Format, "regex '{}': \\{} at the end of the pattern", p, e);
          }
          if (!name.empty() && name[0] == '^') {  // Oniguruma's \p{^X} = \P{X}
            negated = !negated;
            name.remove_prefix(1);
          }
          append_property(out, name, negated, in_class, p);
          continue;
        }
        case 'u':
          if (i + 4 < p.size() && is_hex(p[i + 1]) && is_hex(p[i + 2]) && is_hex(p[i + 3]) && is_hex(p[i + 4])) {
            out.append("\\x{").append(p.substr(i + 1, 4)).append("}");
            i += 4;
            continue;
          }
          fail(ErrorCode::Unsupported, "regex '{}': \\u must be followed by four hex digits", p);
        default:
          out.push_back('\\');
          out.push_back(e);
          continue;
      }
    }
    if (in_class) {
      // ']' right after '[' or '[^' is a literal in both dialects.
      if (c == ']' && i != class_start) in_class = false;
      else if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {
        // POSIX class [:alpha:]: copy through to its closing ":]".
        size_t end = p.find(":]", i + 2);
        if (end != std::string_view::npos) {
          out.append(p.substr(i, end + 2 - i));
          i = end + 1;
          continue;
        }
      } else if (c == '[') {
        fail(ErrorCode::Unsupported, "regex '{}': nested character classes are not supported", p);
      }
      out.push_back(c);
      continue;
    }
    if (c == '[') {
      in_class = true;
      out.push_back(c);
      if (i + 1 < p.size() && p[i + 1] == '^') {
        out.push_back('^');
        ++i;
      }
      class_start = i + 1;
      continue;
    }
    out.push_back(c);
  }
  return out;
}

Regex::Regex(std::string_view pattern, bool literal) : pattern_(pattern) {
  std::string translated = literal ? std::string(pattern) : onig_to_pcre2(pattern);
  // PCRE2_LITERAL admits no UCP (nothing in a literal depends on it).
  uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), opts,
                                   &err, &err_off, nullptr);
  if (!code) {
    fail(ErrorCode::Format, "regex '{}' does not compile (as PCRE2 '{}'): {} at offset {}", pattern, translated,
         pcre2_message(err), static_cast<size_t>(err_off));
  }
  // JIT is an optimisation: when unavailable (or out of executable memory) the interpreter runs.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  ThreadMatchState& ms_state = thread_match_state();
  pcre2_match_data* md = ms_state.md;
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const size_t n = subject.size();
  const uint64_t limit = std::max<uint64_t>(10'000'000, std::min<uint64_t>(UINT32_MAX, uint64_t{64} * n));
  pcre2_set_match_limit(ms_state.ctx, static_cast<uint32_t>(limit));
  size_t pos = 0;
  size_t last_end = kNpos;
  while (pos <= n) {
    // The subject was validated as UTF-8 once for the whole input.
    int rc = pcre2_match(code, s, n, pos, PCRE2_NO_UTF_CHECK, md, ms_state.ctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // the interpreter keeps its backtracking on the heap
      rc = pcre2_match(code, s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, ms_state.ctx);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      fail(ErrorCode::InvalidArgument, "tokenizer: regex '{}' failed on a {}-byte piece of input: {}", pattern_, n,
           pcre2_message(rc));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t ms = ov[0], me = ov[1];
    if (ms == me && last_end == me) {
      if (me >= n) break;
      pos = me + utf8_seq_len(static_cast<uint8_t>(subject[me]));
      continue;
    }
    out.emplace_back(ms, me);
    pos = me;
    last_end = me;
  }
}

}  // namespace reason::tok
