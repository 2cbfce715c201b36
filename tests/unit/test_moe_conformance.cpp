// Conformance of the MoE and MLA families against transformers (fixtures:
// tests/fixtures/make_moe_fixtures.py): DeepSeek-V3 (MLA with and without q LoRA, YaRN,
// grouped sigmoid routing with a selection bias, shared experts, first dense layers, FP8 block
// scales), Mixtral, Qwen2-MoE (shared expert with sigmoid gate, norm_topk_prob both ways) and
// Qwen3-MoE (q/k norms). Logits within 1e-4 in f32, routing identical, greedy identical.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "infer/generator.h"
#include "io/safetensors.h"
#include "fixture_util.h"
#include "model/model.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(REASON_FIXTURES_DIR) + "/moe/";

using test::Fixture;
using test::max_abs_diff;
using Expected = test::Fixture;

Fixture expected(const std::string& m) { return Fixture(kDir + m + "/expected.safetensors"); }

std::vector<std::string> models() {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(kDir))
    if (fs::exists(e.path() / "expected.safetensors")) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

int n_prompts(const Expected& ex) {
  int n = 0;
  while (ex.has("prompt_" + std::to_string(n))) ++n;
  return n;
}

std::vector<float> prefill(const Model& m, const std::vector<int32_t>& ids, ForwardScratch::RouteTrace* trace = nullptr) {
  return test::prefill_logits(m, ids, trace);
}

}  // namespace

TEST_CASE("MoE/MLA fixtures are present", "[moe]") {
  auto ms = models();
  INFO("found " << ms.size() << " models under " << kDir);
  CHECK(ms.size() >= 7);
}

TEST_CASE("MoE/MLA prefill logits match transformers within 1e-4 (f32)", "[moe][conformance]") {
  for (const auto& name : models()) {
    INFO("model " << name);
    auto m = Model::load(kDir + name);
    auto ex = expected(name);
    for (int i = 0; i < n_prompts(ex); ++i) {
      auto ids = ex.ids("prompt_" + std::to_string(i));
      auto want = ex.floats("logits_" + std::to_string(i));
      auto got = prefill(*m, ids);
      REQUIRE(got.size() == want.size());
      const float diff = max_abs_diff(got.data(), want.data(), got.size());
      INFO("prompt " << i << " max abs diff " << diff);
      CHECK(diff < 1e-4f);
    }
  }
}

TEST_CASE("MoE routing (experts and weights) matches transformers", "[moe][routing]") {
  for (const auto& name : models()) {
    auto ex = expected(name);
    auto m = Model::load(kDir + name);
    const auto& c = m->config();
    if (c.n_experts == 0) continue;
    INFO("model " << name);
    ForwardScratch::RouteTrace trace;
    prefill(*m, ex.ids("prompt_0"), &trace);
    const int K = int(c.n_experts_per_tok);
    int checked = 0;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string in = "topk_idx_" + std::to_string(l), wn = "topk_weight_" + std::to_string(l);
      if (!ex.has(in)) continue;
      INFO("layer " << l);
      auto want_idx = ex.ids(in);
      auto want_w = ex.floats(wn);
      REQUIRE(size_t(l) < trace.idx.size());
      const auto& gi = trace.idx[size_t(l)];
      const auto& gw = trace.weight[size_t(l)];
      REQUIRE(gi.size() == want_idx.size());
      for (size_t t = 0; t < gi.size() / size_t(K); ++t) {
        // canonical order: by expert id
        std::vector<std::pair<int32_t, float>> got;
        for (int j = 0; j < K; ++j) got.emplace_back(gi[t * K + size_t(j)], gw[t * K + size_t(j)]);
        std::sort(got.begin(), got.end());
        for (int j = 0; j < K; ++j) {
          CHECK(got[size_t(j)].first == want_idx[t * K + size_t(j)]);
          CHECK(std::fabs(got[size_t(j)].second - want_w[t * K + size_t(j)]) < 1e-5f);
        }
      }
      ++checked;
    }
    CHECK(checked > 0);
  }
}

TEST_CASE("MoE/MLA decode logits and greedy tokens match transformers generate", "[moe][conformance]") {
  for (const auto& name : models()) {
    INFO("model " << name);
    auto m = Model::load(kDir + name);
    auto ex = expected(name);
    const int np = n_prompts(ex);
    std::vector<GenRequest> reqs(static_cast<size_t>(np));
    for (int i = 0; i < np; ++i) {
      reqs[size_t(i)].prompt = ex.ids("prompt_" + std::to_string(i));
      reqs[size_t(i)].params.temperature = 0.0f;
      reqs[size_t(i)].params.max_new_tokens = int32_t(ex.ids("greedy_" + std::to_string(i)).size());
      reqs[size_t(i)].params.ignore_eos = true;
    }
    auto res = generate(*m, reqs);
    for (int i = 0; i < np; ++i) {
      INFO("prompt " << i);
      auto want = ex.ids("greedy_" + std::to_string(i));
      CHECK(res[size_t(i)].tokens == want);
      test::check_decode_steps(*m, reqs[size_t(i)].prompt, want, ex.floats("decode_logits_" + std::to_string(i)), 1e-4f);
    }
  }
}

TEST_CASE("absorbed MLA equals expanded MLA, and the cache holds only the latent", "[moe][mla]") {
  for (const char* name : {"dsv3_qlora_group", "dsv3_noqlora_nogroup"}) {
    INFO("model " << name);
    LoadOptions a, e;
    a.mla_path = MlaPath::Absorbed;
    e.mla_path = MlaPath::Expanded;
    auto ma = Model::load(kDir + name, a);
    auto me = Model::load(kDir + name, e);
    auto ex = expected(name);
    const int np = n_prompts(ex);
    for (int i = 0; i < np; ++i) {
      auto ids = ex.ids("prompt_" + std::to_string(i));
      auto la = prefill(*ma, ids), le = prefill(*me, ids);
      CHECK(max_abs_diff(la.data(), le.data(), la.size()) < 1e-4f);
      // decode step by step along the prompt with each path
      KVCache ca = ma->make_cache(), ce = me->make_cache();
      ForwardScratch sa, se;
      std::vector<float> oa, oe;
      const int xa = ca.add_sequence(), xe = ce.add_sequence();
      for (size_t t = 0; t < ids.size(); ++t) {
        SeqChunk c1{xa, &ids[t], 1, false}, c2{xe, &ids[t], 1, false};
        ma->forward(std::span<const SeqChunk>(&c1, 1), ca, oa, sa);
        me->forward(std::span<const SeqChunk>(&c2, 1), ce, oe, se);
        CHECK(max_abs_diff(oa.data(), oe.data(), oa.size()) < 1e-4f);
      }
    }
    const auto& c = ma->config();
    CHECK(ma->kv_bytes_per_token() == size_t(c.n_layers * (c.kv_lora_rank + c.qk_rope_head_dim)) * sizeof(float));
    KVCache cache = ma->make_cache();
    CHECK(cache.k_dim() == c.kv_lora_rank + c.qk_rope_head_dim);
    CHECK(cache.v_dim() == 0);
  }
}

TEST_CASE("the FP8 checkpoint matches its dequantised bf16 twin", "[moe][fp8]") {
  auto q = Model::load(kDir + "dsv3_fp8");
  auto t = Model::load(kDir + "dsv3_fp8_dequant");
  auto ex = expected("dsv3_fp8");
  for (int i = 0; i < n_prompts(ex); ++i) {
    auto ids = ex.ids("prompt_" + std::to_string(i));
    auto a = prefill(*q, ids), b = prefill(*t, ids);
    // Dequantised fp8 -> f32 vs the twin's bf16 rounding of the same values.
    CHECK(max_abs_diff(a.data(), b.data(), a.size()) < 1e-4f);
  }
  CHECK(q->n_mtp_modules() == t->n_mtp_modules());
}
