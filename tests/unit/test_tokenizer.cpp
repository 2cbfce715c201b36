// Tokenizer conformance against HF `tokenizers` (fixtures from
// tests/fixtures/make_tokenizer_fixtures.py) on the real Qwen3 and DeepSeek-V3 files, plus
// round trips, streaming, thread safety, and defensive loading of broken files.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "core/error.h"
#include "tokenizer/byte_level.h"  // internal: the variants drop byte symbols
#include "tokenizer/regex.h"  // internal: tested directly below
#include "tokenizer/tokenizer.h"

using reason::ErrorCode;
using reason::StreamDecoder;
using reason::Tokenizer;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const json& fixture() {
  static const json j = json::parse(read_text(fs::path(REASON_FIXTURES_DIR) / "tokenizer" / "expected.json"));
  return j;
}

fs::path shared_dir(const std::string& name) { return fs::path(REASON_TOKENIZER_FIXTURES) / name; }

struct Loaded {
  std::shared_ptr<const Tokenizer> tok;
};

Loaded load_fixture(const std::string& name) { return {Tokenizer::load(shared_dir(name).string())}; }

// Each real tokenizer is loaded once per test binary.
const Loaded& qwen_loaded() {
  static const Loaded l = load_fixture("qwen3");
  return l;
}
const Loaded& deepseek_loaded() {
  static const Loaded l = load_fixture("deepseek_v3");
  return l;
}
const Tokenizer& by_name(const std::string& name) {
  return name == "qwen3" ? *qwen_loaded().tok : *deepseek_loaded().tok;
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

bool valid_utf8(std::string_view s) {
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

std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip, bool* all_valid) {
  StreamDecoder sd(tok, skip);
  std::string out;
  *all_valid = true;
  for (int32_t id : ids) {
    std::string piece = sd.push(id);
    if (!valid_utf8(piece)) *all_valid = false;
    out += piece;
  }
  out += sd.flush();
  return out;
}

// Expects `f` to throw reason::Error with `code` and a message containing every needle.
template <typename F>
void expect_error(F&& f, ErrorCode code, std::initializer_list<std::string> needles) {
  try {
    f();
    FAIL("expected reason::Error");
  } catch (const reason::Error& e) {
    INFO("message: " << e.what());
    CHECK(static_cast<int>(e.code()) == static_cast<int>(code));
    for (const auto& n : needles) CHECK(std::string(e.what()).find(n) != std::string::npos);
  }
}

}  // namespace

// Load time is a benchmark (bench/), not a test: no wall-clock assertions here.
TEST_CASE("real tokenizers load and report their vocabulary", "[tokenizer]") {
  const auto& q = qwen_loaded();
  const auto& d = deepseek_loaded();
  const Tokenizer& qwen = *q.tok;
  const Tokenizer& ds = *d.tok;
  CHECK(qwen.vocab_size() == 151669);
  CHECK(ds.vocab_size() == 128815);
  CHECK(qwen.token_to_id("<|im_start|>") == 151644);
  CHECK(qwen.token_to_id("Hello") == 9707);
  CHECK(qwen.id_to_token(9707) == "Hello");
  CHECK(qwen.id_to_token(151667) == "<think>");
  CHECK_FALSE(qwen.token_to_id("no such token here").has_value());
  CHECK(qwen.is_special(151644));
  CHECK_FALSE(qwen.is_special(151667));  // <think> is added but not special
  CHECK_FALSE(qwen.is_special(9707));
  CHECK_FALSE(qwen.is_special(-1));
  CHECK_FALSE(qwen.bos_id().has_value());
  CHECK(qwen.eos_id() == 151645);
  CHECK(qwen.pad_id() == 151643);
  CHECK(ds.bos_id() == 0);
  CHECK(ds.eos_id() == 1);
  CHECK(ds.is_special(0));
  CHECK_FALSE(ds.is_special(*ds.token_to_id("<｜User｜>")));
  CHECK(qwen.chat_format() == reason::ChatFormat::ChatML);
  CHECK(ds.chat_format() == reason::ChatFormat::DeepSeekR1);
  CHECK(qwen.token_bytes(*qwen.token_to_id("Ġhello")) == " hello");
}

TEST_CASE("encode matches HF tokenizers on the fixture corpus", "[tokenizer][conformance]") {
  const json& fx = fixture();
  const auto& texts = fx["texts"];
  for (const std::string name : {"qwen3", "deepseek_v3"}) {
    const Tokenizer& tok = by_name(name);
    const auto& recs = fx["encode"][name];
    REQUIRE(recs.size() == texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::string text = texts[i].get<std::string>();
      INFO(name << " text #" << i << ": " << text);
      CHECK(tok.encode(text) == ids_of(recs[i]["ids"]));
      CHECK(tok.encode(text, true) == ids_of(recs[i]["ids_special"]));
      if (recs[i].contains("ids_no_parse_special"))
        CHECK(tok.encode(text, false, false) == ids_of(recs[i]["ids_no_parse_special"]));
    }
  }
}

TEST_CASE("decode matches HF tokenizers, and round trips", "[tokenizer][conformance]") {
  const json& fx = fixture();
  for (const std::string name : {"qwen3", "deepseek_v3"}) {
    const Tokenizer& tok = by_name(name);
    for (const auto& rec : fx["decode"][name]) {
      auto ids = ids_of(rec["ids"]);
      INFO(name << " ids " << rec["ids"].dump());
      CHECK(tok.decode(ids) == rec["text"].get<std::string>());
      CHECK(tok.decode(ids, true) == rec["text_skip_special"].get<std::string>());
      bool valid = false;
      CHECK(stream_decode(tok, ids, false, &valid) == rec["text"].get<std::string>());
      CHECK(valid);
      CHECK(stream_decode(tok, ids, true, &valid) == rec["text_skip_special"].get<std::string>());
      CHECK(valid);
    }
    // decode(encode(x)) == x (Qwen normalises to NFC first); streaming gives the same text.
    const auto& texts = fx[name == "qwen3" ? "texts_nfc" : "texts"];
    const auto& raw = fx["texts"];
    for (size_t i = 0; i < texts.size(); ++i) {
      auto ids = tok.encode(raw[i].get<std::string>());
      std::string expect = texts[i].get<std::string>();
      INFO(name << " text #" << i << ": " << expect);
      CHECK(tok.decode(ids) == expect);
      bool valid = false;
      CHECK(stream_decode(tok, ids, false, &valid) == expect);
      CHECK(valid);
    }
  }
}

TEST_CASE("stream decoder holds split characters until complete", "[tokenizer]") {
  const Tokenizer& ds = by_name("deepseek_v3");
  const Tokenizer& qwen = by_name("qwen3");
  for (const Tokenizer* tok : {&ds, &qwen}) {
    // Emoji, ZWJ family, CJK, skin tones: many of these are several byte tokens each.
    std::string text = "😀👍🏽 家族👨‍👩‍👧 𠀋 € 🧑🏿‍💻 नमस्ते";
    auto ids = tok->encode(text);
    StreamDecoder sd(*tok);
    std::string out;
    size_t held = 0;
    for (int32_t id : ids) {
      std::string piece = sd.push(id);
      CHECK(valid_utf8(piece));
      if (piece.empty()) ++held;
      out += piece;
    }
    out += sd.flush();
    CHECK(out == text);
    CHECK(held > 0);  // some token did end inside a character
  }
  // A dangling half character becomes U+FFFD at flush, as decode() renders it.
  auto ids = ds.encode("😀");
  REQUIRE(ids.size() >= 1);
  std::vector<int32_t> half;
  for (int b : {0xF0, 0x9F}) {
    // Byte-level chars: 0xF0 is printable and maps to U+00F0 'ð'; 0x9F is the 33rd of the
    // 0x7F-0xA0 run, which maps to U+0121.., so U+0141 'Ł'.
    std::string ch = b == 0xF0 ? "\xC3\xB0" : "\xC5\x81";
    auto id = ds.token_to_id(ch);
    REQUIRE(id.has_value());
    half.push_back(*id);
  }
  StreamDecoder sd(ds);
  CHECK(sd.push(half[0]).empty());
  CHECK(sd.push(half[1]).empty());
  CHECK(sd.flush() == "\xEF\xBF\xBD");
  CHECK(ds.decode(half) == "\xEF\xBF\xBD");
  CHECK(sd.push(*ds.token_to_id("a")) == "a");  // reusable after flush
  expect_error([&] { sd.push(-5); }, ErrorCode::InvalidArgument, {"-5"});
}

// The patch of make_tokenizer_fixtures.py's apply_patch: set (top-level keys), model_set (keys of
// "model"), drop_bytes (single-byte tokens removed, with every merge naming a token no longer in
// the vocabulary), add_tokens.
static void apply_variant(json& j, const json& v) {
  for (const auto& [key, value] : v["set"].items()) j[key] = value;
  if (v.contains("model_set"))
    for (const auto& [key, value] : v["model_set"].items()) j["model"][key] = value;
  if (v.contains("drop_bytes")) {
    json& vocab = j["model"]["vocab"];
    for (const auto& b : v["drop_bytes"]) {
      const unsigned char byte = static_cast<unsigned char>(b.get<int>());
      vocab.erase(reason::tok::bytes_to_byte_level(std::string_view(reinterpret_cast<const char*>(&byte), 1)));
    }
    json kept = json::array();
    for (const auto& m : j["model"]["merges"]) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        a = s.substr(0, sp), b = s.substr(sp + 1);
      } else {
        a = m[0].get<std::string>(), b = m[1].get<std::string>();
      }
      if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) kept.push_back(m);
    }
    j["model"]["merges"] = std::move(kept);
  }
  for (const auto& t : v["add_tokens"]) j["added_tokens"].push_back(t);
}

TEST_CASE("patched tokenizer.json variants match HF", "[tokenizer][conformance]") {
  const json& fx = fixture();
  const auto& texts = fx["variant_texts"];
  for (const auto& v : fx["variants"]) {
    const std::string base = v["base"].get<std::string>();
    json j = json::parse(read_text(shared_dir(base) / "tokenizer.json"));
    apply_variant(j, v);
    auto tok = Tokenizer::load_from_json(j.dump(), {}, v["name"].get<std::string>());
    for (size_t i = 0; i < texts.size(); ++i) {
      INFO(v["name"].get<std::string>() << " text #" << i << ": " << texts[i].get<std::string>());
      CHECK(tok->encode(texts[i].get<std::string>()) == ids_of(v["ids"][i]));
      CHECK(tok->encode(texts[i].get<std::string>(), true) == ids_of(v["ids_special"][i]));
    }
  }
}

TEST_CASE("bad ids and bad text give clear errors", "[tokenizer]") {
  const Tokenizer& qwen = by_name("qwen3");
  std::vector<int32_t> ids = {9707, 151669};
  expect_error([&] { qwen.decode(ids); }, ErrorCode::InvalidArgument, {"151669", "ids[1]"});
  ids = {-1};
  expect_error([&] { qwen.decode(ids); }, ErrorCode::InvalidArgument, {"-1"});
  ids = {INT32_MAX};
  expect_error([&] { qwen.decode(ids); }, ErrorCode::InvalidArgument, {"2147483647"});
  expect_error([&] { qwen.id_to_token(200000); }, ErrorCode::InvalidArgument, {"200000"});
  expect_error([&] { qwen.token_bytes(-2); }, ErrorCode::InvalidArgument, {"-2"});
  expect_error([&] { qwen.encode(std::string("ok \xC3\x28 bad")); }, ErrorCode::InvalidArgument, {"UTF-8", "byte 3"});
  expect_error([&] { qwen.encode(std::string("\xED\xA0\x80")); }, ErrorCode::InvalidArgument, {"UTF-8"});  // surrogate
  expect_error([&] { qwen.encode(std::string("\xF0\x9F\x98")); }, ErrorCode::InvalidArgument, {"UTF-8"});  // truncated
  CHECK(qwen.encode("").empty());
  CHECK(qwen.decode(std::vector<int32_t>{}).empty());
}

// A pre-tokenizer or BPE merge loop that is quadratic (or worse) on these inputs does not finish
// within ctest's TIMEOUT for this test (tests/CMakeLists.txt); no clock is asserted here.
TEST_CASE("long and repetitive inputs", "[tokenizer]") {
  for (const std::string name : {"qwen3", "deepseek_v3"}) {
    const Tokenizer& tok = by_name(name);
    std::vector<std::string> inputs = {std::string(200000, ' '), std::string(200000, 'a'), std::string(50000, '\n'),
                                       std::string(100000, '7')};
    std::string cjk;
    for (int i = 0; i < 30000; ++i) cjk += "语";
    inputs.push_back(cjk);
    std::string mixed;
    for (int i = 0; i < 20000; ++i) mixed += "ab 12\t😀 ";
    inputs.push_back(mixed);
    for (const auto& s : inputs) {
      INFO(name << " input of " << s.size() << " bytes starting " << s.substr(0, 8));
      auto ids = tok.encode(s);
      CHECK(tok.decode(ids) == s);
    }
  }
}

TEST_CASE("encode is thread-safe on a shared tokenizer", "[tokenizer]") {
  const json& fx = fixture();
  const auto& texts = fx["texts"];
  for (const std::string name : {"qwen3", "deepseek_v3"}) {
    const Tokenizer& tok = by_name(name);
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int rep = 0; rep < 5; ++rep) {
          for (size_t i = t; i < texts.size(); ++i) {
            const auto& rec = fx["encode"][name][i];
            if (tok.encode(texts[i].get<std::string>()) != ids_of(rec["ids"])) ++mismatches;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(mismatches.load() == 0);
  }
}

// ---- defensive loading ---------------------------------------------------------------------

namespace {

// A small valid byte-level BPE tokenizer: the 256 byte symbols, a few merges, two added tokens.
json small_tokenizer() {
  json vocab = json::object();
  int next = 0;
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + extra++);
    std::string s;
    if (cp < 0x80) s.push_back(static_cast<char>(cp));
    else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    vocab[s] = next++;
  }
  vocab["he"] = next++;
  vocab["ll"] = next++;
  vocab["hell"] = next++;
  vocab["Ġw"] = next++;
  json j = {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", next}, {"content", "<s>"}, {"special", true}, {"lstrip", false},
                                     {"rstrip", false}, {"single_word", false}, {"normalized", false}},
                                    {{"id", next + 1}, {"content", "<think>"}, {"special", false}, {"lstrip", false},
                                     {"rstrip", false}, {"single_word", false}, {"normalized", false}}})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"}, {"pattern", {{"Regex", "\\s+|\\p{L}+|\\p{N}|[^\\s\\p{L}\\p{N}]+"}}},
                       {"behavior", "Isolated"}, {"invert", false}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"h e", json::array({"l", "l"}), "he ll", "Ġ w"})}}},
  };
  return j;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("reason_tok_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& text) const {
    fs::path p = path / name;
    fs::create_directories(p.parent_path());
    std::ofstream f(p, std::ios::binary);
    f << text;
    return p;
  }
};

// Writes `j` as <dir>/<name>/tokenizer.json and expects load() to fail with `code`, the
// file's path, and each needle in the message.
void expect_load_error(const TempDir& dir, const std::string& name, const std::string& text, ErrorCode code,
                       std::initializer_list<std::string> needles) {
  INFO("case " << name);
  fs::path p = dir.write(name + "/tokenizer.json", text);
  try {
    Tokenizer::load((dir.path / name).string());
    FAIL("expected reason::Error for " << name);
  } catch (const reason::Error& e) {
    INFO("message: " << e.what());
    CHECK(static_cast<int>(e.code()) == static_cast<int>(code));
    CHECK(std::string(e.what()).find(p.string()) != std::string::npos);
    for (const auto& n : needles) CHECK(std::string(e.what()).find(n) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("a small synthetic tokenizer works end to end", "[tokenizer]") {
  auto tok = Tokenizer::load_from_json(small_tokenizer().dump());
  auto ids = tok->encode("hello world<s>x<think>");
  // "hello" -> hell + o ; " " ; "world" -> w o r l d ; <s> ; x ; <think>
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(tok->id_to_token(id));
  CHECK(pieces == std::vector<std::string>{"hell", "o", "Ġ", "w", "o", "r", "l", "d", "<s>", "x", "<think>"});
  CHECK(tok->decode(ids) == "hello world<s>x<think>");
  CHECK(tok->decode(ids, true) == "hello worldx<think>");
  CHECK(tok->chat_format() == reason::ChatFormat::None);
  CHECK(tok->encode("<s>", false, false).size() == 3);  // parse_special=false: plain text
  CHECK(tok->encode("<think>", false, false).size() == 1);  // non-special added tokens still match
}

TEST_CASE("malformed tokenizer files give reason::Error naming file and field", "[tokenizer][defensive]") {
  TempDir dir;
  auto mutate = [](auto&& f) {
    json j = small_tokenizer();
    f(j);
    return j.dump();
  };
  using E = ErrorCode;
  expect_load_error(dir, "not_json", "{\"model\": ", E::Format, {"invalid JSON"});
  expect_load_error(dir, "root_array", "[]", E::Format, {"(root)", "expected an object"});
  expect_load_error(dir, "deep", std::string(10000, '[') + std::string(10000, ']'), E::Format, {"nests deeper"});
  expect_load_error(dir, "no_model", mutate([](json& j) { j.erase("model"); }), E::Format, {"missing field \"model\""});
  expect_load_error(dir, "model_string", mutate([](json& j) { j["model"] = "BPE"; }), E::Format, {"model", "expected an object"});
  expect_load_error(dir, "unigram", mutate([](json& j) { j["model"]["type"] = "Unigram"; }), E::Unsupported, {"model.type", "Unigram"});
  expect_load_error(dir, "wordpiece", mutate([](json& j) { j["model"]["type"] = "WordPiece"; }), E::Unsupported, {"WordPiece"});
  expect_load_error(dir, "type_number", mutate([](json& j) { j["model"]["type"] = 3; }), E::Format, {"model.type", "expected a string"});
  expect_load_error(dir, "vocab_array", mutate([](json& j) { j["model"]["vocab"] = json::array(); }), E::Format, {"model.vocab"});
  expect_load_error(dir, "vocab_id_string", mutate([](json& j) { j["model"]["vocab"]["he"] = "x"; }), E::Format,
                    {"model.vocab[\"he\"]", "integer"});
  expect_load_error(dir, "vocab_id_negative", mutate([](json& j) { j["model"]["vocab"]["he"] = -4; }), E::Format, {"-4"});
  expect_load_error(dir, "vocab_id_huge", mutate([](json& j) { j["model"]["vocab"]["he"] = 1ll << 40; }), E::Format,
                    {"model.vocab[\"he\"]", "outside"});
  expect_load_error(dir, "vocab_sparse", mutate([](json& j) { j["model"]["vocab"]["he"] = 10000000; }), E::Format,
                    {"model.vocab", "too sparse"});
  expect_load_error(dir, "added_id_gap", mutate([](json& j) { j["added_tokens"][0]["id"] = 10000000; }), E::Format,
                    {"added_tokens[0].id", "gap"});
  expect_load_error(dir, "vocab_dup_id", mutate([](json& j) { j["model"]["vocab"]["he"] = 0; }), E::Format, {"id 0 is used by both"});
  // A few missing byte symbols are normal (see the variants); most of them missing is not byte-level BPE.
  expect_load_error(dir, "vocab_no_bytes", mutate([](json& j) {
                      for (int b = 0; b < 200; ++b) {
                        const unsigned char c = static_cast<unsigned char>(b);
                        j["model"]["vocab"].erase(reason::tok::bytes_to_byte_level(std::string_view(reinterpret_cast<const char*>(&c), 1)));
                      }
                    }),
                    E::Format, {"model.vocab", "only 56 of the 256 byte symbols"});
  expect_load_error(dir, "unk_not_in_vocab", mutate([](json& j) { j["model"]["unk_token"] = "<nope>"; }), E::Format,
                    {"model.unk_token", "<nope>"});
  expect_load_error(dir, "merge_unknown", mutate([](json& j) { j["model"]["merges"].push_back("x yz"); }), E::Format,
                    {"model.merges[4]", "\"yz\" is not in model.vocab"});
  expect_load_error(dir, "merge_result_unknown", mutate([](json& j) { j["model"]["merges"].push_back("x y"); }), E::Format,
                    {"model.merges[4]", "\"xy\""});
  expect_load_error(dir, "merge_bad_string", mutate([](json& j) { j["model"]["merges"][0] = "hel"; }), E::Format,
                    {"model.merges[0]", "two tokens"});
  expect_load_error(dir, "merge_number", mutate([](json& j) { j["model"]["merges"][1] = 7; }), E::Format, {"model.merges[1]"});
  expect_load_error(dir, "merges_missing", mutate([](json& j) { j["model"].erase("merges"); }), E::Format, {"\"merges\""});
  expect_load_error(dir, "byte_fallback", mutate([](json& j) { j["model"]["byte_fallback"] = true; }), E::Unsupported,
                    {"byte_fallback"});
  expect_load_error(dir, "added_content_number", mutate([](json& j) { j["added_tokens"][0]["content"] = 5; }), E::Format,
                    {"added_tokens[0].content"});
  expect_load_error(dir, "added_id_clash", mutate([](json& j) { j["added_tokens"][1]["id"] = j["added_tokens"][0]["id"]; }),
                    E::Format, {"added_tokens[1]", "already has"});
  expect_load_error(dir, "added_id_model_clash", mutate([](json& j) { j["added_tokens"][0]["id"] = 5; }), E::Format,
                    {"added_tokens[0]", "model.vocab gives"});
  expect_load_error(dir, "added_flag_type", mutate([](json& j) { j["added_tokens"][0]["lstrip"] = "yes"; }), E::Format,
                    {"added_tokens[0].lstrip"});
  expect_load_error(dir, "normalizer_lowercase", mutate([](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }),
                    E::Unsupported, {"normalizer.type", "Lowercase"});
  expect_load_error(dir, "metaspace", mutate([](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }), E::Unsupported,
                    {"Metaspace"});
  expect_load_error(dir, "no_byte_level", mutate([](json& j) { j["pre_tokenizer"] = nullptr; }), E::Unsupported,
                    {"pre_tokenizer", "ByteLevel"});
  expect_load_error(dir, "bad_regex",
                    mutate([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(\\p{L}"; }),
                    E::Format, {"pre_tokenizer.pretokenizers[0].pattern", "does not compile"});
  expect_load_error(dir, "bad_behavior",
                    mutate([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; }), E::Format,
                    {"pre_tokenizer.pretokenizers[0].behavior", "Sideways"});
  expect_load_error(dir, "no_decoder", mutate([](json& j) { j.erase("decoder"); }), E::Unsupported, {"decoder"});
  expect_load_error(dir, "wordpiece_decoder", mutate([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }),
                    E::Unsupported, {"decoder", "WordPiece"});
  expect_load_error(dir, "template_undefined",
                    mutate([](json& j) {
                      j["post_processor"] = {{"type", "TemplateProcessing"},
                                             {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}}}},
                                                                     {{"Sequence", {{"id", "A"}}}}})},
                                             {"special_tokens", json::object()}};
                    }),
                    E::Format, {"post_processor.single[0]", "<bos>"});

  // tokenizer_config.json problems are reported against that file.
  {
    fs::path sub = dir.path / "cfg";
    dir.write("cfg/tokenizer.json", small_tokenizer().dump());
    fs::path cfg = dir.write("cfg/tokenizer_config.json", R"({"bos_token": 7})");
    expect_error([&] { Tokenizer::load(sub.string()); }, E::Format, {cfg.string(), "bos_token"});
    dir.write("cfg/tokenizer_config.json", R"({"eos_token": {"content": "<nope>"}})");
    expect_error([&] { Tokenizer::load(sub.string()); }, E::Format, {cfg.string(), "eos_token", "<nope>"});
    dir.write("cfg/tokenizer_config.json", R"({"chat_template": 1})");
    expect_error([&] { Tokenizer::load(sub.string()); }, E::Format, {cfg.string(), "chat_template"});
    dir.write("cfg/tokenizer_config.json", "{");
    expect_error([&] { Tokenizer::load(sub.string()); }, E::Format, {cfg.string(), "invalid JSON"});
    // A good config: BOS from add_bos_token, chat format from the template; path to the file works too.
    dir.write("cfg/tokenizer_config.json",
              R"({"bos_token": {"content": "<s>"}, "add_bos_token": true, "chat_template": "{{ '<|im_start|>' }}"})");
    auto tok = Tokenizer::load((sub / "tokenizer.json").string());
    CHECK(tok->bos_id() == tok->token_to_id("<s>"));
    CHECK(tok->encode("he", true) == std::vector<int32_t>{*tok->token_to_id("<s>"), *tok->token_to_id("he")});
    CHECK(tok->chat_format() == reason::ChatFormat::ChatML);
  }
  expect_error([&] { Tokenizer::load((dir.path / "missing").string()); }, E::Io, {"missing"});
}

// ---- the Oniguruma -> PCRE2 layer (internal, but the source of most subtle mismatches) -------

namespace {
std::vector<std::pair<size_t, size_t>> find_all(const std::string& pattern, const std::string& subject) {
  reason::tok::Regex re(pattern, false);
  std::vector<std::pair<size_t, size_t>> out;
  re.find_all(subject, out);
  return out;
}
}  // namespace

TEST_CASE("Oniguruma patterns run on PCRE2 with Oniguruma's meaning", "[tokenizer][regex]") {
  using reason::tok::onig_to_pcre2;
  using Spans = std::vector<std::pair<size_t, size_t>>;
  // \s is Unicode White_Space: U+3000 and U+0085 yes, U+180E (a format char since Unicode 6.3) and
  // U+200B no, although PCRE2's own UCP \s would take U+180E.
  CHECK(find_all("\\s+", "a\u3000\u0085b") == Spans{{1, 6}});
  CHECK(find_all("\\s", "\u180e\u200b").empty());
  CHECK(find_all("[^\\s]+", "\u180e") == Spans{{0, 3}});
  CHECK(find_all("\\S+", "x\u180e y") == Spans{{0, 4}, {5, 6}});
  // \uHHHH escapes, \h as hex digit, \p{^X} negation.
  CHECK(onig_to_pcre2("[\\u4e00-\\u9fa5]") == "[\\x{4e00}-\\x{9fa5}]");
  CHECK(find_all("\\h+", "zz0fAq") == Spans{{2, 5}});
  CHECK(find_all("\\p{^L}+", "ab12cd") == Spans{{2, 4}});
  // Case-insensitive contractions fold like Oniguruma: 'S and 'ſ (long s) match (?i:'s).
  CHECK(find_all("(?i:'s|'ll)", "'S 'ſ 'LL 'x") == Spans{{0, 2}, {3, 6}, {7, 10}});
  // Lookahead stays inside the piece: \s+(?!\S) leaves the last space before a word.
  CHECK(find_all("\\s+(?!\\S)|\\s+", "a   b") == Spans{{1, 3}, {3, 4}});
  // Empty matches follow Oniguruma's find_iter: none right after the previous match.
  CHECK(find_all("a*", "baa") == Spans{{0, 0}, {1, 3}});
  // Unicode 15 additions (unknown to PCRE2 10.42) are in the patched classes.
  CHECK(find_all("\\p{S}+", "\U0001FA77\U0001FABF") == Spans{{0, 8}});  // pink heart, goose
  CHECK(find_all("\\p{L}+", "\U00031350") == Spans{{0, 4}});              // CJK Extension H
  CHECK(find_all("[^\\p{L}\\p{N}]+", "\U00031350").empty());
  // Bad patterns are errors, not crashes.
  CHECK_THROWS_AS(reason::tok::Regex("(a", false), reason::Error);
  CHECK_THROWS_AS(reason::tok::Regex("\\p{L", false), reason::Error);
  CHECK_THROWS_AS(onig_to_pcre2("[\\S]"), reason::Error);
  CHECK(find_all("a.b", "a.b axb") == Spans{{0, 3}, {4, 7}});
  reason::tok::Regex literal("a.b", true);
  std::vector<std::pair<size_t, size_t>> lit;
  literal.find_all("a.b axb", lit);
  CHECK(lit == Spans{{0, 3}});
}
