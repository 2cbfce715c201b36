// Parsing of HF tokenizer.json / tokenizer_config.json into Tokenizer::Impl. Every field is
// type-checked; errors name the file and the JSON path of the offending field.
#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/error.h"
#include "io/json_file.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"

namespace reason {
namespace {

using json = nlohmann::json;
using tok::kMaxTokenId;

// Ids may leave gaps, but only a few: the id tables are sized by the largest id, so a tiny
// hostile file naming id 16,000,000 must not cost a gigabyte.
size_t max_table_size(size_t tokens) { return 2 * tokens + 65536; }

// Deepest JSON nesting accepted. Real files nest 4-5 levels; the cap keeps hostile input from
// exhausting the stack in the parser or in the destructor of the parsed tree.
constexpr size_t kMaxJsonDepth = 128;

// Fails when brackets nest deeper than kMaxJsonDepth (strings are skipped), with the scan every
// JSON reader of the engine shares (io/json_file.h), before the parser sees the text.
void check_json_depth(std::string_view text, const std::string& file) {
  if (json_depth_exceeded_at(text, kMaxJsonDepth) != std::string_view::npos)
    fail(ErrorCode::Format, "{}: JSON nests deeper than {} levels", file, kMaxJsonDepth);
}

json parse_json(std::string_view text, const std::string& file) {
  check_json_depth(text, file);
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(ErrorCode::Format, "{}: invalid JSON: {}", file, e.what());
  }
}

// Field access with messages naming file and path.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}
  const std::string& file() const { return file_; }

  [[noreturn]] void bad(const std::string& path, const std::string& what) const {
    fail(ErrorCode::Format, "{}: {}: {}", file_, path, what);
  }
  [[noreturn]] void unsupported(const std::string& path, const std::string& what) const {
    fail(ErrorCode::Unsupported, "{}: {}: {}", file_, path, what);
  }

  static const char* type_name(const json& j) { return j.type_name(); }

  const json& object(const json& j, const std::string& path) const {
    if (!j.is_object()) bad(path, fmt::format("expected an object, found {}", type_name(j)));
    return j;
  }
  const json* member(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }
  const json& required(const json& obj, const char* key, const std::string& path) const {
    const json* m = member(obj, key);
    if (!m) bad(path, fmt::format("missing field \"{}\"", key));
    return *m;
  }
  std::string string(const json& j, const std::string& path) const {
    if (!j.is_string()) bad(path, fmt::format("expected a string, found {}", type_name(j)));
    return j.get<std::string>();
  }
  bool boolean(const json& obj, const char* key, bool dflt, const std::string& path) const {
    const json* m = member(obj, key);
    if (!m || m->is_null()) return dflt;
    if (!m->is_boolean()) bad(path + "." + key, fmt::format("expected true/false, found {}", type_name(*m)));
    return m->get<bool>();
  }
  int32_t token_id(const json& j, const std::string& path) const {
    if (!j.is_number_integer()) bad(path, fmt::format("expected an integer token id, found {}", type_name(j)));
    int64_t v = j.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(j.get<uint64_t>(), uint64_t{1} << 62))
                                       : j.get<int64_t>();
    if (v < 0 || v > kMaxTokenId) bad(path, fmt::format("token id {} is outside [0, {}]", v, kMaxTokenId));
    return static_cast<int32_t>(v);
  }
  std::string type_of(const json& obj, const std::string& path) const {
    object(obj, path);
    return string(required(obj, "type", path), path + ".type");
  }

 private:
  std::string file_;
};

// ---- model -----------------------------------------------------------------------------------

void parse_model(const Reader& r, const json& root, Tokenizer::Impl& impl) {
  const json& model = r.object(r.required(root, "model", "(root)"), "model");
  if (const json* t = r.member(model, "type")) {
    std::string type = r.string(*t, "model.type");
    if (type != "BPE") r.unsupported("model.type", fmt::format("model type \"{}\" is not supported (only byte-level BPE)", type));
  } else if (!r.member(model, "merges")) {
    r.unsupported("model", "no \"type\" and no \"merges\": only byte-level BPE models are supported");
  }
  if (const json* d = r.member(model, "dropout"); d && !d->is_null()) {
    if (!d->is_number()) r.bad("model.dropout", "expected a number or null");
    if (d->get<double>() != 0.0) r.unsupported("model.dropout", "BPE dropout (training-time randomness) is not supported");
  }
  if (r.boolean(model, "byte_fallback", false, "model"))
    r.unsupported("model.byte_fallback", "byte_fallback (SentencePiece-style BPE) is not supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* v = r.member(model, key); v && !v->is_null()) {
      if (!r.string(*v, std::string("model.") + key).empty())
        r.unsupported(std::string("model.") + key, "subword prefixes/suffixes are not supported");
    }
  }
  impl.ignore_merges = r.boolean(model, "ignore_merges", false, "model");

  const json& vocab = r.required(model, "vocab", "model");
  if (!vocab.is_object()) r.bad("model.vocab", fmt::format("expected an object of token: id, found {}", vocab.type_name()));
  if (vocab.size() > static_cast<size_t>(kMaxTokenId)) r.bad("model.vocab", fmt::format("{} entries is too many", vocab.size()));
  impl.vocab.reserve(vocab.size());
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int32_t id = r.token_id(it.value(), "model.vocab[\"" + it.key() + "\"]");
    impl.vocab.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  if (static_cast<size_t>(max_id) + 1 > max_table_size(vocab.size()))
    r.bad("model.vocab", fmt::format("ids are too sparse: largest id {} for {} tokens", max_id, vocab.size()));
  // Id tables, filled here for the model and later for added tokens.
  impl.kind.assign(static_cast<size_t>(max_id + 1), Tokenizer::Impl::Kind::None);
  impl.token_str.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [token, id] : impl.vocab) {
    if (impl.kind[id] != Tokenizer::Impl::Kind::None)
      r.bad("model.vocab", fmt::format("id {} is used by both \"{}\" and \"{}\"", id, impl.token_str[id], token));
    impl.kind[id] = Tokenizer::Impl::Kind::Model;
    impl.token_str[id] = token;
  }

  // The single-character token of each byte. A byte without one is dropped at encode time, or
  // becomes unk_token (HF tokenizers' BPE); a vocabulary with none of them is not byte-level.
  int n_bytes = 0;
  for (int b = 0; b < 256; ++b) {
    std::string ch = tok::bytes_to_byte_level(std::string_view(reinterpret_cast<const char*>(&b), 1));
    auto it = impl.vocab.find(ch);
    impl.bpe.byte_id[static_cast<size_t>(b)] = it == impl.vocab.end() ? -1 : it->second;
    n_bytes += it == impl.vocab.end() ? 0 : 1;
  }
  if (n_bytes < 128)
    r.bad("model.vocab", fmt::format("only {} of the 256 byte symbols have a token: not a byte-level BPE vocabulary", n_bytes));
  if (const json* u = r.member(model, "unk_token"); u && !u->is_null()) {
    const std::string unk = r.string(*u, "model.unk_token");
    auto it = impl.vocab.find(unk);
    if (it == impl.vocab.end()) r.bad("model.unk_token", fmt::format("\"{}\" is not in the vocabulary", unk));
    impl.bpe.unk_id = it->second;
  }
  impl.bpe.fuse_unk = r.boolean(model, "fuse_unk", false, "model");

  const json& merges = r.required(model, "merges", "model");
  if (!merges.is_array()) r.bad("model.merges", fmt::format("expected an array, found {}", merges.type_name()));
  impl.bpe.merges.reserve(merges.size());
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    std::string path = fmt::format("model.merges[{}]", i);
    std::string_view a, b;
    std::string a_buf, b_buf;
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        r.bad(path, fmt::format("\"{}\" is not two tokens separated by one space", s));
      a = std::string_view(s).substr(0, sp);
      b = std::string_view(s).substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get_ref<const std::string&>();
      b = m[1].get_ref<const std::string&>();
    } else {
      r.bad(path, "expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = impl.vocab.find(a);
    if (ia == impl.vocab.end()) r.bad(path, fmt::format("token \"{}\" is not in model.vocab", a));
    auto ib = impl.vocab.find(b);
    if (ib == impl.vocab.end()) r.bad(path, fmt::format("token \"{}\" is not in model.vocab", b));
    joined.assign(a).append(b);
    auto ij = impl.vocab.find(joined);
    if (ij == impl.vocab.end()) r.bad(path, fmt::format("merged token \"{}\" is not in model.vocab", joined));
    impl.bpe.merges.insert(ia->second, ib->second, static_cast<int32_t>(i), ij->second);
  }
}

// ---- added tokens ----------------------------------------------------------------------------

void parse_added_tokens(const Reader& r, const json& root, Tokenizer::Impl& impl) {
  const json* list = r.member(root, "added_tokens");
  if (!list || list->is_null()) return;
  if (!list->is_array()) r.bad("added_tokens", fmt::format("expected an array, found {}", list->type_name()));
  if (list->size() > static_cast<size_t>(kMaxTokenId)) r.bad("added_tokens", "too many entries");
  for (size_t i = 0; i < list->size(); ++i) {
    std::string path = fmt::format("added_tokens[{}]", i);
    const json& e = r.object((*list)[i], path);
    tok::AddedToken t;
    t.content = r.string(r.required(e, "content", path), path + ".content");
    if (t.content.empty()) r.bad(path + ".content", "empty token");
    int32_t file_id = r.token_id(r.required(e, "id", path), path + ".id");
    t.special = r.boolean(e, "special", false, path);
    t.single_word = r.boolean(e, "single_word", false, path);
    t.lstrip = r.boolean(e, "lstrip", false, path);
    t.rstrip = r.boolean(e, "rstrip", false, path);
    t.normalized = r.boolean(e, "normalized", !t.special, path);
    if (impl.added_by_content.count(t.content)) continue;  // HF ignores a repeated token

    // Like HF: a token already in the model vocab keeps the model's id.
    auto in_vocab = impl.vocab.find(t.content);
    t.id = in_vocab != impl.vocab.end() ? in_vocab->second : file_id;
    if (static_cast<size_t>(t.id) >= impl.kind.size()) {
      if (static_cast<size_t>(t.id) + 1 > max_table_size(impl.vocab.size() + list->size()))
        r.bad(path + ".id", fmt::format("id {} leaves too large a gap after the vocabulary", t.id));
      impl.kind.resize(static_cast<size_t>(t.id) + 1, Tokenizer::Impl::Kind::None);
      impl.token_str.resize(static_cast<size_t>(t.id) + 1);
    }
    auto& kind = impl.kind[t.id];
    if (kind == Tokenizer::Impl::Kind::Model && impl.token_str[t.id] != t.content)
      r.bad(path, fmt::format("\"{}\" has id {}, which model.vocab gives to \"{}\"", t.content, t.id, impl.token_str[t.id]));
    if (kind == Tokenizer::Impl::Kind::Added || kind == Tokenizer::Impl::Kind::AddedSpecial)
      r.bad(path, fmt::format("\"{}\" has id {}, which another added token (\"{}\") already has", t.content, t.id,
                              impl.token_str[t.id]));
    kind = t.special ? Tokenizer::Impl::Kind::AddedSpecial : Tokenizer::Impl::Kind::Added;
    impl.token_str[t.id] = t.content;
    impl.added_by_content.emplace(t.content, t.id);
    impl.added.push_back(std::move(t));
  }
}

// ---- normalizer ------------------------------------------------------------------------------

void parse_normalizer(const Reader& r, const json& n, const std::string& path, Tokenizer::Impl& impl) {
  if (n.is_null()) return;
  std::string type = r.type_of(n, path);
  if (type == "NFC") impl.normalizers.push_back(tok::NormForm::NFC);
  else if (type == "NFD") impl.normalizers.push_back(tok::NormForm::NFD);
  else if (type == "NFKC") impl.normalizers.push_back(tok::NormForm::NFKC);
  else if (type == "NFKD") impl.normalizers.push_back(tok::NormForm::NFKD);
  else if (type == "Sequence") {
    const json& list = r.required(n, "normalizers", path);
    if (!list.is_array()) r.bad(path + ".normalizers", "expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_normalizer(r, list[i], fmt::format("{}.normalizers[{}]", path, i), impl);
  } else {
    r.unsupported(path + ".type", fmt::format("normalizer \"{}\" is not supported (NFC, NFD, NFKC, NFKD, Sequence)", type));
  }
}

// ---- pre-tokenizer ---------------------------------------------------------------------------

void parse_pre_tokenizer(const Reader& r, const json& p, const std::string& path, Tokenizer::Impl& impl,
                         bool& have_byte_level) {
  if (p.is_null()) return;
  std::string type = r.type_of(p, path);
  if (type == "Sequence") {
    const json& list = r.required(p, "pretokenizers", path);
    if (!list.is_array()) r.bad(path + ".pretokenizers", "expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(r, list[i], fmt::format("{}.pretokenizers[{}]", path, i), impl, have_byte_level);
    return;
  }
  if (have_byte_level)
    r.unsupported(path, "a pre-tokenizer after ByteLevel is not supported (ByteLevel must be the last step)");
  if (type == "Split") {
    tok::SplitStep step;
    const json& pat = r.object(r.required(p, "pattern", path), path + ".pattern");
    bool literal;
    const json* src;
    if ((src = r.member(pat, "Regex"))) literal = false;
    else if ((src = r.member(pat, "String"))) literal = true;
    else r.bad(path + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    std::string pattern = r.string(*src, path + ".pattern");
    try {
      step.regex = std::make_unique<tok::Regex>(pattern, literal);
    } catch (const Error& e) {
      fail(e.code(), "{}: {}.pattern: {}", r.file(), path, e.what());
    }
    std::string behavior = r.string(r.required(p, "behavior", path), path + ".behavior");
    if (behavior == "Isolated") step.behavior = tok::SplitBehavior::Isolated;
    else if (behavior == "Removed") step.behavior = tok::SplitBehavior::Removed;
    else if (behavior == "MergedWithPrevious") step.behavior = tok::SplitBehavior::MergedWithPrevious;
    else if (behavior == "MergedWithNext") step.behavior = tok::SplitBehavior::MergedWithNext;
    else if (behavior == "Contiguous") step.behavior = tok::SplitBehavior::Contiguous;
    else r.bad(path + ".behavior", fmt::format("unknown split behavior \"{}\"", behavior));
    step.invert = r.boolean(p, "invert", false, path);
    impl.splits.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    have_byte_level = true;
    impl.prefix_space = r.boolean(p, "add_prefix_space", true, path);
    if (r.boolean(p, "use_regex", true, path)) impl.byte_level_regex = std::make_unique<tok::Regex>(tok::kGpt2Pattern, false);
  } else {
    r.unsupported(path + ".type", fmt::format("pre-tokenizer \"{}\" is not supported (Sequence, Split, ByteLevel)", type));
  }
}

// ---- decoder ---------------------------------------------------------------------------------

void check_decoder(const Reader& r, const json& root) {
  const json* d = r.member(root, "decoder");
  if (!d || d->is_null()) r.unsupported("decoder", "missing; only the ByteLevel decoder is supported");
  std::string type = r.type_of(*d, "decoder");
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    const json& list = r.required(*d, "decoders", "decoder");
    if (list.is_array() && !list.empty()) {
      for (size_t i = 0; i < list.size(); ++i)
        if (r.type_of(list[i], fmt::format("decoder.decoders[{}]", i)) != "ByteLevel")
          r.unsupported(fmt::format("decoder.decoders[{}]", i), "only ByteLevel decoders are supported");
      return;
    }
  }
  r.unsupported("decoder.type", fmt::format("decoder \"{}\" is not supported (ByteLevel)", type));
}

// ---- post-processor --------------------------------------------------------------------------

void parse_post_processor(const Reader& r, const json& p, const std::string& path, Tokenizer::Impl& impl) {
  if (p.is_null()) return;
  std::string type = r.type_of(p, path);
  if (type == "ByteLevel") return;  // offsets only; adds no ids
  if (type == "Sequence") {
    const json& list = r.required(p, "processors", path);
    if (!list.is_array()) r.bad(path + ".processors", "expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_post_processor(r, list[i], fmt::format("{}.processors[{}]", path, i), impl);
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const json& pair = r.required(p, key, path);
      std::string fpath = path + "." + key;
      if (!pair.is_array() || pair.size() != 2) r.bad(fpath, "expected [token, id]");
      int32_t id = r.token_id(pair[1], fpath + "[1]");
      (std::string(key) == "cls" ? impl.special_prefix : impl.special_suffix).push_back(id);
    }
    return;
  }
  if (type != "TemplateProcessing")
    r.unsupported(path + ".type", fmt::format("post-processor \"{}\" is not supported", type));
  const json& specials = r.object(r.required(p, "special_tokens", path), path + ".special_tokens");
  const json& single = r.required(p, "single", path);
  if (!single.is_array()) r.bad(path + ".single", "expected an array");
  bool seen_a = false;
  for (size_t i = 0; i < single.size(); ++i) {
    std::string ipath = fmt::format("{}.single[{}]", path, i);
    const json& item = r.object(single[i], ipath);
    if (const json* seq = r.member(item, "Sequence")) {
      std::string id = r.string(r.required(r.object(*seq, ipath + ".Sequence"), "id", ipath + ".Sequence"), ipath + ".Sequence.id");
      if (id != "A" || seen_a) r.bad(ipath, "the single template must hold sequence A exactly once");
      seen_a = true;
    } else if (const json* st = r.member(item, "SpecialToken")) {
      std::string name = r.string(r.required(r.object(*st, ipath + ".SpecialToken"), "id", ipath + ".SpecialToken"),
                                  ipath + ".SpecialToken.id");
      const json* def = r.member(specials, name.c_str());
      if (!def) r.bad(ipath, fmt::format("special token \"{}\" is not defined in {}.special_tokens", name, path));
      std::string dpath = fmt::format("{}.special_tokens[\"{}\"]", path, name);
      const json& ids = r.required(r.object(*def, dpath), "ids", dpath);
      if (!ids.is_array()) r.bad(dpath + ".ids", "expected an array");
      for (size_t k = 0; k < ids.size(); ++k)
        (seen_a ? impl.special_suffix : impl.special_prefix).push_back(r.token_id(ids[k], fmt::format("{}.ids[{}]", dpath, k)));
    } else {
      r.bad(ipath, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  if (!seen_a) r.bad(path + ".single", "the single template has no sequence A");
}

// ---- tokenizer_config.json -------------------------------------------------------------------

std::optional<int32_t> config_token(const Reader& r, const json& cfg, const char* key, const Tokenizer::Impl& impl,
                                    const std::string& json_name) {
  const json* v = r.member(cfg, key);
  if (!v || v->is_null()) return std::nullopt;
  std::string content;
  if (v->is_string()) content = v->get<std::string>();
  else if (v->is_object()) content = r.string(r.required(*v, "content", key), std::string(key) + ".content");
  else r.bad(key, fmt::format("expected a string, an object with \"content\", or null, found {}", v->type_name()));
  if (auto it = impl.added_by_content.find(content); it != impl.added_by_content.end()) return it->second;
  if (auto it = impl.vocab.find(content); it != impl.vocab.end()) return it->second;
  r.bad(key, fmt::format("\"{}\" is not a token of {}", content, json_name));
}

void parse_config(std::string_view text, const std::string& name, const std::string& json_name, Tokenizer::Impl& impl) {
  Reader r(name);
  json cfg = parse_json(text, name);
  r.object(cfg, "(root)");
  impl.bos = config_token(r, cfg, "bos_token", impl, json_name);
  impl.eos = config_token(r, cfg, "eos_token", impl, json_name);
  impl.pad = config_token(r, cfg, "pad_token", impl, json_name);

  // transformers' LlamaTokenizerFast rebuilds the post-processor from these two flags.
  const json* add_bos = r.member(cfg, "add_bos_token");
  const json* add_eos = r.member(cfg, "add_eos_token");
  bool has_bos_flag = add_bos && !add_bos->is_null(), has_eos_flag = add_eos && !add_eos->is_null();
  if (has_bos_flag || has_eos_flag) {
    bool want_bos = r.boolean(cfg, "add_bos_token", false, "(root)");
    bool want_eos = r.boolean(cfg, "add_eos_token", false, "(root)");
    impl.special_prefix.clear();
    impl.special_suffix.clear();
    if (want_bos) {
      if (!impl.bos) r.bad("add_bos_token", "true but bos_token is not set");
      impl.special_prefix.push_back(*impl.bos);
    }
    if (want_eos) {
      if (!impl.eos) r.bad("add_eos_token", "true but eos_token is not set");
      impl.special_suffix.push_back(*impl.eos);
    }
  }

  if (const json* t = r.member(cfg, "chat_template"); t && !t->is_null()) {
    if (t->is_string()) {
      impl.chat_template = t->get<std::string>();
    } else if (t->is_array()) {  // [{"name": "default", "template": "..."}, ...]
      for (size_t i = 0; i < t->size(); ++i) {
        std::string path = fmt::format("chat_template[{}]", i);
        const json& e = r.object((*t)[i], path);
        if (r.string(r.required(e, "name", path), path + ".name") == "default")
          impl.chat_template = r.string(r.required(e, "template", path), path + ".template");
      }
    } else {
      r.bad("chat_template", fmt::format("expected a string or a list of named templates, found {}", t->type_name()));
    }
  }
}

ChatFormat detect_chat_format(const std::string& t) {
  if (t.find("<｜User｜>") != std::string::npos) return ChatFormat::DeepSeekR1;
  if (t.find("<|im_start|>") != std::string::npos) return ChatFormat::ChatML;
  return ChatFormat::None;
}

}  // namespace

std::unique_ptr<Tokenizer::Impl> Tokenizer::Impl::parse(std::string_view tokenizer_json, std::string_view config_json,
                                                        std::string_view chat_template_jinja,
                                                        const std::string& json_name, const std::string& config_name) {
  auto impl = std::make_unique<Impl>();
  impl->source = json_name;
  Reader r(json_name);
  {
    json root = parse_json(tokenizer_json, json_name);
    r.object(root, "(root)");
    try {
      parse_model(r, root, *impl);
      parse_added_tokens(r, root, *impl);
      if (const json* n = r.member(root, "normalizer")) parse_normalizer(r, *n, "normalizer", *impl);
      bool have_byte_level = false;
      if (const json* p = r.member(root, "pre_tokenizer")) parse_pre_tokenizer(r, *p, "pre_tokenizer", *impl, have_byte_level);
      if (!have_byte_level)
        r.unsupported("pre_tokenizer", "no ByteLevel step: only byte-level BPE tokenizers are supported");
      check_decoder(r, root);
      if (const json* p = r.member(root, "post_processor")) parse_post_processor(r, *p, "post_processor", *impl);
    } catch (const json::exception& e) {  // backstop: a type mismatch the checks above missed
      fail(ErrorCode::Format, "{}: {}", json_name, e.what());
    }
  }

  // Added tokens are matched in the raw text, or in the normalised text when normalized=true.
  for (size_t i = 0; i < impl->added.size(); ++i) {
    const tok::AddedToken& t = impl->added[i];
    if (!t.normalized || impl->normalizers.empty()) {
      (t.normalized ? impl->normalized_matcher : impl->raw_matcher).add(t.content, static_cast<uint32_t>(i));
      continue;
    }
    std::string pattern = t.content;
    for (tok::NormForm f : impl->normalizers) pattern = tok::normalize(pattern, f);
    impl->normalized_matcher.add(pattern, static_cast<uint32_t>(i));
  }

  // Decoded bytes of every id.
  impl->token_byte.resize(impl->token_str.size());
  for (size_t id = 0; id < impl->token_str.size(); ++id) {
    switch (impl->kind[id]) {
      case Kind::Model: impl->token_byte[id] = tok::byte_level_to_bytes(impl->token_str[id]); break;
      case Kind::Added:
      case Kind::AddedSpecial: impl->token_byte[id] = impl->token_str[id]; break;
      case Kind::None: break;
    }
  }

  if (!config_json.empty()) parse_config(config_json, config_name, json_name, *impl);
  if (!chat_template_jinja.empty()) impl->chat_template = std::string(chat_template_jinja);
  impl->chat_format = detect_chat_format(impl->chat_template);

  for (const auto* list : {&impl->special_prefix, &impl->special_suffix}) {
    for (int32_t id : *list) {
      if (static_cast<size_t>(id) >= impl->kind.size() || impl->kind[id] == Kind::None)
        fail(ErrorCode::Format, "{}: post_processor: special token id {} names no token", json_name, id);
    }
  }
  return impl;
}

}  // namespace reason
