// The GRPO loss and its gradient against TRL 1.16's own GRPOTrainer (fixtures from
// tests/fixtures/make_train_fixtures.py): every loss type (grpo, bnpo, dapo, dr_grpo), reward
// scaling by group std or none, truncated completions masked or not, beta 0.04 and 0, TRL's
// default KL with the importance-ratio correction and the plain k3 (_nobc), epsilon 0.2 /
// epsilon_high 0.28, temperature 0.7, old logprobs different from the current ones.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "fixture_util.h"
#include "grpo_fixture.h"
#include "model/model.h"
#include "train/trainer.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const std::string kTrain = std::string(REASON_FIXTURES_DIR) + "/train/";

using Fx = test::Fixture;

}  // namespace

TEST_CASE("GRPO loss, per-token gradients, metrics and parameter gradients equal TRL's", "[train][grpo][trl]") {
  int cases = 0;
  for (const auto& de : fs::directory_iterator(kTrain)) {
    const std::string file = de.path().filename().string();
    if (file.rfind("grpo_", 0) != 0) continue;
    INFO("case " << file);
    Fx fx(de.path().string());
    auto model = Model::load(std::string(REASON_FIXTURES_DIR) + "/" + fx.meta("model"));
    GrpoConfig cfg;
    cfg.group_size = fx.i64("num_generations")[0];
    cfg.epsilon = fx.scalar("epsilon_low");
    cfg.epsilon_high = fx.scalar("epsilon_high");
    cfg.beta = fx.scalar("beta");
    cfg.temperature = fx.scalar("temperature");
    cfg.max_completion_length = fx.i64("max_completion_length")[0];
    cfg.k3_clamp = 0.0f;  // TRL does not clamp
    cfg.kl_ratio_correction = fx.meta("use_bias_correction_kl") == "true";
    cfg.reward_scaling = fx.meta("scale_rewards") == "group" ? RewardScaling::Group : RewardScaling::None;
    cfg.mask_truncated = fx.meta("mask_truncated_completions") == "true";
    const std::string lt = fx.meta("loss_type");
    cfg.aggregation = lt == "grpo" ? GrpoAggregation::SequenceMean
                      : lt == "dr_grpo" ? GrpoAggregation::Constant : GrpoAggregation::TokenMean;

    const auto cm = fx.i64("completion_mask");
    test::GrpoFixtureBatch fb = test::grpo_fixture_batch(fx);
    std::vector<GrpoSample>& batch = fb.batch;
    const std::vector<size_t>& clen = fb.len;
    const size_t B = batch.size(), C = fb.C;
    auto adv = Trainer::advantages(batch, cfg);
    const auto want_adv = fx.floats("advantages");
    for (size_t i = 0; i < B; ++i) CHECK(adv[i] == Approx(want_adv[i]).margin(1e-6).epsilon(1e-5));

    Trainer tr(model, TrainerConfig{});
    auto met = tr.grpo_step(batch, cfg, 0, false);
    CHECK(met.loss == Approx(fx.scalar("loss")).margin(1e-6).epsilon(1e-5));
    const auto lp = fx.floats("per_token_logps"), glp = fx.floats("grad_per_token_logps");
    for (size_t i = 0; i < B; ++i)
      for (size_t t = 0; t < clen[i]; ++t) {
        if (!cm[i * C + t]) continue;  // TRL zeroes masked positions
        CHECK(tr.last_token_logprobs()[i][t] == Approx(lp[i * C + t]).margin(1e-5));
        CHECK(tr.last_token_grads()[i][t] == Approx(glp[i * C + t]).margin(1e-7).epsilon(1e-4));
      }
    if (cfg.beta > 0) CHECK(met.kl == Approx(fx.scalar("metric.kl")).margin(1e-6).epsilon(1e-4));
    CHECK(met.clip_low == Approx(fx.scalar("metric.clip_ratio.low_mean")).margin(1e-6));
    CHECK(met.clip_high == Approx(fx.scalar("metric.clip_ratio.high_mean")).margin(1e-6));
    CHECK(met.entropy == Approx(fx.scalar("metric.entropy")).margin(1e-5).epsilon(1e-5));
    if (fx.meta("full_param_grads") == "true") test::check_param_grads(fx, tr);
    ++cases;
  }
  CHECK(cases == 24);
}
