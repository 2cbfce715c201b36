// config.json is untrusted: products of fields are overflow-checked, floats must be finite,
// and nothing is sized by num_hidden_layers before the weights show that many layers. Each is a
// Format error naming the field.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "core/error.h"
#include "model/config.h"
#include "model/model.h"

using namespace reason;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kFixtures = fs::path(REASON_FIXTURES_DIR);

json fixture_config(const std::string& rel) {
  std::ifstream in(kFixtures / rel / "config.json");
  return json::parse(in);
}

// Parses `j` and expects a Format error whose message contains every word.
void expect_format(const json& j, const std::vector<std::string>& words) {
  INFO(j.dump());
  test::expect_error([&] { ModelConfig::from_json(j, "config.json"); }, ErrorCode::Format, words);
}

struct TempModel {
  fs::path dir;
  TempModel(const std::string& src, const std::string& tag) {
    dir = fs::temp_directory_path() / ("reason_cfglimits_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (auto& e : fs::directory_iterator(kFixtures / src)) fs::copy_file(e.path(), dir / e.path().filename());
  }
  ~TempModel() { fs::remove_all(dir); }
  void write_config_text(const std::string& text) const { std::ofstream(dir / "config.json") << text; }
};

void expect_load_format(const fs::path& dir, const std::vector<std::string>& words) {
  test::expect_error([&] { Model::load(dir.string()); }, ErrorCode::Format, words);
}

}  // namespace

TEST_CASE("the fixture configs still parse", "[config][limits]") {
  for (const char* f : {"dense/qwen2_tied", "dense/llama_gqa2_llama3rope", "moe/mixtral", "moe/qwen2_moe", "moe/qwen3_moe",
                        "moe/dsv3_noqlora_nogroup", "moe/dsv3_qlora_group", "moe/dsv3_fp8"})
    CHECK_NOTHROW(ModelConfig::from_json(fixture_config(f), f));
}

TEST_CASE("products of config fields are overflow-checked", "[config][limits]") {
  const json dense = fixture_config("dense/qwen2_tied");
  const int64_t big = int64_t(1) << 40;  // the largest single field value accepted
  SECTION("vocab_size x hidden_size") {
    json j = dense;
    j["vocab_size"] = (int64_t(1) << 31) - 1;
    j["hidden_size"] = big;
    j["head_dim"] = 16;
    expect_format(j, {"config.json", "vocab_size x hidden_size", "overflows"});
  }
  SECTION("num_attention_heads x head_dim") {
    json j = dense;
    j["num_attention_heads"] = 65536;
    j["num_key_value_heads"] = 65536;
    j["head_dim"] = 65536;
    j["hidden_size"] = int64_t(1) << 20;
    expect_format(j, {"num_attention_heads x head_dim x hidden_size", "65536 x 65536 x 1048576", "overflows"});
  }
  SECTION("intermediate_size x hidden_size") {
    json j = dense;
    j["intermediate_size"] = big;
    j["hidden_size"] = 1 << 16;
    j["head_dim"] = 16;
    j["vocab_size"] = 16;
    j.erase("eos_token_id");
    j.erase("bos_token_id");
    expect_format(j, {"intermediate_size x hidden_size", "overflows"});
  }
  SECTION("experts x moe_intermediate_size x hidden_size (Mixtral)") {
    json j = fixture_config("moe/mixtral");
    j["num_local_experts"] = 4096;
    j["num_experts_per_tok"] = 2;
    j["intermediate_size"] = int64_t(1) << 20;
    j["hidden_size"] = int64_t(1) << 20;
    j["head_dim"] = 16;
    j["vocab_size"] = 16;
    j.erase("eos_token_id");
    j.erase("bos_token_id");
    expect_format(j, {"experts x moe_intermediate_size x hidden_size", "overflows"});
  }
  SECTION("MLA: num_attention_heads x (qk_nope_head_dim + v_head_dim) x kv_lora_rank") {
    json j = fixture_config("moe/dsv3_noqlora_nogroup");
    j["num_attention_heads"] = 65536;
    j["num_key_value_heads"] = 65536;
    j["qk_nope_head_dim"] = 65536;
    j["v_head_dim"] = 65536;
    j["hidden_size"] = 16;
    j["kv_lora_rank"] = int64_t(1) << 24;
    expect_format(j, {"num_attention_heads", "kv_lora_rank", "overflows"});
  }
  SECTION("counts the kernels take as int are capped") {
    json j = dense;
    j["num_attention_heads"] = int64_t(1) << 33;
    j["num_key_value_heads"] = int64_t(1) << 33;
    expect_format(j, {"num_attention_heads", "more than the 65536 supported"});
    j = dense;
    j["head_dim"] = int64_t(1) << 32;
    expect_format(j, {"head_dim", "more than the 65536 supported"});
    j = dense;
    j["max_position_embeddings"] = int64_t(1) << 35;
    expect_format(j, {"max_position_embeddings", "supported"});
    j["max_position_embeddings"] = 0;
    expect_format(j, {"max_position_embeddings", "positive"});
  }
}

TEST_CASE("NaN and infinite floats are refused, naming the field", "[config][limits]") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const json dense = fixture_config("dense/qwen2_tied");
  for (double bad : {inf, -inf, nan, 1e39 /* finite double, infinite float */}) {
    DYNAMIC_SECTION("value " << bad) {
      json j = dense;
      j["rms_norm_eps"] = bad;
      expect_format(j, {"'rms_norm_eps'"});
      j = dense;
      j["rope_theta"] = bad;
      expect_format(j, {"'rope_theta'"});
      j = fixture_config("moe/dsv3_noqlora_nogroup");
      j["routed_scaling_factor"] = bad;
      expect_format(j, {"'routed_scaling_factor'", "finite"});
      j = fixture_config("dense/llama_gqa2_llama3rope");
      REQUIRE(j.contains("rope_parameters"));
      for (const char* k : {"factor", "low_freq_factor", "high_freq_factor", "rope_theta"}) {
        json r = j;
        r["rope_parameters"][k] = bad;
        expect_format(r, {std::string("'rope_parameters.") + k + "'", "finite"});
      }
      j = dense;  // transformers 4 layout: rope_scaling beside a top-level rope_theta
      j.erase("rope_parameters");
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", bad}};
      expect_format(j, {"'rope_scaling.factor'", "finite"});
      j = fixture_config("moe/dsv3_noqlora_nogroup");
      for (const char* k : {"factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor"}) {
        json r = j;
        r["rope_parameters"]["rope_type"] = "yarn";
        r["rope_parameters"]["factor"] = 4.0;
        r["rope_parameters"][k] = bad;
        expect_format(r, {std::string("'rope_parameters.") + k + "'", "finite"});
      }
    }
  }
  SECTION("a negative rms_norm_eps") {
    json j = dense;
    j["rms_norm_eps"] = -1e-6;
    expect_format(j, {"'rms_norm_eps'", ">= 0"});
  }
  SECTION("from a file: 1e39 is a finite double but an infinite float") {
    TempModel t("dense/qwen2_tied", "inf");
    json j = dense;
    j["rms_norm_eps"] = 0.5;
    std::string text = j.dump();
    const std::string from = "\"rms_norm_eps\":0.5";
    REQUIRE(text.find(from) != std::string::npos);
    std::string big = text;
    big.replace(big.find(from), from.size(), "\"rms_norm_eps\":1e39");
    t.write_config_text(big);
    expect_load_format(t.dir, {"config.json", "'rms_norm_eps'", "finite"});
    // 1e999 overflows double: the JSON reader refuses it before the config is looked at.
    big = text;
    big.replace(big.find(from), from.size(), "\"rms_norm_eps\":1e999");
    t.write_config_text(big);
    expect_load_format(t.dir, {"config.json", "number overflow"});
  }
}

TEST_CASE("a huge num_hidden_layers fails before anything is sized by it", "[config][limits]") {
  json j = fixture_config("dense/qwen2_tied");
  j["num_hidden_layers"] = int64_t(1) << 40;
  expect_format(j, {"num_hidden_layers", "more than the 4096 supported"});
  j["num_hidden_layers"] = 4097;
  expect_format(j, {"num_hidden_layers", "4097"});
  // Within the cap but more layers than the weights hold: the missing last layer is named
  // before any layer is loaded.
  TempModel t("dense/qwen2_tied", "layers");
  j["num_hidden_layers"] = 4000;
  j.erase("layer_types");  // (one entry per layer, else refused first)
  t.write_config_text(j.dump());
  expect_load_format(t.dir, {"num_hidden_layers", "4000", "model.layers.3999.input_layernorm.weight"});
}

TEST_CASE("config fields that change the math and are not implemented are refused by name", "[config][limits]") {
  // Before, these loaded and silently computed something else than transformers (SiLU for a GELU
  // model, full attention for a sliding window).
  auto refused = [](json j, const std::vector<std::string>& words) {
    INFO(j.dump());
    test::expect_error([&] { ModelConfig::from_json(j, "config.json"); }, ErrorCode::Unsupported, words);
  };
  const json llama = fixture_config("dense/llama_mha"), mixtral = fixture_config("moe/mixtral"),
             qwen3_moe = fixture_config("moe/qwen3_moe"), qwen3 = fixture_config("dense/qwen3_tied");
  json j = llama;
  j["hidden_act"] = "gelu_pytorch_tanh";  // implemented (test_dense_conformance's llama_gelu_tanh)
  CHECK(ModelConfig::from_json(j, "config.json").hidden_act == Activation::GeluTanh);
  j["hidden_act"] = "gelu";
  CHECK(ModelConfig::from_json(j, "config.json").hidden_act == Activation::Gelu);
  j["hidden_act"] = "quick_gelu";
  refused(j, {"hidden_act", "quick_gelu"});
  j["hidden_act"] = "relu2";
  refused(j, {"hidden_act", "relu2"});
  j = llama;
  j["hidden_act"] = "swish";  // transformers' ACT2FN: the same function as silu
  CHECK_NOTHROW(ModelConfig::from_json(j, "config.json"));
  // Sliding windows are read per layer as transformers 5 decides them (the attention itself is
  // checked against transformers in test_dense_conformance / test_moe_conformance).
  auto windows = [](const json& cfg) { return ModelConfig::from_json(cfg, "config.json").layer_window; };
  j = mixtral;
  j["sliding_window"] = 40;
  CHECK(windows(j) == std::vector<int64_t>{40, 40});
  j = qwen3_moe;
  j["use_sliding_window"] = true;
  j["sliding_window"] = 16;
  CHECK(windows(j) == std::vector<int64_t>{16, 16});
  j = qwen3;  // two layers: layer 1 >= max_window_layers 1
  j["use_sliding_window"] = true;
  j["sliding_window"] = 8;
  j["max_window_layers"] = 1;
  j.erase("layer_types");
  CHECK(windows(j) == std::vector<int64_t>{0, 8});
  j["layer_types"] = json::array({"sliding_attention", "full_attention"});  // explicit types win
  CHECK(windows(j) == std::vector<int64_t>{8, 0});
  j["use_sliding_window"] = false;  // sliding layers without the switch: refused, never silently full
  refused(j, {"sliding_attention", "use_sliding_window is false"});
  j = qwen3;
  j["layer_types"] = json::array({"full_attention", "chunked_attention"});
  refused(j, {"layer_types[1]", "chunked_attention"});
  j = qwen3;
  j["use_sliding_window"] = true;
  j["sliding_window"] = 0;
  test::expect_error([&] { ModelConfig::from_json(j, "config.json"); }, ErrorCode::Format, {"sliding_window"});
  j = llama;
  j["layer_types"] = json::array({"full_attention", "sliding_attention"});
  refused(j, {"no sliding window"});
  j = llama;
  j["final_logit_softcapping"] = 30.0;
  refused(j, {"final_logit_softcapping"});
  j = llama;
  j["partial_rotary_factor"] = 0.5;
  refused(j, {"partial_rotary_factor"});
  for (const char* f : {"dense/qwen3_tied", "dense/qwen3_bias_untied"}) CHECK_NOTHROW(ModelConfig::from_json(fixture_config(f), f));
}

TEST_CASE("a config field the engine does not understand is refused by name unless allowed", "[config][limits]") {
  auto refused = [](const json& j, const std::vector<std::string>& words) {
    INFO(j.dump());
    test::expect_error([&] { ModelConfig::from_json(j, "config.json"); }, ErrorCode::Unsupported, words);
  };
  // Every fixture config written by transformers 5.25 (all their default fields) loads.
  for (const char* f : {"dense/llama_mha", "dense/qwen2_tied", "dense/qwen3_sliding", "dense/llama_gelu_tanh", "moe/mixtral",
                        "moe/qwen2_moe", "moe/qwen3_moe", "moe/dsv3_qlora_group", "moe/dsv3_fp8"})
    CHECK_NOTHROW(ModelConfig::from_json(fixture_config(f), f));
  json j = fixture_config("dense/qwen2_tied");
  j["vision_start_token_id"] = 151652;  // a Qwen2-VL field: not understood, so never ignored
  refused(j, {"field 'vision_start_token_id'", "REASON_ALLOW_UNKNOWN_CONFIG"});
  CHECK_NOTHROW(ModelConfig::from_json(j, "config.json", /*allow_unknown_fields=*/true));
  // Fields of published configs: Qwen2.5 / R1-Distill-Qwen ("use_mrope": false), SmolLM2
  // ("is_llama_config", "rope_interleaved": false, "transformers.js_config").
  j = fixture_config("dense/qwen2_tied");
  j["use_mrope"] = false;
  CHECK_NOTHROW(ModelConfig::from_json(j, "config.json"));
  j["use_mrope"] = true;
  refused(j, {"use_mrope = true"});
  j = fixture_config("dense/llama_mha");
  j["is_llama_config"] = true;
  j["rope_interleaved"] = false;
  j["transformers.js_config"] = {{"kv_cache_dtype", {{"q4f16", "float16"}}}};
  CHECK_NOTHROW(ModelConfig::from_json(j, "config.json"));
  j["rope_interleaved"] = true;
  refused(j, {"rope_interleaved = true"});
  j = fixture_config("dense/qwen2_tied");
  j["transformers_version"] = "4.46.0";  // bookkeeping and v4 generation attributes are harmless
  j["temperature"] = 0.6;
  j["_name_or_path"] = "x";
  CHECK_NOTHROW(ModelConfig::from_json(j, "config.json"));
  // Read fields whose value the engine does not implement.
  j["attention_dropout"] = 0.1;
  refused(j, {"attention_dropout", "0.1"});
  j = fixture_config("moe/mixtral");
  j["router_jitter_noise"] = 0.01;
  refused(j, {"router_jitter_noise"});
  j = fixture_config("moe/dsv3_qlora_group");
  j["moe_layer_freq"] = 2;
  refused(j, {"moe_layer_freq"});
  j = fixture_config("moe/dsv3_qlora_group");
  j["topk_method"] = "greedy";
  refused(j, {"topk_method"});
  // Qwen2-MoE's qkv_bias is read: without biases the q/k/v bias tensors are not expected.
  j = fixture_config("moe/qwen2_moe");
  j["qkv_bias"] = false;
  CHECK(!ModelConfig::from_json(j, "config.json").attention_bias);
}
