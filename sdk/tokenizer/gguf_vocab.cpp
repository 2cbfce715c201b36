// GGUF tokenizer metadata -> tokenizer.json / tokenizer_config.json (see gguf_vocab.h).
#include "tokenizer/gguf_vocab.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <vector>
#include <string_view>
#include <cctype>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "io/json_file.h"

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
constexpr const char* kPreNames[] = {"gpt-2",    "gpt2", "llama-bpe", "llama3",           "llama-v3",    "smaug-bpe",
                                     "dbrx",     "falcon3", "qwen2",  "deepseek-r1-qwen", "deepseek-v3", "smollm"};

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

// A pre_tokenizer in a canonical form for comparison: a list of steps, Split steps as (regex,
// behavior, invert), ByteLevel as (use_regex, add_prefix_space); Digits(individual_digits) is a
// Split on \p{N}. Empty for anything else.
json canonical_steps(const json& pt) {
  json steps = json::array();
  const json items = pt.is_object() && pt.value("type", "") == "Sequence" ? pt.value("pretokenizers", json::array())
                                                                          : json::array({pt});
  for (const json& it : items) {
    if (!it.is_object()) return json();
    const std::string type = it.value("type", "");
    if (type == "Split") {
      const json& pat = it.value("pattern", json::object());
      std::string re = pat.contains("Regex") ? pat["Regex"].get<std::string>() : pat.value("String", "");
      std::string beh = it.value("behavior", "");
      for (char& ch : beh) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      steps.push_back({"split", re, beh, it.value("invert", false)});
    } else if (type == "ByteLevel") {
      steps.push_back({"bytelevel", it.value("use_regex", true), it.value("add_prefix_space", false)});
    } else if (type == "Digits" && it.value("individual_digits", false)) {
      steps.push_back({"split", R"(\p{N})", "isolated", false});
    } else {
      return json();
    }
  }
  return steps;
}

}  // namespace

std::string gguf_pre_tokenizer_name(const nlohmann::json& pre_tokenizer_json, const std::string& src) {
  const json want = canonical_steps(pre_tokenizer_json);
  bool ignore = false;
  if (!want.is_null())
    for (const char* name : kPreNames)
      if (canonical_steps(pre_tokenizer(name, ignore, src)) == want) return name;
  fail(ErrorCode::Unsupported,
       "{}: the pre_tokenizer is not one GGUF names (gpt-2, llama-bpe, qwen2, deepseek-v3, smollm): it cannot be written "
       "as tokenizer.ggml.pre",
       src);
}

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
    if (find_invalid_utf8(s) != std::string_view::npos)
      fail(ErrorCode::Format, "{}: GGUF: tokenizer.ggml.tokens[{}] is not valid UTF-8", src, i);
    if (types[i] == kControl || types[i] == kUserDefined)
      added.push_back({{"id", i}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", types[i] == kControl}});
    if (!vocab.contains(s)) vocab[s] = i;  // a repeated string keeps its first id, as HF's vocab map
  }
  json merges = json::array();
  if (f.find("tokenizer.ggml.merges"))
    for (const GgufValue& v : f.get_array("tokenizer.ggml.merges", GgufType::String).items) {
      if (find_invalid_utf8(v.s) != std::string_view::npos)
        fail(ErrorCode::Format, "{}: GGUF: tokenizer.ggml.merges[{}] is not valid UTF-8", src, merges.size());
      merges.push_back(v.s);
    }
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
  if (f.find("tokenizer.chat_template")) {
    const std::string& t = f.get_string("tokenizer.chat_template");
    if (find_invalid_utf8(t) != std::string_view::npos)
      fail(ErrorCode::Format, "{}: GGUF: tokenizer.chat_template is not valid UTF-8", src);
    cfg["chat_template"] = t;
  }
  cfg["model_max_length"] = nullptr;
  return {tj.dump(), cfg.dump(2)};
}

}  // namespace reason

namespace reason {

namespace {

// A special token of tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

std::vector<std::pair<std::string, GgufValue>> gguf_tokenizer_metadata(const nlohmann::json& tj, const nlohmann::json& cfg,
                                                                       const std::string& chat_template, int64_t vocab_size,
                                                                       const std::string& src) {
  const json& model = tj.at("model");
  if (model.value("type", "") != "BPE")
    fail(ErrorCode::Unsupported, "{}: only byte-level BPE tokenizers can be written to GGUF", src);
  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int32_t> types(static_cast<size_t>(vocab_size), 5);  // UNUSED until a token claims the id
  auto put = [&](const std::string& s, int64_t id, int32_t type) {
    if (id < 0 || id >= vocab_size)
      fail(ErrorCode::Format, "{}: token id {} of \"{}\" is outside the model's vocabulary of {}", src, id, s, vocab_size);
    tokens[size_t(id)] = s;
    types[size_t(id)] = type;
  };
  for (const auto& [s, id] : model.at("vocab").items()) put(s, id.get<int64_t>(), 1);
  for (const json& a : tj.value("added_tokens", json::array()))
    put(a.at("content").get<std::string>(), a.at("id").get<int64_t>(), a.value("special", false) ? kControl : kUserDefined);
  for (size_t i = 0; i < tokens.size(); ++i)
    if (types[i] == 5) tokens[i] = "[PAD" + std::to_string(i) + "]";  // as convert_hf_to_gguf.py pads
  std::vector<std::string> merges;
  for (const json& m : model.value("merges", json::array()))
    merges.push_back(m.is_string() ? m.get<std::string>() : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
  std::vector<std::pair<std::string, GgufValue>> kv;
  kv.emplace_back("tokenizer.ggml.model", gguf_string("gpt2"));
  kv.emplace_back("tokenizer.ggml.pre", gguf_string(gguf_pre_tokenizer_name(tj.at("pre_tokenizer"), src)));
  kv.emplace_back("tokenizer.ggml.tokens", gguf_string_array(tokens));
  kv.emplace_back("tokenizer.ggml.token_type", gguf_i32_array(types));
  kv.emplace_back("tokenizer.ggml.merges", gguf_string_array(merges));
  auto id_of = [&](const std::string& s) -> std::optional<uint32_t> {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (types[i] != 5 && tokens[i] == s) return uint32_t(i);
    return std::nullopt;
  };
  for (auto [key, field] : {std::pair{"tokenizer.ggml.bos_token_id", "bos_token"}, {"tokenizer.ggml.eos_token_id", "eos_token"},
                            {"tokenizer.ggml.padding_token_id", "pad_token"}})
    if (auto t = config_token(cfg, field))
      if (auto id = id_of(*t)) kv.emplace_back(key, gguf_u32(*id));
  kv.emplace_back("tokenizer.ggml.add_bos_token", gguf_bool(cfg.value("add_bos_token", false)));
  if (cfg.value("add_eos_token", false)) kv.emplace_back("tokenizer.ggml.add_eos_token", gguf_bool(true));
  if (!chat_template.empty()) kv.emplace_back("tokenizer.chat_template", gguf_string(chat_template));
  return kv;
}

}  // namespace reason
