#include "rl/synthetic_task.h"

#include <fmt/format.h>

#include <set>
#include <utility>

#include "core/error.h"
#include "infer/sampler.h"

namespace reason {

namespace {

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

int64_t pow10(int n) {
  int64_t p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

int64_t draw_operand(Rng& rng, int min_digits, int max_digits) {
  const int digits = min_digits + int(rng.next() % uint64_t(max_digits - min_digits + 1));
  const int64_t lo = digits == 1 ? 0 : pow10(digits - 1), hi = pow10(digits);
  return lo + int64_t(rng.next() % uint64_t(hi - lo));
}

}  // namespace

bool addition_is_held_out(int64_t a, int64_t b) { return mix64(uint64_t(a) * 1000000007ULL ^ uint64_t(b)) % 8 == 0; }

void check_addition_request(int64_t count, const AdditionTaskOptions& o) {
  if (o.min_digits < 1 || o.max_digits > 9 || o.min_digits > o.max_digits)
    fail(ErrorCode::InvalidArgument, "addition task: digits must satisfy 1 <= min_digits <= max_digits <= 9 (got {}..{})",
         o.min_digits, o.max_digits);
  if (!(o.direct_fraction >= 0) || !(o.mistake_fraction >= 0) || o.direct_fraction + o.mistake_fraction > 1)
    fail(ErrorCode::InvalidArgument,
         "addition task: direct_fraction and mistake_fraction must be >= 0 with a sum <= 1 (got {} and {})",
         o.direct_fraction, o.mistake_fraction);
  // Pairs available in the split (approximately): the operand ranges times the split share.
  const double range = double(pow10(o.max_digits) - (o.min_digits == 1 ? 0 : pow10(o.min_digits - 1)));
  const double available = range * range * (o.held_out ? 1.0 / 8 : 7.0 / 8);
  if (count < 0 || double(count) > 0.5 * available)
    fail(ErrorCode::InvalidArgument, "addition task: {} distinct problems requested, but the {} split of {}..{}-digit "
         "additions holds about {:.0f} (ask for at most half of that)", count, o.held_out ? "held-out" : "training",
         o.min_digits, o.max_digits, available);
}

std::vector<AdditionProblem> make_addition_problems(int64_t count, uint64_t seed, const AdditionTaskOptions& opts) {
  check_addition_request(count, opts);
  Rng rng(mix64(seed) ^ (opts.held_out ? 0x5eedULL : 0));
  std::set<std::pair<int64_t, int64_t>> seen;
  std::vector<AdditionProblem> out;
  out.reserve(size_t(count));
  while (int64_t(out.size()) < count) {
    AdditionProblem p{draw_operand(rng, opts.min_digits, opts.max_digits), draw_operand(rng, opts.min_digits, opts.max_digits)};
    if (addition_is_held_out(p.a, p.b) != opts.held_out) continue;
    if (!seen.insert({p.a, p.b}).second) continue;
    out.push_back(p);
  }
  return out;
}

std::string addition_prompt(const AdditionProblem& p) { return fmt::format("What is {} + {}?", p.a, p.b); }
std::string addition_answer(const AdditionProblem& p) { return std::to_string(p.a + p.b); }

WorkedSolution addition_worked_solution(const AdditionProblem& p, int mistake_column) {
  std::string steps;
  std::string digits;  // result digits, least significant first
  int64_t x = p.a, y = p.b;
  int carry = 0;
  for (int col = 0; x > 0 || y > 0 || col == 0; ++col) {
    if (col == mistake_column) carry = 1 - carry;  // drop a carry, or invent one
    const int dx = int(x % 10), dy = int(y % 10);
    const int s = dx + dy + carry;
    steps += fmt::format(" {}+{}+{}={}", dx, dy, carry, s);
    digits.push_back(char('0' + s % 10));
    carry = s / 10;
    x /= 10;
    y /= 10;
  }
  if (carry) digits.push_back('1');
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string answer(digits.rbegin(), digits.rend());
  // The operands written one above the other first (zero-padded to the same width), as on paper.
  const size_t width = std::to_string(std::max(p.a, p.b)).size();
  return WorkedSolution{fmt::format(" <think> {:0{}}+{:0{}}{} so {} </think> \\boxed{{{}}}", p.a, width, p.b, width,
                                    steps, answer, answer),
                        answer};
}

std::vector<std::string> make_addition_corpus(int64_t count, uint64_t seed, const AdditionTaskOptions& opts,
                                              std::string_view prompt_template) {
  const auto problems = make_addition_problems(count, seed, opts);
  Rng rng(mix64(seed + 1));
  std::vector<std::string> docs;
  docs.reserve(problems.size());
  for (const auto& p : problems) {
    std::string prompt(prompt_template);
    const size_t at = prompt.find("{prompt}");
    if (at == std::string::npos)
      prompt += addition_prompt(p);
    else
      prompt.replace(at, 8, addition_prompt(p));
    const double u = rng.uniform();
    std::string completion;
    if (u < opts.direct_fraction) {
      completion = fmt::format(" \\boxed{{{}}}", addition_answer(p));
    } else if (u < opts.direct_fraction + opts.mistake_fraction) {
      const int columns = int(std::to_string(std::max(p.a, p.b)).size());
      completion = addition_worked_solution(p, int(rng.next() % uint64_t(columns))).text;
    } else {
      completion = addition_worked_solution(p).text;
    }
    docs.push_back(prompt + completion);
  }
  return docs;
}

}  // namespace reason
