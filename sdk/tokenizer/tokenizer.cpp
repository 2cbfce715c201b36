// reason::Tokenizer: loading files, and the encode / decode pipelines (HF order: added tokens
// -> normaliser -> added tokens marked normalized -> pre-tokenizer splits -> ByteLevel -> BPE
// -> post-processor).
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"

namespace reason {
namespace {

namespace fs = std::filesystem;

// Largest tokenizer file read (real ones are 7-30 MB).
constexpr uintmax_t kMaxFileBytes = uintmax_t{1} << 30;

std::string read_file(const fs::path& path) {
  std::error_code ec;
  uintmax_t size = fs::file_size(path, ec);
  if (ec) fail(ErrorCode::Io, "{}: cannot read: {}", path.string(), ec.message());
  if (size > kMaxFileBytes) fail(ErrorCode::Format, "{}: {} bytes is larger than the {} byte limit", path.string(), size, kMaxFileBytes);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorCode::Io, "{}: cannot open", path.string());
  std::string data(static_cast<size_t>(size), '\0');
  f.read(data.data(), static_cast<std::streamsize>(size));
  if (static_cast<uintmax_t>(f.gcount()) != size) fail(ErrorCode::Io, "{}: short read", path.string());
  return data;
}

// Scratch of one encode() call (so encode stays const and thread-safe).
struct EncodeState {
  const Tokenizer::Impl& m;
  bool parse_special;
  std::vector<int32_t>& out;
  tok::BpeScratch bpe;
  std::vector<std::vector<std::pair<size_t, size_t>>> ranges;  // per pre-tokenizer level
  std::vector<std::pair<size_t, size_t>> matches;     // of the Split step being applied
  std::vector<std::pair<size_t, size_t>> bl_matches;  // of the ByteLevel (GPT-2) regex
  std::string prefixed;  // ByteLevel add_prefix_space copy
  std::string word_chars;  // ignore_merges lookup key
};

void encode_word(EncodeState& st, std::string_view word) {
  if (word.empty()) return;
  if (st.m.ignore_merges) {
    st.word_chars = tok::bytes_to_byte_level(word);
    if (auto it = st.m.vocab.find(st.word_chars); it != st.m.vocab.end()) {
      st.out.push_back(it->second);
      return;
    }
  }
  st.m.bpe.encode_word(word, st.bpe, st.out);
}

void byte_level_step(EncodeState& st, std::string_view piece) {
  std::string_view s = piece;
  if (st.m.prefix_space && (piece.empty() || piece[0] != ' ')) {
    st.prefixed.assign(" ").append(piece);
    s = st.prefixed;
  }
  if (!st.m.byte_level_regex) {
    encode_word(st, s);
    return;
  }
  // Isolated split with the GPT-2 pattern: matches and the gaps between them are all words.
  auto& found = st.bl_matches;
  found.clear();
  st.m.byte_level_regex->find_all(s, found);
  size_t prev = 0;
  for (auto [b, e] : found) {
    if (prev < b) encode_word(st, s.substr(prev, b - prev));
    encode_word(st, s.substr(b, e - b));
    prev = e;
  }
  if (prev < s.size()) encode_word(st, s.substr(prev));
}

// HF's NormalizedString::split for one Split step: the kept [begin, end) ranges of `piece`.
void split_step(EncodeState& st, const tok::SplitStep& step, std::string_view piece,
                std::vector<std::pair<size_t, size_t>>& kept) {
  st.matches.clear();
  step.regex->find_all(piece, st.matches);
  struct Seg {
    size_t b, e;
    bool match;
  };
  std::vector<Seg> segs;
  segs.reserve(st.matches.size() * 2 + 1);
  size_t prev = 0;
  for (auto [b, e] : st.matches) {
    if (prev != b) segs.push_back({prev, b, false});
    segs.push_back({b, e, true});
    prev = e;
  }
  if (prev != piece.size()) segs.push_back({prev, piece.size(), false});
  if (step.invert)
    for (auto& s : segs) s.match = !s.match;

  std::vector<Seg> out;
  out.reserve(segs.size());
  switch (step.behavior) {
    case tok::SplitBehavior::Isolated:
      out = segs;
      break;
    case tok::SplitBehavior::Removed:
      for (const auto& s : segs)
        if (!s.match) out.push_back(s);
      break;
    case tok::SplitBehavior::Contiguous: {
      bool previous = false;
      for (const auto& s : segs) {
        if (s.match == previous && !out.empty()) out.back().e = s.e;
        else out.push_back(s);
        previous = s.match;
      }
      break;
    }
    case tok::SplitBehavior::MergedWithPrevious: {
      bool previous = false;
      for (const auto& s : segs) {
        if (s.match && !previous && !out.empty()) out.back().e = s.e;
        else out.push_back(s);
        previous = s.match;
      }
      break;
    }
    case tok::SplitBehavior::MergedWithNext: {
      bool previous = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->match && !previous && !out.empty()) out.back().b = it->b;
        else out.push_back(*it);
        previous = it->match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  for (const auto& s : out)
    if (s.e > s.b) kept.emplace_back(s.b, s.e);
}

void pre_tokenize(EncodeState& st, std::string_view piece, size_t level) {
  if (piece.empty()) return;
  if (level == st.m.splits.size()) {
    byte_level_step(st, piece);
    return;
  }
  auto& kept = st.ranges[level];
  kept.clear();
  split_step(st, st.m.splits[level], piece, kept);
  // Deeper levels use their own vectors, so `kept` stays valid while we recurse.
  for (size_t i = 0; i < kept.size(); ++i) pre_tokenize(st, piece.substr(kept[i].first, kept[i].second - kept[i].first), level + 1);
}

// Text between raw-matched added tokens: normalise, match normalized added tokens, pre-tokenize.
void encode_segment(EncodeState& st, std::string_view seg) {
  std::string normalized;
  std::string_view s = seg;
  if (!st.m.normalizers.empty()) {
    normalized.assign(seg);
    for (tok::NormForm f : st.m.normalizers) normalized = tok::normalize(normalized, f);
    s = normalized;
  }
  if (st.m.normalized_matcher.empty()) {
    pre_tokenize(st, s, 0);
    return;
  }
  std::vector<tok::AddedTokenMatcher::Piece> pieces;
  st.m.normalized_matcher.split(s, st.m.added, st.parse_special, pieces);
  for (const auto& p : pieces) {
    if (p.token >= 0) st.out.push_back(st.m.added[static_cast<size_t>(p.token)].id);
    else pre_tokenize(st, s.substr(p.begin, p.end - p.begin), 0);
  }
}

}  // namespace

void Tokenizer::Impl::check_id(int32_t id, const char* what) const {
  if (id < 0 || static_cast<size_t>(id) >= kind.size())
    fail(ErrorCode::InvalidArgument, "{}: token id {} is outside the vocabulary [0, {}) of {}", what, id, kind.size(), source);
  if (kind[static_cast<size_t>(id)] == Kind::None)
    fail(ErrorCode::InvalidArgument, "{}: token id {} names no token in {}", what, id, source);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  if (is_gguf_file(path)) {  // a GGUF model file: the tokenizer of its metadata
    const GgufTokenizerFiles f = gguf_tokenizer_files(*GgufFile::open(path));
    return load_from_json(f.tokenizer_json, f.tokenizer_config_json, path);
  }
  fs::path json_path = fs::is_directory(p, ec) ? p / "tokenizer.json" : p;
  if (!fs::exists(json_path, ec)) fail(ErrorCode::Io, "{}: no such file", json_path.string());
  fs::path dir = json_path.parent_path();
  std::string json_text = read_file(json_path);
  std::string config_text, jinja_text;
  fs::path config_path = dir / "tokenizer_config.json";
  if (fs::exists(config_path, ec)) config_text = read_file(config_path);
  fs::path jinja_path = dir / "chat_template.jinja";
  if (fs::exists(jinja_path, ec)) jinja_text = read_file(jinja_path);
  auto impl = Impl::parse(json_text, config_text, jinja_text, json_path.string(), config_path.string());
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

std::shared_ptr<const Tokenizer> Tokenizer::load_from_json(std::string_view tokenizer_json,
                                                           std::string_view tokenizer_config_json,
                                                           std::string_view source_name) {
  std::string name(source_name);
  auto impl = Impl::parse(tokenizer_json, tokenizer_config_json, {}, name, name + " (tokenizer_config)");
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens, bool parse_special) const {
  const Impl& m = *impl_;
  if (size_t bad = tok::find_invalid_utf8(text); bad != tok::kNpos)
    fail(ErrorCode::InvalidArgument, "encode: input is not valid UTF-8 (byte {} of {}: 0x{:02X})", bad, text.size(),
         static_cast<uint8_t>(text[bad]));
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special_tokens) out.insert(out.end(), m.special_prefix.begin(), m.special_prefix.end());

  EncodeState st{m, parse_special, out, {}, {}, {}, {}, {}, {}};
  st.ranges.resize(m.splits.size());
  std::vector<tok::AddedTokenMatcher::Piece> pieces;
  m.raw_matcher.split(text, m.added, parse_special, pieces);
  for (const auto& p : pieces) {
    if (p.token >= 0) out.push_back(m.added[static_cast<size_t>(p.token)].id);
    else encode_segment(st, text.substr(p.begin, p.end - p.begin));
  }

  if (add_special_tokens) out.insert(out.end(), m.special_suffix.begin(), m.special_suffix.end());
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    if (id < 0 || static_cast<size_t>(id) >= m.kind.size() || m.kind[static_cast<size_t>(id)] == Impl::Kind::None)
      m.check_id(id, fmt::format("decode: ids[{}]", i).c_str());
    if (skip_special_tokens && m.kind[static_cast<size_t>(id)] == Impl::Kind::AddedSpecial) continue;
    bytes += m.token_byte[static_cast<size_t>(id)];
  }
  std::string out;
  out.reserve(bytes.size());
  tok::append_lossy_utf8(out, bytes, true);
  return out;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  impl_->check_id(id, "token_bytes");
  return impl_->token_byte[static_cast<size_t>(id)];
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->kind.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) return it->second;
  if (auto it = impl_->vocab.find(token); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  impl_->check_id(id, "id_to_token");
  return impl_->token_str[static_cast<size_t>(id)];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->kind.size() &&
         impl_->kind[static_cast<size_t>(id)] == Impl::Kind::AddedSpecial;
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
std::optional<int32_t> Tokenizer::pad_id() const { return impl_->pad; }
ChatFormat Tokenizer::chat_format() const { return impl_->chat_format; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::source() const { return impl_->source; }

// ---- StreamDecoder -----------------------------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special_tokens)
    : tok_(&tok), skip_special_(skip_special_tokens) {}

std::string StreamDecoder::push(int32_t id) {
  const Tokenizer::Impl& m = *tok_->impl_;
  m.check_id(id, "StreamDecoder::push");
  std::string out;
  if (skip_special_ && m.kind[static_cast<size_t>(id)] == Tokenizer::Impl::Kind::AddedSpecial) return out;
  pending_ += m.token_byte[static_cast<size_t>(id)];
  size_t used = tok::append_lossy_utf8(out, pending_, false);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  tok::append_lossy_utf8(out, pending_, true);
  pending_.clear();
  return out;
}

}  // namespace reason
