// Rule-based rewards for GRPO rollouts and rejection sampling (DeepSeek-R1, section 2.2.2 and
// 2.3.3): math accuracy against a gold answer, the <think> format, language consistency of the
// chain of thought, and weighted sums of these.
//
// Every function here is pure: no global state, no I/O, safe to call from any number of threads
// at once. Inputs are arbitrary bytes: invalid UTF-8, unbalanced braces or huge inputs never
// crash and never throw (except for an unknown language code, see below); they score 0.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace reason {

// ---------------------------------------------------------------------------------------------
// Math accuracy
//
// The reference is Hugging Face math-verify as open-r1/TRL's `accuracy_reward` calls it; the test
// tests/unit/test_rewards.cpp measures agreement on tests/fixtures/rewards/math_verify_pairs.json
// and lists every known disagreement with its reason.
//
// 1. Extraction (prediction): the LAST `\boxed{...}` or `\fbox{...}` of the completion, anywhere
//    in it (think block included), with nested braces matched (every `{`/`}` counts, escaped or
//    not, as math-verify counts them). `\boxed 5` (no brace) takes the text up to the next
//    whitespace or `$`. If the last box is never closed, or there is no box, there is no answer
//    and the reward is 0. Only the last box counts, even when boxes sit next to each other.
// 2. Gold: a plain string. If it contains a `\boxed{}`/`\fbox{}`, its last box is the gold answer;
//    otherwise the whole string is.
// 3. Normalisation (both sides, in this order):
//    - LaTeX commands: `\left` `\right` `\bigl` `\Big`... (delimiter sizing), `\displaystyle`,
//      `\circ`, `\degree`, `\!`, `\$`, `$`, `"` and `°` are dropped; `\mathrm` `\mathit` `\mathbf`
//      `\textbf` `\textit` `\textrm` `\textnormal` `\mbox` `\operatorname`... -> `\text`;
//      `\dfrac` `\tfrac` `\cfrac` -> `\frac`; `\lbrace` `\rbrace` -> `\{` `\}`; `\leq` `\geq`
//      `\neq` -> `\le` `\ge` `\ne`; `\%` -> `%`; `{,}` -> `,`; `\,` between a digit and a group
//      of exactly three digits vanishes (thousands separator), otherwise `\,` `\;` `\:` `\ `
//      `~` `\quad` `\qquad` `\ldots` `\dots` `\cdots` and line breaks are spaces;
//    - an empty `^{}` or trailing `^` left by `^\circ` / `^{\circ}` is dropped;
//    - `\text{percent}` `\text{percentage}` `\text{pct}` and the words percent/percentage/pct
//      -> `%`; `\text{ and }`, `\text{ or }` and the words and/or -> `,`; `infinity` and `inf`
//      -> `\infty` (math-verify's text rules, applied the same way);
//    - surrounding whitespace, then one trailing period, are removed;
//    - units, exactly as math-verify (units=True): from the first `\text{` on, a trailing
//      `\text{...}` (optionally `^2`) is dropped when something remains (10\text{ cm}^2 -> 10);
//      then, twice, a trailing unit word of math-verify's list (days, mph, hours, m, s, kg, ...),
//      optionally plural, after a digit, `}` or space is dropped (7 days -> 7).
//    Answers longer than 4096 bytes after normalisation are compared as strings only.
// 4. Parsing: numbers (`12`, `-3`, `.5`, `1,234,567` with comma groups of three outside brackets,
//    `2\frac{1}{2}` as a mixed number), `+ - * / ^`, `\cdot` `\times` `\div`, implicit
//    multiplication, `\frac{a}{b}` and `\frac12` (single-token arguments), `\sqrt{x}` `\sqrt2`
//    `\sqrt[n]{x}` (real odd roots of negatives), `\pi`, `e`, `\infty`, `n!`, `\binom{n}{k}`,
//    `\log` (base 10), `\ln`, `\log_b`, `\exp`, trigonometric functions, `|x|`, postfix `%`
//    (x/100), single-letter variables (case-insensitive, as math-verify lowercases them), `x_1`,
//    Greek letters, letter runs of 3+ and `\text{word}` as one word symbol (case-insensitive,
//    spaces ignored), relations (`=`, `<`, `>`, `\le`, `\ge`, `\ne`, `\in`), `a \pm b` as the
//    set {a+b, a-b}, unions with `\cup`, and lists: `a, b` and `\{a, b\}` are sets, `(a, b, ...)`
//    tuples, `[a, b]`, `[a, b)`, `(a, b]` intervals; `(a, b)` is an open interval when a < b,
//    otherwise an ordered pair.
// 5. Comparison of gold g with prediction p (math-verify's rules):
//    - "var = value": if p is an equation and g is not, p's last right-hand side is compared;
//      if g is `symbols = value` and p is not an equation, g's right-hand side is compared.
//      Two equations are equal when lhs-rhs of one is a nonzero constant multiple of lhs-rhs of
//      the other; inequalities likewise with a positive multiple (or flipped direction).
//    - Lists: intervals with a closed end only equal intervals with the same brackets and
//      endpoints (open intervals too). Otherwise the lengths must match; if g is a set both
//      sides are sorted by value (tuples lexicographically), else elements are compared in
//      written order. A scalar is a one-element set. Unions compare their sorted parts.
//    - Numbers: if either side is a single decimal literal (`0.5`, `-2.75`, `12.5%`), both are
//      rounded to 6 decimal places and compared (so 1/3 == 0.333333, 1/3 != 0.33). If both are
//      integer literals (possibly with %), the integers are compared (so 50% == 50). Otherwise
//      values are compared exactly when both are rational (128-bit fractions) and numerically
//      (relative 1e-12) when not. A percentage is its value / 100 except in the integer case.
//    - Expressions with variables: equal when they agree at 7 fixed pseudo-random points
//      (relative 1e-9), the probabilistic identity test standing in for sympy's simplify.
//    - If either side fails to parse, the normalised strings are compared, spaces removed.
// ---------------------------------------------------------------------------------------------

// The content of the last complete \boxed{...} / \fbox{...} of `text`, or nullopt.
std::optional<std::string> extract_last_boxed(std::string_view text);

// The answer after the string normalisation of step 3 (what is parsed; useful in logs).
std::string normalize_math_answer(std::string_view answer);

// True if the answer strings (already extracted, e.g. "0.5" and "\frac12") are equivalent.
bool math_answers_equivalent(std::string_view gold_answer, std::string_view predicted_answer);

// 1.0 if the last boxed answer of `completion` is equivalent to `gold`, else 0.0.
float math_accuracy_reward(std::string_view completion, std::string_view gold);

// ---------------------------------------------------------------------------------------------
// Format
//
// 1.0 when the completion is, after optional leading whitespace,
//     <think> THOUGHT </think> ANSWER
// with exactly one `<think>` and one `</think>` (THOUGHT may be anything, also empty, but holds no
// think tag) and ANSWER holding at least one non-whitespace character and no think tag. With
// `require_open_tag = false` the completion may also start inside the think block (DeepSeek-R1's
// chat template puts "<think>\n" at the end of the prompt): then `<think>` may be absent, but
// `</think>` must still appear exactly once. 0.0 otherwise.
// ---------------------------------------------------------------------------------------------
struct FormatOptions {
  bool require_open_tag = true;
};
float format_reward(std::string_view completion, const FormatOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Language consistency (R1 paper 2.3.3: "the proportion of target language words in the CoT")
//
// The CoT is the text between `<think>` (or the start of the completion) and the first
// `</think>` after it (or the end of the completion). Words: maximal runs of letters, marks and
// digits of one script, split at whitespace, punctuation, symbols and script changes; every Han,
// Hiragana or Katakana character is a word of its own. Runs without a letter (numbers) and LaTeX
// commands (a run right after a backslash, e.g. `\frac`) are not words. Invalid UTF-8 bytes
// separate words. Result: target-script words / all words, in [0, 1]; 0 when there are no words.
//
// Target language -> scripts: en, fr, de, es, it, pt, nl, vi, ... (Latin); zh (Han); ja (Han,
// Hiragana, Katakana); ko (Hangul, Han); ru, uk, bg, sr (Cyrillic); el (Greek); ar, fa (Arabic);
// he (Hebrew); hi, mr, ne (Devanagari); th (Thai). Character categories come from utf8proc,
// scripts from Unicode block ranges. An unknown code throws reason::Error (InvalidArgument).
// ---------------------------------------------------------------------------------------------
float language_consistency_reward(std::string_view completion, std::string_view target_language);

// The CoT text that language_consistency_reward scores.
std::string_view chain_of_thought(std::string_view completion);

// Word counts behind language_consistency_reward.
struct LanguageWordCounts {
  size_t target_words = 0;
  size_t total_words = 0;
};
LanguageWordCounts count_language_words(std::string_view text, std::string_view target_language);

// ---------------------------------------------------------------------------------------------
// Weighted sums
// ---------------------------------------------------------------------------------------------
enum class RewardKind {
  MathAccuracy,         // math_accuracy_reward(completion, gold)
  Format,               // format_reward(completion, spec.format)
  LanguageConsistency,  // language_consistency_reward(completion, spec.target_language)
};
const char* reward_kind_name(RewardKind kind);  // "math_accuracy", "format", "language_consistency"

struct RewardSpec {
  std::vector<std::pair<RewardKind, float>> terms;  // (kind, weight); a kind may repeat
  std::string target_language = "en";
  FormatOptions format;
};

struct RewardTerm {
  RewardKind kind;
  float weight;
  float value;  // the unweighted reward in [0, 1]
};
struct RewardBreakdown {
  float total = 0.0f;  // sum of weight * value
  std::vector<RewardTerm> terms;
};

// Throws reason::Error (InvalidArgument) for a non-finite weight or an unknown target language
// when a LanguageConsistency term is present.
RewardBreakdown compute_reward_breakdown(const RewardSpec& spec, std::string_view completion,
                                         std::string_view gold);
float compute_reward(const RewardSpec& spec, std::string_view completion, std::string_view gold);

}  // namespace reason
