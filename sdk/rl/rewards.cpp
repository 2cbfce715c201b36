// Format and language-consistency rewards and their weighted sums (rules in rl/rewards.h).
#include "rl/rewards.h"

#include <cmath>
#include <cstdint>
#include <string>

#include <utf8proc.h>

#include "core/error.h"

namespace reason {
namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

size_t count_of(std::string_view s, std::string_view what) {
  size_t n = 0;
  for (size_t pos = s.find(what); pos != std::string_view::npos; pos = s.find(what, pos + what.size())) ++n;
  return n;
}

bool only_space(std::string_view s) {
  for (char c : s)
    if (!is_ascii_space(c)) return false;
  return true;
}

enum class Script : uint8_t {
  Other,
  Latin,
  Greek,
  Cyrillic,
  Hebrew,
  Arabic,
  Devanagari,
  Thai,
  Hangul,
  Hiragana,
  Katakana,
  Han,
};

struct Range {
  char32_t lo, hi;
  Script script;
};

// Unicode blocks (approximation of the Script property, enough for language identification).
constexpr Range kRanges[] = {
    {0x0041, 0x005A, Script::Latin},      {0x0061, 0x007A, Script::Latin},
    {0x00AA, 0x00AA, Script::Latin},      {0x00BA, 0x00BA, Script::Latin},
    {0x00C0, 0x00D6, Script::Latin},      {0x00D8, 0x00F6, Script::Latin},
    {0x00F8, 0x02AF, Script::Latin},      {0x0370, 0x03FF, Script::Greek},
    {0x0400, 0x052F, Script::Cyrillic},   {0x0590, 0x05FF, Script::Hebrew},
    {0x0600, 0x06FF, Script::Arabic},     {0x0750, 0x077F, Script::Arabic},
    {0x08A0, 0x08FF, Script::Arabic},     {0x0900, 0x097F, Script::Devanagari},
    {0x0E00, 0x0E7F, Script::Thai},       {0x1100, 0x11FF, Script::Hangul},
    {0x1C80, 0x1C8F, Script::Cyrillic},   {0x1D00, 0x1DBF, Script::Latin},
    {0x1E00, 0x1EFF, Script::Latin},      {0x1F00, 0x1FFF, Script::Greek},
    {0x2C60, 0x2C7F, Script::Latin},      {0x2DE0, 0x2DFF, Script::Cyrillic},
    {0x2E80, 0x2FDF, Script::Han},        {0x3005, 0x3005, Script::Han},
    {0x3007, 0x3007, Script::Han},        {0x3021, 0x3029, Script::Han},
    {0x3038, 0x303B, Script::Han},        {0x3040, 0x309F, Script::Hiragana},
    {0x30A0, 0x30FF, Script::Katakana},   {0x3130, 0x318F, Script::Hangul},
    {0x31F0, 0x31FF, Script::Katakana},   {0x3400, 0x4DBF, Script::Han},
    {0x4E00, 0x9FFF, Script::Han},        {0xA640, 0xA69F, Script::Cyrillic},
    {0xA720, 0xA7FF, Script::Latin},      {0xA8E0, 0xA8FF, Script::Devanagari},
    {0xA960, 0xA97F, Script::Hangul},     {0xAB30, 0xAB6F, Script::Latin},
    {0xAC00, 0xD7FF, Script::Hangul},     {0xF900, 0xFAFF, Script::Han},
    {0xFB00, 0xFB06, Script::Latin},      {0xFB1D, 0xFB4F, Script::Hebrew},
    {0xFB50, 0xFDFF, Script::Arabic},     {0xFE70, 0xFEFF, Script::Arabic},
    {0xFF21, 0xFF3A, Script::Latin},      {0xFF41, 0xFF5A, Script::Latin},
    {0xFF66, 0xFF9F, Script::Katakana},   {0xFFA0, 0xFFDC, Script::Hangul},
    {0x20000, 0x323AF, Script::Han},
};

Script script_of(char32_t cp) {
  for (const auto& r : kRanges)
    if (cp >= r.lo && cp <= r.hi) return r.script;
  return Script::Other;
}

bool one_char_word(Script s) { return s == Script::Han || s == Script::Hiragana || s == Script::Katakana; }

struct TargetScripts {
  bool s[12] = {};
  bool has(Script x) const { return s[static_cast<int>(x)]; }
};

TargetScripts target_scripts(std::string_view lang) {
  std::string code;
  for (char c : lang) {
    if (c == '-' || c == '_') break;
    code += static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  }
  TargetScripts t;
  auto set = [&](Script x) { t.s[static_cast<int>(x)] = true; };
  static constexpr std::string_view kLatin[] = {
      "en", "fr", "de", "es", "it", "pt", "nl", "vi", "pl", "sv", "da", "no", "nb", "nn", "fi", "id",
      "ms", "tr", "ro", "cs", "hu", "ca", "sk", "hr", "sl", "et", "lv", "lt", "sq", "sw", "tl", "af",
      "eu", "gl", "ga", "is", "cy", "la", "bs", "mt", "uz", "az", "eo", "fil", "jv", "ha", "yo", "zu"};
  for (auto l : kLatin)
    if (code == l) set(Script::Latin);
  if (code == "zh") set(Script::Han);
  if (code == "ja") {
    set(Script::Han);
    set(Script::Hiragana);
    set(Script::Katakana);
  }
  if (code == "ko") {
    set(Script::Hangul);
    set(Script::Han);
  }
  for (auto l : {"ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "mn", "tg"})
    if (code == l) set(Script::Cyrillic);
  if (code == "el") set(Script::Greek);
  for (auto l : {"ar", "fa", "ur", "ps"})
    if (code == l) set(Script::Arabic);
  for (auto l : {"he", "yi"})
    if (code == l) set(Script::Hebrew);
  for (auto l : {"hi", "mr", "ne", "sa"})
    if (code == l) set(Script::Devanagari);
  if (code == "th") set(Script::Thai);
  bool any = false;
  for (bool b : t.s) any |= b;
  if (!any) fail(ErrorCode::InvalidArgument, "language consistency: unknown target language '{}'", std::string(lang));
  return t;
}

}  // namespace

float format_reward(std::string_view completion, const FormatOptions& options) {
  if (count_of(completion, kClose) != 1) return 0.0f;
  size_t close = completion.find(kClose);
  size_t opens = count_of(completion, kOpen);
  if (opens > 1) return 0.0f;
  if (opens == 1) {
    size_t open = completion.find(kOpen);
    if (open > close || !only_space(completion.substr(0, open))) return 0.0f;
  } else if (options.require_open_tag) {
    return 0.0f;
  }
  return only_space(completion.substr(close + kClose.size())) ? 0.0f : 1.0f;
}

std::string_view chain_of_thought(std::string_view completion) {
  size_t open = completion.find(kOpen);
  size_t start = open == std::string_view::npos ? 0 : open + kOpen.size();
  size_t close = completion.find(kClose, start);
  size_t end = close == std::string_view::npos ? completion.size() : close;
  return completion.substr(start, end - start);
}

LanguageWordCounts count_language_words(std::string_view text, std::string_view target_language) {
  const TargetScripts targets = target_scripts(target_language);
  LanguageWordCounts counts;
  bool in_word = false, has_letter = false, latex = false, after_backslash = false;
  Script word_script = Script::Other;
  auto end_word = [&] {
    if (in_word && has_letter && !latex) {
      ++counts.total_words;
      if (targets.has(word_script)) ++counts.target_words;
    }
    in_word = has_letter = latex = false;
    word_script = Script::Other;
  };
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(text.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0 || cp < 0) {  // invalid byte: a separator
      end_word();
      after_backslash = false;
      ++p;
      --left;
      continue;
    }
    p += n;
    left -= n;
    utf8proc_category_t cat = utf8proc_category(cp);
    bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    bool mark = cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME;
    bool number = cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
    if (!letter && !mark && !number) {
      end_word();
      after_backslash = cp == '\\';
      continue;
    }
    Script sc = letter ? script_of(static_cast<char32_t>(cp)) : Script::Other;
    if (letter && one_char_word(sc)) {
      end_word();
      ++counts.total_words;
      if (targets.has(sc)) ++counts.target_words;
      after_backslash = false;
      continue;
    }
    if (letter && in_word && has_letter && sc != word_script) end_word();
    if (!in_word) {
      in_word = true;
      latex = after_backslash;
    }
    after_backslash = false;
    if (letter) {
      has_letter = true;
      word_script = sc;
    }
  }
  end_word();
  return counts;
}

float language_consistency_reward(std::string_view completion, std::string_view target_language) {
  LanguageWordCounts c = count_language_words(chain_of_thought(completion), target_language);
  if (c.total_words == 0) return 0.0f;
  return static_cast<float>(static_cast<double>(c.target_words) / static_cast<double>(c.total_words));
}

const char* reward_kind_name(RewardKind kind) {
  switch (kind) {
    case RewardKind::MathAccuracy:
      return "math_accuracy";
    case RewardKind::Format:
      return "format";
    case RewardKind::LanguageConsistency:
      return "language_consistency";
  }
  return "unknown";
}

RewardBreakdown compute_reward_breakdown(const RewardSpec& spec, std::string_view completion,
                                         std::string_view gold) {
  RewardBreakdown out;
  out.terms.reserve(spec.terms.size());
  double total = 0.0;
  for (const auto& [kind, weight] : spec.terms) {
    if (!std::isfinite(weight))
      fail(ErrorCode::InvalidArgument, "reward spec: weight of {} is not finite", reward_kind_name(kind));
    float value = 0.0f;
    switch (kind) {
      case RewardKind::MathAccuracy:
        value = math_accuracy_reward(completion, gold);
        break;
      case RewardKind::Format:
        value = format_reward(completion, spec.format);
        break;
      case RewardKind::LanguageConsistency:
        value = language_consistency_reward(completion, spec.target_language);
        break;
      default:
        fail(ErrorCode::InvalidArgument, "reward spec: unknown reward kind {}", static_cast<int>(kind));
    }
    out.terms.push_back(RewardTerm{kind, weight, value});
    total += static_cast<double>(weight) * static_cast<double>(value);
  }
  out.total = static_cast<float>(total);
  return out;
}

float compute_reward(const RewardSpec& spec, std::string_view completion, std::string_view gold) {
  return compute_reward_breakdown(spec, completion, gold).total;
}

}  // namespace reason
