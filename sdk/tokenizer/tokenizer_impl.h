// Internal to the tokenizer: the loaded, immutable state behind reason::Tokenizer. Built by
// tokenizer_json.cpp (parsing), used by tokenizer.cpp (encode/decode).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_util.h"

namespace reason {

namespace tok {

// HF's SplitDelimiterBehavior.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct SplitStep {
  std::unique_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Largest id accepted from a file (bounds the id tables allocated from it).
inline constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

}  // namespace tok

struct Tokenizer::Impl {
  std::string source;  // tokenizer.json path or the caller's source name

  // Model vocabulary (byte-level strings) and the id tables over [0, vocab_size).
  std::unordered_map<std::string, int32_t, tok::StringHash, std::equal_to<>> vocab;
  enum class Kind : uint8_t { None, Model, Added, AddedSpecial };
  std::vector<Kind> kind;               // per id
  std::vector<std::string> token_str;   // per id: token string (added: content)
  std::vector<std::string> token_byte;  // per id: bytes it decodes to
  tok::BpeModel bpe;
  bool ignore_merges = false;

  // Added tokens: table, lookup by content, and the two matchers (raw text / normalised text).
  std::vector<tok::AddedToken> added;
  std::unordered_map<std::string, int32_t, tok::StringHash, std::equal_to<>> added_by_content;  // -> id
  tok::AddedTokenMatcher raw_matcher;
  tok::AddedTokenMatcher normalized_matcher;

  std::vector<tok::NormForm> normalizers;  // applied in order
  std::vector<tok::SplitStep> splits;       // pre-tokenizer Split steps, in order
  bool prefix_space = false;                // ByteLevel add_prefix_space
  std::unique_ptr<tok::Regex> byte_level_regex;  // ByteLevel use_regex (GPT-2 pattern)

  std::vector<int32_t> special_prefix, special_suffix;  // added by add_special_tokens

  std::optional<int32_t> bos, eos, pad;
  std::string chat_template;
  ChatFormat chat_format = ChatFormat::None;

  // Parses tokenizer.json (and tokenizer_config.json text when non-empty).
  static std::unique_ptr<Impl> parse(std::string_view tokenizer_json, std::string_view config_json,
                                     std::string_view chat_template_jinja, const std::string& json_name,
                                     const std::string& config_name);

  void check_id(int32_t id, const char* what) const;
};

}  // namespace reason
