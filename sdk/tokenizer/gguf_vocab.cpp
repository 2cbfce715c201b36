// GGUF tokenizer metadata -> tokenizer.json / tokenizer_config.json (see gguf_vocab.h).
#include "tokenizer/gguf_vocab.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <vector>
#include <string_view>

#include "core/error.h"
#include "io/gguf.h"

namespace reason {

namespace {

using json = nlohmann::json;

// llama.cpp's token types (llama_token_type).
constexpr int64_t kControl = 3, kUserDefined = 4;

// Split regexes, as llama.cpp (llama-vocab.cpp) and transformers (gguf_tokenizer_mapping.py)
// define them for each tokenizer.ggml.pre name; the same strings the models' tokenizer.json hold.
constexpr const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kDeepseekV3Regexes[] = {
    R"(\p{N}{1,3})",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^)" "\r\n" R"(\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[)"
    "\r\n" R"(]*|\s*[)" "\r\n" R"(]+|\s+(?!\S)|\s+)",
};

json split(const char* regex) {
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}
json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", use_regex}};
}

// The pre_tokenizer of a tokenizer.ggml.pre name; sets ignore_merges where llama.cpp does.
json pre_tokenizer(const std::string& pre, bool& ignore_merges, const std::string& src) {
  std::vector<json> seq;
  ignore_merges = false;
  if (pre == "gpt-2" || pre == "gpt2") {
    seq = {byte_level(true)};
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "smaug-bpe" || pre == "dbrx" ||
             pre == "falcon3") {
    seq = {split(kLlama3Regex), byte_level(false)};
    ignore_merges = true;
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
    seq = {split(kQwen2Regex), byte_level(false)};
  } else if (pre == "deepseek-v3") {
    for (const char* r : kDeepseekV3Regexes) seq.push_back(split(r));
    seq.push_back(byte_level(false));
  } else if (pre == "smollm") {
    seq = {split(R"(\p{N})"), byte_level(true)};  // HF: Digits(individual_digits) + ByteLevel
  } else {
    fail(ErrorCode::Unsupported,
         "{}: GGUF: tokenizer.ggml.pre \"{}\" is not supported (supported: gpt-2, llama-bpe, llama3, llama-v3, "
         "smaug-bpe, dbrx, falcon3, qwen2, deepseek-r1-qwen, deepseek-v3, smollm)",
         src, pre);
  }
  return {{"type", "Sequence"}, {"pretokenizers", seq}};
}

// An optional token id key, checked against the vocabulary.
std::optional<int64_t> token_id(const GgufFile& f, std::string_view key, size_t n_tokens) {
  if (!f.find(key)) return std::nullopt;
  const uint64_t id = f.get_uint(key);
  if (id >= n_tokens)
    fail(ErrorCode::Format, "{}: GGUF: {} = {} is outside the vocabulary of {} tokens", f.source(), key, id, n_tokens);
  return int64_t(id);
}

}  // namespace

GgufTokenizerFiles gguf_tokenizer_files(const GgufFile& f) {
  const std::string& src = f.source();
  const std::string& model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    fail(ErrorCode::Unsupported,
         "{}: GGUF: tokenizer.ggml.model \"{}\" is not supported (only \"gpt2\", byte-level BPE)", src, model);
  const GgufValue& tokens = f.get_array("tokenizer.ggml.tokens", GgufType::String);
  const size_t n = tokens.items.size();
  if (n == 0) fail(ErrorCode::Format, "{}: GGUF: tokenizer.ggml.tokens is empty", src);
  std::vector<int64_t> types(n, 1);
  if (const GgufValue* tt = f.find("tokenizer.ggml.token_type")) {
    if (tt->type != GgufType::Array || tt->items.size() != n)
      fail(ErrorCode::Format, "{}: GGUF: tokenizer.ggml.token_type must be an integer array of {} entries (one per token)",
           src, n);
    for (size_t i = 0; i < n; ++i) {
      const GgufValue& v = tt->items[i];
      if (v.type != GgufType::I32 && v.type != GgufType::U32 && v.type != GgufType::I8 && v.type != GgufType::U8)
        fail(ErrorCode::Format, "{}: GGUF: tokenizer.ggml.token_type must hold integers, not {}", src, gguf_type_name(v.type));
      types[i] = v.i;
    }
  }
  const std::string pre = f.find("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : std::string("gpt-2");
  bool ignore_merges = false;
  json tj;
  tj["version"] = "1.0";
  tj["truncation"] = nullptr;
  tj["padding"] = nullptr;
  tj["normalizer"] = nullptr;
  tj["pre_tokenizer"] = pre_tokenizer(pre, ignore_merges, src);
  tj["post_processor"] = nullptr;
  tj["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};

  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < n; ++i) {
    const std::string& s = tokens.items[i].s;
    if (types[i] == kControl || types[i] == kUserDefined)
      added.push_back({{"id", i}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", types[i] == kControl}});
    if (!vocab.contains(s)) vocab[s] = i;  // a repeated string keeps its first id, as HF's vocab map
  }
  json merges = json::array();
  if (f.find("tokenizer.ggml.merges"))
    for (const GgufValue& v : f.get_array("tokenizer.ggml.merges", GgufType::String).items) merges.push_back(v.s);
  tj["added_tokens"] = added;
  tj["model"] = {{"type", "BPE"},           {"dropout", nullptr},        {"unk_token", nullptr},
                 {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                 {"byte_fallback", false},  {"ignore_merges", ignore_merges}, {"vocab", vocab},
                 {"merges", merges}};

  json cfg = json::object();
  auto name_of = [&](std::string_view key, const char* field) {
    if (auto id = token_id(f, key, n)) cfg[field] = tokens.items[size_t(*id)].s;
  };
  name_of("tokenizer.ggml.bos_token_id", "bos_token");
  name_of("tokenizer.ggml.eos_token_id", "eos_token");
  name_of("tokenizer.ggml.padding_token_id", "pad_token");
  cfg["add_bos_token"] = f.find("tokenizer.ggml.add_bos_token") ? f.get_bool("tokenizer.ggml.add_bos_token") : false;
  cfg["add_eos_token"] = f.find("tokenizer.ggml.add_eos_token") ? f.get_bool("tokenizer.ggml.add_eos_token") : false;
  if (f.find("tokenizer.chat_template")) cfg["chat_template"] = f.get_string("tokenizer.chat_template");
  cfg["model_max_length"] = nullptr;
  return {tj.dump(), cfg.dump(2)};
}

}  // namespace reason
