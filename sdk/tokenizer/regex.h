// Internal to the tokenizer: the pre-tokenizer regexes, written for Oniguruma (what HF
// `tokenizers` uses), run by PCRE2 with UTF + UCP and JIT.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace reason::tok {

// Rewrites Oniguruma syntax that PCRE2 reads differently. Returns the PCRE2 pattern, or
// throws Error(Unsupported) naming the construct. Rewritten:
//   \s \S  -> the Unicode White_Space set (PCRE2's UCP \s also takes U+180E; Oniguruma does not)
//   \w \W  -> [\p{L}\p{M}\p{Nd}\p{Pc}] (Oniguruma's Unicode word class)
//   \h \H  -> hex digit (Oniguruma) rather than horizontal space (PCRE2)
//   \uHHHH -> \x{HHHH}
std::string onig_to_pcre2(std::string_view pattern);

// A compiled pattern. Immutable; find_all may run on many threads at once.
class Regex {
 public:
  // `literal`: the pattern is a plain string (HF's {"String": ...} Split pattern).
  // Throws Error(Format) with PCRE2's message and offset when the pattern does not compile.
  Regex(std::string_view pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends to `out` the [start, end) of each successive non-overlapping match in `subject`
  // (valid UTF-8), with Oniguruma's find_iter rule for empty matches (an empty match right at
  // the end of the previous match is skipped by advancing one character).
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;  // as given (for messages)
  void* code_ = nullptr;  // pcre2_code_8*
};

// The GPT-2 pre-tokenizer regex HF's ByteLevel(use_regex=true) applies.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace reason::tok
