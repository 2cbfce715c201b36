// Logit distillation against TRL's GKD generalized_jsd_loss (fixtures from
// tests/fixtures/make_train_fixtures.py): forward KL (beta 0), reverse KL (beta 1) and JSD
// (beta 0.5) at temperature 2, student dense/qwen2_tied, teacher dense/qwen2_sharded.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "model/model.h"
#include "train/trainer.h"

using namespace reason;

TEST_CASE("distillation losses and gradients equal TRL's GKD loss", "[train][distill][trl]") {
  const std::string dir = std::string(REASON_FIXTURES_DIR);
  auto teacher = Model::load(dir + "/dense/qwen2_sharded");
  for (const char* kind : {"forward_kl", "reverse_kl", "jsd"}) {
    INFO(kind);
    test::Fixture fx(dir + "/train/distill_" + std::string(kind) + ".safetensors");
    auto student = Model::load(dir + "/dense/qwen2_tied");
    TrainerConfig tc;
    tc.optim.lr = 0.0f;
    Trainer tr(student, tc);
    const auto ids = fx.i64("input_ids"), am = fx.i64("attention_mask"), lm = fx.i64("loss_mask");
    const size_t B = 2, T = ids.size() / B;
    std::vector<SftExample> batch;
    for (size_t b = 0; b < B; ++b) {
      SftExample ex;
      for (size_t t = 0; t < T; ++t)
        if (am[b * T + t]) {
          ex.tokens.push_back(int32_t(ids[b * T + t]));
          ex.mask.push_back(uint8_t(lm[b * T + t] != 0));
        }
      batch.push_back(ex);
    }
    DistillConfig dc;
    dc.temperature = fx.scalar("temperature");
    const std::string k = kind;
    dc.loss = k == "forward_kl" ? DistillLoss::ForwardKL : k == "reverse_kl" ? DistillLoss::ReverseKL : DistillLoss::JSD;
    dc.beta = k == "jsd" ? fx.scalar("beta") : 0.5f;
    std::vector<std::vector<SftExample>> mbs{batch};
    auto met = tr.distill_step(*teacher, mbs, dc, false);
    CHECK(met.loss == Approx(fx.scalar("loss")).epsilon(1e-5));
    if (fx.has("grad.model.norm.weight")) {
      for (const auto& [name, g] : tr.gradients().by_name) {
        INFO(name);
        const auto want = fx.floats("grad." + name);
        REQUIRE(int64_t(want.size()) == g.numel());
        float scale = 1e-12f;
        for (float v : want) scale = std::max(scale, std::fabs(v));
        CHECK(test::max_abs_diff(g.data<float>(), want.data(), want.size()) <= 1e-4f * scale + 1e-7f);
      }
    }
  }
}
