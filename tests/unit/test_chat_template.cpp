// Chat formatting against transformers' apply_chat_template (fixtures from
// tests/fixtures/make_tokenizer_fixtures.py): Qwen3's ChatML template and DeepSeek-R1's template.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using reason::ChatFormat;
using reason::ChatMessage;
using reason::Tokenizer;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const json& fixture() {
  static const json j = [] {
    std::ifstream f(fs::path(REASON_FIXTURES_DIR) / "tokenizer" / "expected.json", std::ios::binary);
    REQUIRE(f.good());
    std::stringstream ss;
    ss << f.rdbuf();
    return json::parse(ss.str());
  }();
  return j;
}

const Tokenizer& tokenizer(const std::string& name) {
  static const auto qwen = Tokenizer::load((fs::path(REASON_TOKENIZER_FIXTURES) / "qwen3").string());
  static const auto ds = Tokenizer::load((fs::path(REASON_TOKENIZER_FIXTURES) / "deepseek_v3").string());
  return name == "qwen3" ? *qwen : *ds;
}

std::vector<ChatMessage> messages_of(const json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  return out;
}

}  // namespace

TEST_CASE("ChatML (Qwen3) matches transformers", "[chat]") {
  const Tokenizer& qwen = tokenizer("qwen3");
  int n = 0;
  for (const auto& rec : fixture()["chat"]) {
    auto msgs = messages_of(rec["messages"]);
    bool gen = rec["add_generation_prompt"].get<bool>();
    INFO("conversation " << rec["messages"].dump() << " gen=" << gen);
    std::string text = reason::apply_chat_template(qwen, msgs, gen, ChatFormat::ChatML);
    CHECK(text == rec["chatml"].get<std::string>());
    CHECK(reason::apply_chat_template(qwen, msgs, gen) == text);  // detected from the config
    CHECK(qwen.encode(text) == rec["chatml_ids"].get<std::vector<int32_t>>());
    ++n;
  }
  CHECK(n >= 10);
}

TEST_CASE("DeepSeek-R1 template matches transformers", "[chat]") {
  const Tokenizer& ds = tokenizer("deepseek_v3");
  for (const auto& rec : fixture()["chat"]) {
    auto msgs = messages_of(rec["messages"]);
    bool gen = rec["add_generation_prompt"].get<bool>();
    INFO("conversation " << rec["messages"].dump() << " gen=" << gen);
    std::string text = reason::apply_chat_template(ds, msgs, gen, ChatFormat::DeepSeekR1);
    CHECK(text == rec["deepseek_r1"].get<std::string>());
    // (Without a format, this tokenizer's own template — DeepSeek-V3's, which keeps reasoning in
    // history — is rendered by Jinja instead: test_jinja_templates checks it against transformers.)
    CHECK(ds.encode(text) == rec["deepseek_r1_ids"].get<std::vector<int32_t>>());
  }
}

TEST_CASE("R1 prompt shape: BOS, system, reasoning dropped, <think> prefix", "[chat]") {
  const Tokenizer& ds = tokenizer("deepseek_v3");
  std::vector<ChatMessage> msgs = {{"system", "Be brief."},
                                   {"user", "1+1?"},
                                   {"assistant", "<think>\nadd\n</think>\n\n2"},
                                   {"user", "2+2?"}};
  CHECK(reason::apply_chat_template(ds, msgs, true, ChatFormat::DeepSeekR1) ==
        "<｜begin▁of▁sentence｜>Be brief.<｜User｜>1+1?<｜Assistant｜>\n\n2<｜end▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜><think>\n");
  auto ids = ds.encode(reason::apply_chat_template(ds, msgs, true, ChatFormat::DeepSeekR1));
  REQUIRE(!ids.empty());
  CHECK(ids.front() == *ds.bos_id());
  // The tokenizer's own template (DeepSeek-V3's) keeps earlier reasoning and stops at
  // <｜Assistant｜>: the R1 "<think>\n" is appended to it.
  CHECK(reason::apply_chat_template(ds, msgs, true) ==
        "<｜begin▁of▁sentence｜>Be brief.<｜User｜>1+1?<｜Assistant｜><think>\nadd\n</think>\n\n2<｜end▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜><think>\n");
}

TEST_CASE("chat template errors", "[chat]") {
  const Tokenizer& qwen = tokenizer("qwen3");
  std::vector<ChatMessage> bad = {{"narrator", "x"}};
  // The model's own template decides what a role means (Qwen3's skips unknown ones, as in
  // transformers); the native renderings refuse them.
  CHECK(reason::apply_chat_template(qwen, bad, true) == "<|im_start|>assistant\n");
  try {
    reason::apply_chat_template(qwen, bad, true, ChatFormat::ChatML);
    FAIL("expected an error");
  } catch (const reason::Error& e) {
    CHECK(e.code() == reason::ErrorCode::InvalidArgument);
    CHECK(std::string(e.what()).find("narrator") != std::string::npos);
  }
  // Empty conversation: just the generation prompt natively; Qwen3's own template reads
  // messages[0] and fails, as in transformers ("list object has no element 0").
  CHECK(reason::apply_chat_template(qwen, std::span<const ChatMessage>{}, true, ChatFormat::ChatML) == "<|im_start|>assistant\n");
  CHECK_THROWS_WITH(reason::apply_chat_template(qwen, std::span<const ChatMessage>{}, true), Catch::Contains("is undefined"));
}

TEST_CASE("no template detected: Unsupported unless a format is given", "[chat]") {
  std::ifstream f(fs::path(REASON_TOKENIZER_FIXTURES) / "qwen3" / "tokenizer.json", std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  auto tok = Tokenizer::load_from_json(ss.str());  // no tokenizer_config.json: no template
  CHECK(tok->chat_format() == ChatFormat::None);
  std::vector<ChatMessage> msgs = {{"user", "hi"}};
  try {
    reason::apply_chat_template(*tok, msgs, true);
    FAIL("expected an error");
  } catch (const reason::Error& e) {
    CHECK(e.code() == reason::ErrorCode::Unsupported);
  }
  CHECK(reason::apply_chat_template(*tok, msgs, true, ChatFormat::ChatML) ==
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  // DeepSeekR1 format without a BOS token: the template's bos_token renders as "".
  CHECK(reason::apply_chat_template(*tok, msgs, true, ChatFormat::DeepSeekR1) == "<｜User｜>hi<｜Assistant｜><think>\n");
}
