// Malformed MoE / MLA / FP8 checkpoints give clear errors naming the field or tensor.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "infer/generator.h"
#include "io/safetensors.h"
#include "model/model.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const fs::path kMoe = fs::path(REASON_FIXTURES_DIR) / "moe";

struct TempCopy {
  fs::path dir;
  TempCopy(const std::string& src, const std::string& tag) {
    dir = fs::temp_directory_path() / ("reason_moecfg_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (auto& e : fs::directory_iterator(kMoe / src)) fs::copy_file(e.path(), dir / e.path().filename());
  }
  ~TempCopy() { fs::remove_all(dir); }
  void edit_config(const std::function<void(nlohmann::json&)>& f) const {
    nlohmann::json j;
    {
      std::ifstream in(dir / "config.json");
      j = nlohmann::json::parse(in);
    }
    f(j);
    std::ofstream(dir / "config.json") << j.dump();
  }
  // Rewrites model.safetensors without `drop`, or with `replace` substituted.
  void rewrite_weights(const std::string& drop, const std::string& replace_name = "", Tensor replace = {}) const {
    auto f = SafetensorsFile::open((dir / "model.safetensors").string());
    std::vector<std::pair<std::string, Tensor>> ts;
    for (const auto& e : f->entries()) {
      if (e.name == drop) continue;
      if (e.name == replace_name) {
        ts.emplace_back(e.name, replace);
        continue;
      }
      ts.emplace_back(e.name, f->tensor(e).to(*e.dtype));
    }
    f.reset();
    write_safetensors((dir / "model.safetensors").string(), ts, {});
  }
};

void expect_error(const fs::path& dir, ErrorCode code, std::initializer_list<const char*> words) {
  try {
    Model::load(dir.string());
    FAIL("loaded without error");
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    for (const char* w : words) CHECK_THAT(std::string(e.what()), Catch::Contains(w));
  }
}

}  // namespace

TEST_CASE("top_k larger than the number of experts", "[moe][errors]") {
  TempCopy t("qwen2_moe", "topk");
  t.edit_config([](nlohmann::json& j) { j["num_experts_per_tok"] = 99; });
  expect_error(t.dir, ErrorCode::Format, {"num_experts_per_tok", "99"});
  TempCopy d("dsv3_noqlora_nogroup", "topk2");
  d.edit_config([](nlohmann::json& j) { j["num_experts_per_tok"] = 99; });
  expect_error(d.dir, ErrorCode::Format, {"num_experts_per_tok"});
}

TEST_CASE("topk_group larger than n_group, experts not divisible into groups", "[moe][errors]") {
  TempCopy t("dsv3_qlora_group", "groups");
  t.edit_config([](nlohmann::json& j) { j["topk_group"] = int(j["n_group"]) + 1; });
  expect_error(t.dir, ErrorCode::Format, {"topk_group", "n_group"});
  t.edit_config([](nlohmann::json& j) {
    j["topk_group"] = 1;
    j["n_group"] = 3;
  });
  expect_error(t.dir, ErrorCode::Format, {"n_group"});
}

TEST_CASE("missing expert tensors are named", "[moe][errors]") {
  TempCopy t("mixtral", "missing");
  t.rewrite_weights("model.layers.1.block_sparse_moe.experts.3.w2.weight");
  expect_error(t.dir, ErrorCode::Format, {"model.layers.1.block_sparse_moe.experts.3.w2.weight"});
  TempCopy d("dsv3_qlora_group", "missing_bias");
  d.rewrite_weights("model.layers.1.mlp.gate.e_score_correction_bias");
  expect_error(d.dir, ErrorCode::Format, {"e_score_correction_bias"});
}

TEST_CASE("an FP8 scale tensor of the wrong shape or missing", "[moe][fp8][errors]") {
  const std::string w = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight";
  TempCopy t("dsv3_fp8", "scale");
  t.rewrite_weights("", w + "_scale_inv", Tensor::zeros(DType::F32, {7, 7}));
  expect_error(t.dir, ErrorCode::Format, {"_scale_inv", "[7, 7]"});
  TempCopy u("dsv3_fp8", "noscale");
  u.rewrite_weights(w + "_scale_inv");
  expect_error(u.dir, ErrorCode::Format, {"kv_a_proj_with_mqa.weight", "scale"});
}

TEST_CASE("expert load counts every routed token", "[moe][routing]") {
  for (const char* name : {"qwen2_moe", "dsv3_qlora_group", "mixtral"}) {
    INFO(name);
    auto m = Model::load((kMoe / name).string());
    const auto& c = m->config();
    std::vector<int32_t> ids{1, 5, 9, 33, 100, 7, 7, 7};
    auto load = expert_load(*m, ids);
    REQUIRE(load.size() == size_t(c.n_layers * c.n_experts));
    for (int64_t l = 0; l < c.n_layers; ++l) {
      int64_t sum = 0;
      for (int64_t e = 0; e < c.n_experts; ++e) sum += load[size_t(l * c.n_experts + e)];
      CHECK(sum == (c.is_moe_layer(l) ? int64_t(ids.size()) * c.n_experts_per_tok : 0));
    }
  }
  auto dense = Model::load(std::string(REASON_FIXTURES_DIR) + "/dense/qwen2_tied");
  std::vector<int32_t> ids{1, 2};
  CHECK_THROWS_AS(expert_load(*dense, ids), Error);
}
