// Bad input through the C ABI: every case must return the right status and a message that
// names the problem, and never crash (this binary also runs under ASan/UBSan).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reason.h"

namespace fs = std::filesystem;

namespace {

const fs::path kGood = fs::path(REASON_FIXTURES_DIR) / "dense" / "qwen2_tied";

struct TempModel {
  fs::path dir;
  explicit TempModel(const std::string& tag) {
    dir = fs::temp_directory_path() / ("reason_bad_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (auto& e : fs::directory_iterator(kGood)) fs::copy_file(e.path(), dir / e.path().filename());
  }
  ~TempModel() { fs::remove_all(dir); }
  nlohmann::json config() const {
    std::ifstream f(dir / "config.json");
    return nlohmann::json::parse(f);
  }
  void write_config(const nlohmann::json& j) const { std::ofstream(dir / "config.json") << j.dump(); }
  std::string weights() const { return (dir / "model.safetensors").string(); }
};

// Loads and expects failure with `status` and a message containing every word in `words`.
void expect_load_error(const fs::path& dir, reason_status status, std::vector<std::string> words) {
  reason_model* m = nullptr;
  reason_status st = reason_model_load(&m, dir.string().c_str(), nullptr);
  INFO("message: " << reason_last_error());
  CHECK(st == status);
  CHECK(m == nullptr);
  for (const auto& w : words) CHECK_THAT(reason_last_error(), Catch::Contains(w));
  reason_model_free(m);
}

std::vector<char> read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}
void write_all(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), std::streamsize(b.size()));
}

// Replaces the JSON header of a safetensors file (same data section).
void rewrite_header(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  auto bytes = read_all(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  auto h = nlohmann::json::parse(std::string(bytes.data() + 8, n));
  edit(h);
  std::string s = h.dump();
  while (s.size() % 8) s += ' ';
  std::vector<char> out(8);
  uint64_t m = s.size();
  std::memcpy(out.data(), &m, 8);
  out.insert(out.end(), s.begin(), s.end());
  out.insert(out.end(), bytes.begin() + 8 + long(n), bytes.end());
  write_all(path, out);
}

}  // namespace

TEST_CASE("null arguments are rejected and free(NULL) is a no-op", "[capi][errors]") {
  reason_model_free(nullptr);
  reason_tokenizer_free(nullptr);
  reason_generation_free(nullptr);
  reason_free(nullptr);
  CHECK(reason_model_load(nullptr, "x", nullptr) == REASON_ERR_INVALID_ARGUMENT);
  reason_model* m = nullptr;
  CHECK(reason_model_load(&m, nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("dir is NULL"));
  reason_generation* g = nullptr;
  const int32_t ids[] = {1, 2};
  const int32_t* p[] = {ids};
  size_t lens[] = {2};
  CHECK(reason_generate(&g, nullptr, p, lens, 1, nullptr, nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("model is NULL"));
  float lp[1];
  CHECK(reason_score(lp, nullptr, ids, 2) == REASON_ERR_INVALID_ARGUMENT);
  int32_t* out = nullptr;
  size_t n = 0;
  CHECK(reason_tokenizer_encode(&out, &n, nullptr, "a", 1, 0) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(reason_tokenizer_vocab_size(nullptr) == -1);
  CHECK(reason_generation_count(nullptr) == 0);
  CHECK(reason_generation_get(nullptr, 0) == nullptr);
  CHECK(std::string(reason_status_name(REASON_ERR_FORMAT)) == "REASON_ERR_FORMAT");
}

TEST_CASE("missing or non-model directories", "[capi][errors]") {
  expect_load_error("/nonexistent/model/dir", REASON_ERR_IO, {"/nonexistent/model/dir", "does not exist"});
  expect_load_error(kGood / "config.json", REASON_ERR_IO, {"not a directory"});
  TempModel t("noconfig");
  fs::remove(t.dir / "config.json");
  expect_load_error(t.dir, REASON_ERR_IO, {"config.json"});
  TempModel w("noweights");
  fs::remove(w.dir / "model.safetensors");
  expect_load_error(w.dir, REASON_ERR_IO, {"safetensors"});
}

TEST_CASE("bad config.json", "[capi][errors]") {
  TempModel t("config");
  std::ofstream(t.dir / "config.json") << "{ not json";
  expect_load_error(t.dir, REASON_ERR_FORMAT, {"config.json"});
  auto c = TempModel("config2");
  auto j = c.config();
  j["architectures"] = {"GPTNeoXForCausalLM"};
  c.write_config(j);
  expect_load_error(c.dir, REASON_ERR_UNSUPPORTED, {"GPTNeoXForCausalLM"});
  j = c.config();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["num_key_value_heads"] = 3;  // 4 heads not a multiple of 3
  c.write_config(j);
  expect_load_error(c.dir, REASON_ERR_FORMAT, {"num_key_value_heads"});
  j["num_key_value_heads"] = 2;
  j["hidden_size"] = -32;
  c.write_config(j);
  expect_load_error(c.dir, REASON_ERR_FORMAT, {"hidden_size"});
  j["hidden_size"] = "32";
  c.write_config(j);
  expect_load_error(c.dir, REASON_ERR_FORMAT, {"hidden_size"});
}

TEST_CASE("config that disagrees with the weights", "[capi][errors]") {
  TempModel t("shape");
  auto j = t.config();
  j["intermediate_size"] = 96;
  t.write_config(j);
  expect_load_error(t.dir, REASON_ERR_FORMAT, {"mlp.gate_proj.weight", "shape"});
  TempModel u("layers");
  j = u.config();
  j["num_hidden_layers"] = 3;
  j.erase("layer_types");  // (one entry per layer, else refused first)
  u.write_config(j);
  expect_load_error(u.dir, REASON_ERR_FORMAT, {"model.layers.2"});
}

TEST_CASE("corrupt, truncated and hostile safetensors", "[capi][errors]") {
  {
    TempModel t("trunc");
    auto b = read_all(t.weights());
    b.resize(b.size() / 2);
    write_all(t.weights(), b);
    expect_load_error(t.dir, REASON_ERR_FORMAT, {"model.safetensors"});
  }
  {
    TempModel t("tiny");
    write_all(t.weights(), {'\x01', '\x02', '\x03'});
    expect_load_error(t.dir, REASON_ERR_FORMAT, {"model.safetensors"});
  }
  {
    TempModel t("hugehdr");
    auto b = read_all(t.weights());
    uint64_t n = ~uint64_t(0);
    std::memcpy(b.data(), &n, 8);
    write_all(t.weights(), b);
    expect_load_error(t.dir, REASON_ERR_FORMAT, {"header"});
  }
  {
    TempModel t("garbage");
    auto b = read_all(t.weights());
    for (size_t i = 8; i < 40 && i < b.size(); ++i) b[i] = '\x7f';
    write_all(t.weights(), b);
    expect_load_error(t.dir, REASON_ERR_FORMAT, {"model.safetensors"});
  }
  {
    TempModel t("missing");
    rewrite_header(t.weights(), [](nlohmann::json& h) {
      // Drop a tensor; give its bytes to nothing -> the data section is no longer covered, so
      // instead rename it, which keeps the file valid but the model incomplete.
      auto v = h["model.norm.weight"];
      h.erase("model.norm.weight");
      h["model.norm.renamed"] = v;
    });
    expect_load_error(t.dir, REASON_ERR_FORMAT, {"model.norm.weight"});
  }
  {
    TempModel t("overflow");
    rewrite_header(t.weights(), [](nlohmann::json& h) {
      h["model.norm.weight"]["shape"] = {uint64_t(1) << 62, 16};
    });
    expect_load_error(t.dir, REASON_ERR_FORMAT, {"model.norm.weight"});
  }
  {
    TempModel t("dtype");
    rewrite_header(t.weights(), [](nlohmann::json& h) { h["model.norm.weight"]["dtype"] = "Q4_K"; });
    expect_load_error(t.dir, REASON_ERR_FORMAT, {"Q4_K"});
  }
  {
    TempModel t("i64");
    // A known dtype that is not a float type: valid file, unusable weight.
    rewrite_header(t.weights(), [](nlohmann::json& h) {
      h["model.norm.weight"]["dtype"] = "I64";
      h["model.norm.weight"]["shape"] = {16};
    });
    expect_load_error(t.dir, REASON_ERR_UNSUPPORTED, {"model.norm.weight", "I64"});
  }
}

TEST_CASE("invalid token ids and sampling options", "[capi][errors]") {
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, kGood.string().c_str(), nullptr) == REASON_OK);
  const int32_t bad[] = {1, 2, 512};
  const int32_t* p[] = {bad};
  size_t lens[] = {3};
  reason_generation* g = nullptr;
  CHECK(reason_generate(&g, m, p, lens, 1, nullptr, nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("512"));
  CHECK(g == nullptr);
  const int32_t neg[] = {5, -3};
  float lp[2];
  CHECK(reason_score(lp, m, neg, 2) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("-3"));
  CHECK(reason_score(lp, m, neg, 1) == REASON_ERR_INVALID_ARGUMENT);
  size_t zero[] = {0};
  CHECK(reason_generate(&g, m, p, zero, 1, nullptr, nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("empty prompt"));
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.top_p = 1.5f;
  const int32_t good[] = {1, 2};
  const int32_t* pg[] = {good};
  size_t lg[] = {2};
  CHECK(reason_generate(&g, m, pg, lg, 1, &o, nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("top_p"));
  o = reason_sampling_options REASON_SAMPLING_OPTIONS_INIT;
  o.struct_size = 0;
  CHECK(reason_generate(&g, m, pg, lg, 1, &o, nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("struct_size"));
  const reason_tokenizer* tok = reason_model_tokenizer(m);
  char* text = nullptr;
  const int32_t oov[] = {100000};
  CHECK(reason_tokenizer_decode(&text, tok, oov, 1, 0) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("100000"));
  reason_model_free(m);
}

TEST_CASE("an old caller's smaller options struct still works", "[capi]") {
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, kGood.string().c_str(), nullptr) == REASON_OK);
  // A caller compiled against a header whose struct ended after max_new_tokens.
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.temperature = 0;
  o.max_new_tokens = 5;
  o.struct_size = uint32_t(offsetof(reason_sampling_options, seed));
  const int32_t good[] = {1, 2};
  const int32_t* pg[] = {good};
  size_t lg[] = {2};
  reason_generation* g = nullptr;
  REQUIRE(reason_generate(&g, m, pg, lg, 1, &o, nullptr, nullptr) == REASON_OK);
  CHECK(reason_generation_get(g, 0)->n_tokens <= 5);
  reason_generation_free(g);
  reason_model_free(m);
}
