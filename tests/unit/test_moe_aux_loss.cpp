// The sequence-wise auxiliary balance loss (DeepSeek-V3 eq. 17-20, LogprobPass::set_aux_loss,
// TrainerConfig::aux_loss_alpha) against torch (tests/fixtures/moe_aux/seq_aux_<model>.safetensors,
// written by tests/fixtures/make_moe_aux_fixture.py straight from the paper's equations, with the
// gradient by autograd through transformers' model): DeepSeek-V3 (sigmoid affinities, biased and
// group-limited routing, two MoE layers) and Qwen3-MoE (softmax), two sequences of 7 and 11 tokens
// (per-sequence f and P, mean over sequences, sum over layers).
//
// The loss alone is differentiated: the engine's backward gets dL/dlogprob = 0 for every token,
// so its gradients are those of the aux loss only, as the fixture's.
//
// Tolerances:
// - routing: exact (the fixture models were drawn with a top-k score gap >= 1e-4 on these tokens,
//   far above f32 rounding of the router logits);
// - loss: relative 1e-5 (a sum of products of f (exact) and P, P a mean of f32-rounded
//   affinities of logits that agree to ~1e-6 relative);
// - parameter gradients: 1e-4 of the largest |gradient| of each tensor, + 1e-9 for tensors the
//   loss does not reach (0 on both sides), as the SFT/GRPO/distillation gradient tests (f32
//   backward through the model). The measured worst is printed as a WARN.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "model/model.h"
#include "train/logprob_pass.h"

using namespace reason;

TEST_CASE("sequence-wise balance loss and its gradient equal the paper's formula in torch", "[train][moe][aux]") {
  const std::string dir = std::string(REASON_FIXTURES_DIR);
  for (const char* name : {"dsv3_qlora_group", "qwen3_moe"}) {
    INFO(name);
    test::Fixture fx(dir + "/moe_aux/seq_aux_" + std::string(name) + ".safetensors");
    auto model = Model::load(dir + "/moe/" + name);
    const auto& c = model->config();
    const int64_t E = c.n_experts, K = c.n_experts_per_tok;
    std::vector<std::vector<int32_t>> seqs{fx.ids("input_ids_0"), fx.ids("input_ids_1")};
    const float alpha = fx.scalar("alpha");

    LogprobPass pass;
    pass.set_aux_loss(alpha, 1.0f);
    const auto lp = pass.forward(*model, seqs, 1.0f);
    const double want_loss = fx.scalar("aux_loss");
    CHECK(std::fabs(pass.aux_loss() - want_loss) <= 1e-5 * std::fabs(want_loss));

    // Routing: the same experts per token (as sets: transformers' top-k is unordered).
    int moe_layers = 0;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string key = "route_idx." + std::to_string(l);
      if (!fx.has(key)) {
        CHECK(pass.routes()[size_t(l)].empty());
        continue;
      }
      ++moe_layers;
      INFO("layer " << l);
      const auto want = fx.i64(key);
      const auto& got = pass.routes()[size_t(l)];
      REQUIRE(got.size() == want.size());
      REQUIRE(int64_t(want.size()) == 18 * K);
      for (size_t t = 0; t < want.size() / size_t(K); ++t) {
        std::set<int64_t> a(got.begin() + t * K, got.begin() + (t + 1) * K), b(want.begin() + t * K, want.begin() + (t + 1) * K);
        CHECK(a == b);
      }
      // (The engine does not expose its router logits; the fixture's are there for debugging.)
      CHECK(int64_t(fx.floats("router_logits." + std::to_string(l)).size()) == 18 * E);
    }
    CHECK(moe_layers == 2);

    // Gradient of the aux loss alone.
    Gradients grads = Gradients::zeros_like(*model);
    std::vector<float> zero(lp.size(), 0.0f);
    pass.backward(zero, grads);
    float worst = 0;
    std::string worst_name;
    int compared = 0, gate_weights = 0;
    for (auto& [pname, g] : grads.by_name) {
      if (!fx.has("grad." + pname)) {
        CHECK(pname.find(".experts.") != std::string::npos);  // only the experts are left out (size)
        continue;
      }
      INFO(pname);
      const auto want = fx.floats("grad." + pname);
      REQUIRE(int64_t(want.size()) == g.numel());
      float scale = 0;
      for (float v : want) scale = std::max(scale, std::fabs(v));
      const float d = test::max_abs_diff(g.data<float>(), want.data(), want.size());
      CHECK(d <= 1e-4f * scale + 1e-9f);
      if (scale > 0 && d / scale > worst) {
        worst = d / scale;
        worst_name = pname;
      }
      ++compared;
      gate_weights += pname.find("mlp.gate.weight") != std::string::npos && scale > 0;
    }
    CHECK(gate_weights == 2);  // both routers get a non-zero gradient
    CHECK(compared > 10);
    WARN(name << ": aux loss " << pass.aux_loss() << " vs torch " << want_loss << "; worst |dgrad| / max|grad| " << worst << " (" << worst_name << ")");
  }
}
