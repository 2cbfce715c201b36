// Fuzz target for the tokenizer. The first byte picks what the rest of the input is:
//   0  text for a small built-in byte-level BPE tokenizer (no normaliser): encode must accept any
//      valid UTF-8 and decode(encode(x)) == x; invalid UTF-8 must throw reason::Error
//   1  text for the real Qwen3 tokenizer (when found): encode / decode / stream-decode agree
//   2  little-endian int32 token ids: decode and StreamDecoder agree, bad ids throw reason::Error
//   3  a tokenizer.json document: load_from_json either succeeds or throws reason::Error
// Anything else escaping (a crash, another exception, a failed check) is a bug.
// The Qwen3 file is looked up in $REASON_FUZZ_TOKENIZER, then in the build tree's copy unpacked
// from tests/fixtures/tokenizers; without it mode 1 falls back to the built-in tokenizer.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

using json = nlohmann::json;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_tokenizer: check failed: %s\n", what);
    std::abort();
  }
}

std::string byte_symbol(int b) {
  static int map[256];
  static bool init = false;
  if (!init) {
    int extra = 0;
    for (int i = 0; i < 256; ++i) {
      bool printable = (i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      map[i] = printable ? i : 256 + extra++;
    }
    init = true;
  }
  int cp = map[b];
  std::string s;
  if (cp < 0x80) s.push_back(static_cast<char>(cp));
  else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// Built-in tokenizer: 256 byte symbols, a few merges, the Qwen pre-tokenizer regex, added tokens
// with every flag HF has.
const reason::Tokenizer& small() {
  static const std::shared_ptr<const reason::Tokenizer> tok = [] {
    json vocab = json::object();
    int id = 0;
    for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = id++;
    json merges = json::array();
    for (const char* m : {"Ġ t", "h e", "i n", "Ġt he", "Ġ Ġ", "ĠĠ ĠĠ", "e r", "in g"}) {
      merges.push_back(m);
      std::string s(m);
      s.erase(s.find(' '), 1);
      vocab[s] = id++;
    }
    auto added = [&](const char* content, bool special, bool lstrip, bool rstrip, bool single_word, bool normalized) {
      return json{{"id", id++}, {"content", content}, {"special", special}, {"lstrip", lstrip},
                  {"rstrip", rstrip}, {"single_word", single_word}, {"normalized", normalized}};
    };
    json tokens = json::array({added("<|im_start|>", true, false, false, false, false),
                               added("<mask>", true, true, true, false, false),
                               added("[W]", false, false, false, true, true), added("<think>", false, false, false, false, false)});
    json j = {
        {"added_tokens", tokens},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           json::array({{{"type", "Split"},
                         {"pattern",
                          {{"Regex",
                            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                            "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                         {"behavior", "Isolated"},
                         {"invert", false}},
                        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
        {"post_processor", {{"type", "ByteLevel"}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
    };
    return reason::Tokenizer::load_from_json(j.dump(), {}, "fuzz-small");
  }();
  return *tok;
}

const reason::Tokenizer* qwen() {
  static const std::shared_ptr<const reason::Tokenizer> tok = []() -> std::shared_ptr<const reason::Tokenizer> {
    namespace fs = std::filesystem;
    std::vector<fs::path> candidates;
    if (const char* env = std::getenv("REASON_FUZZ_TOKENIZER")) candidates.emplace_back(env);
    #ifdef REASON_TOKENIZER_FIXTURES
    candidates.push_back(fs::path(REASON_TOKENIZER_FIXTURES) / "qwen3");
#endif
    for (const auto& p : candidates) {
      std::error_code ec;
      if (fs::exists(p, ec)) return reason::Tokenizer::load(p.string());
    }
    return nullptr;
  }();
  return tok.get();
}

bool is_valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<uint8_t>(s[i]);
    size_t n = b < 0x80 ? 1 : b >= 0xF5 ? 0 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 ? 2 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    auto b1 = static_cast<uint8_t>(s[i + 1 < s.size() ? i + 1 : i]);
    if ((b == 0xE0 && b1 < 0xA0) || (b == 0xED && b1 > 0x9F) || (b == 0xF0 && b1 < 0x90) || (b == 0xF4 && b1 > 0x8F))
      return false;  // overlong, surrogate, or beyond U+10FFFF
    i += n;
  }
  return true;
}

void stream_agrees(const reason::Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  std::string whole = tok.decode(ids, skip);
  reason::StreamDecoder sd(tok, skip);
  std::string streamed;
  for (int32_t id : ids) {
    std::string piece = sd.push(id);
    check(is_valid_utf8(piece), "stream piece is valid UTF-8");
    streamed += piece;
  }
  streamed += sd.flush();
  check(streamed == whole, "stream decode == decode");
  check(is_valid_utf8(whole), "decode output is valid UTF-8");
}

void text_mode(const reason::Tokenizer& tok, const std::string& text, bool exact_round_trip) {
  for (bool parse_special : {true, false}) {
    std::vector<int32_t> ids;
    try {
      ids = tok.encode(text, parse_special, parse_special);
    } catch (const reason::Error&) {
      check(!is_valid_utf8(text), "encode rejects only invalid UTF-8");
      return;
    }
    check(is_valid_utf8(text), "encode accepted invalid UTF-8");
    std::vector<int32_t> plain = tok.encode(text, false, parse_special);
    // (special tokens with lstrip/rstrip absorb whitespace, so compare without them)
    if (exact_round_trip && !parse_special) check(tok.decode(plain) == text, "decode(encode(x)) == x");
    stream_agrees(tok, ids, false);
    stream_agrees(tok, ids, true);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode) {
    case 0:
      text_mode(small(), rest, true);
      break;
    case 1:
      if (const reason::Tokenizer* q = qwen()) text_mode(*q, rest, false);
      else text_mode(small(), rest, true);
      break;
    case 2: {
      const reason::Tokenizer& tok = qwen() ? *qwen() : small();
      std::vector<int32_t> ids(rest.size() / 4);
      if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
      // Fold most ids into the vocabulary so decoding is exercised, keep some out of range.
      for (auto& id : ids)
        if ((id & 0x40000000) == 0) id = static_cast<int32_t>(static_cast<uint32_t>(id) % static_cast<uint32_t>(tok.vocab_size()));
      bool all_valid = true;
      for (int32_t id : ids) all_valid = all_valid && id >= 0 && id < tok.vocab_size();
      try {
        stream_agrees(tok, ids, false);
        stream_agrees(tok, ids, true);
        check(all_valid, "decode accepted an out-of-range id");
      } catch (const reason::Error&) {
        check(!all_valid, "decode rejected only out-of-range ids");
      }
      break;
    }
    case 3:
      try {
        auto tok = reason::Tokenizer::load_from_json(rest, {}, "fuzz-input");
        text_mode(*tok, "Hello world <think> 123 日本語 😀", false);
      } catch (const reason::Error&) {
      }
      break;
  }
  return 0;
}
