// The GRPO policy-loss options against TRL 1.16's own GRPOTrainer (fixtures from
// tests/fixtures/make_grpo_option_fixtures.py): GSPO (sequence-level importance ratio) with
// per-sequence and token aggregation, GSPO-token (torch autograd of the paper's formula), rollout
// correction in its four modes (TRL's vllm_importance_sampling_mode, the ratio's metrics), the
// top-entropy token mask, the entropy bonus (whose gradient flows through whole vocabulary rows:
// every parameter gradient is compared), adaptive entropy control over two steps, and reward
// scaling by the batch's std. Tolerances: loss 1e-5 relative, per-token gradients 1e-4 relative,
// parameter gradients 1e-4 of the largest.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "grpo_fixture.h"
#include "model/model.h"
#include "train/trainer.h"
#include "train/checkpoint.h"
#include "train/trainer_config.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

using Fx = test::Fixture;

float meta_f(const Fx& fx, const std::string& k) { return std::stof(fx.meta(k)); }

GrpoConfig config_of(const Fx& fx) {
  GrpoConfig cfg;
  cfg.group_size = std::stoll(fx.meta("num_generations"));
  cfg.epsilon = meta_f(fx, "epsilon");
  cfg.epsilon_high = meta_f(fx, "epsilon_high");
  cfg.beta = meta_f(fx, "beta");
  cfg.temperature = meta_f(fx, "temperature");
  cfg.max_completion_length = std::stoll(fx.meta("max_completion_length"));
  cfg.k3_clamp = 0.0f;  // TRL does not clamp
  cfg.kl_ratio_correction = fx.meta("use_bias_correction_kl") == "true";
  const std::string sr = fx.meta("scale_rewards");
  cfg.reward_scaling = sr == "batch" ? RewardScaling::Batch : sr == "none" ? RewardScaling::None : RewardScaling::Group;
  cfg.mask_truncated = fx.meta("mask_truncated_completions") == "true";
  const std::string lt = fx.meta("loss_type");
  cfg.aggregation = lt == "grpo"      ? GrpoAggregation::SequenceMean
                    : lt == "dr_grpo" ? GrpoAggregation::Constant
                                      : GrpoAggregation::TokenMean;
  const std::string lvl = fx.meta("importance_sampling_level");
  cfg.importance_level = lvl == "sequence"         ? ImportanceLevel::Sequence
                         : lvl == "sequence_token" ? ImportanceLevel::SequenceToken
                                                   : ImportanceLevel::Token;
  const std::string is = fx.meta("is_mode");
  cfg.rollout_correction = is == "token_truncate"      ? RolloutCorrection::TokenTruncate
                           : is == "token_mask"        ? RolloutCorrection::TokenMask
                           : is == "sequence_truncate" ? RolloutCorrection::SequenceTruncate
                           : is == "sequence_mask"     ? RolloutCorrection::SequenceMask
                                                       : RolloutCorrection::None;
  cfg.rollout_clip_min = meta_f(fx, "is_clip_min");
  cfg.rollout_clip_max = meta_f(fx, "is_clip_max");
  cfg.top_entropy_quantile = meta_f(fx, "top_entropy_quantile");
  cfg.entropy_coef = meta_f(fx, "entropy_coef");
  cfg.adaptive_entropy = fx.meta("use_adaptive_entropy") == "true";
  cfg.entropy_target = meta_f(fx, "entropy_target");
  cfg.entropy_coef_delta = meta_f(fx, "entropy_coef_delta");
  return cfg;
}

void check_metric(const Fx& fx, const std::string& key, float got, double margin = 1e-5) {
  if (!fx.has("metric." + key)) return;
  INFO("metric " << key);
  CHECK(got == Approx(fx.scalar("metric." + key)).margin(margin).epsilon(1e-4));
}

}  // namespace

TEST_CASE("GRPO loss options (GSPO, rollout correction, entropy) equal TRL's", "[train][grpo][trl]") {
  const std::string dir = std::string(REASON_FIXTURES_DIR) + "/grpo_options/";
  int cases = 0;
  for (const auto& de : fs::directory_iterator(dir)) {
    const std::string file = de.path().filename().string();
    INFO("case " << file);
    Fx fx(de.path().string());
    auto model = Model::load(std::string(REASON_FIXTURES_DIR) + "/" + fx.meta("model"));
    const GrpoConfig cfg = config_of(fx);
    test::GrpoFixtureBatch fb = test::grpo_fixture_batch(fx);
    const size_t B = fb.batch.size(), C = fb.C;
    const auto cm = fx.i64("completion_mask");
    if (cfg.rollout_correction != RolloutCorrection::None) {
      // TRL's old policy is its trainer's own logprobs (on-policy), given here as old_logprobs so
      // that the weights exp(old - sampler) use TRL's exact values (a sequence's weight is the exp
      // of a sum over its tokens: the engines' 1e-6 logprob differences would add up). The engine's
      // own on-policy case (old_logprobs empty) is checked below at a tolerance for that.
      const auto samp = fx.floats("sampling_per_token_logps");
      for (size_t i = 0; i < B; ++i)
        fb.batch[i].sampling_logprobs.assign(samp.begin() + long(i * C), samp.begin() + long(i * C + fb.len[i]));
      std::vector<GrpoSample> own = fb.batch;
      for (auto& s : own) s.old_logprobs.clear();
      Trainer t0(model, TrainerConfig{});
      CHECK(t0.grpo_step(own, cfg, 0, false).loss == Approx(fx.scalar("loss")).epsilon(5e-4));
    }
    const auto adv = Trainer::advantages(fb.batch, cfg);
    const auto want_adv = fx.floats("advantages");
    for (size_t i = 0; i < B; ++i) CHECK(adv[i] == Approx(want_adv[i]).margin(1e-6).epsilon(1e-5));

    TrainerConfig tc;
    tc.optim.lr = 0.0f;  // the adaptive case applies two steps; the weights must stay
    Trainer tr(model, tc);
    StepMetrics met;
    if (cfg.adaptive_entropy) {
      met = tr.grpo_step(fb.batch, cfg, 0, true);
      CHECK(met.loss == Approx(fx.scalar("loss_step1")).margin(1e-6).epsilon(1e-5));
      CHECK(met.entropy_coef == Approx(fx.scalar("entropy_coef_step1")).margin(1e-7));
      met = tr.grpo_step(fb.batch, cfg, 0, true);
      CHECK(met.entropy_coef == Approx(fx.scalar("entropy_coef_step2")).margin(1e-7));
    } else {
      met = tr.grpo_step(fb.batch, cfg, 0, false);
    }
    CHECK(met.loss == Approx(fx.scalar("loss")).margin(1e-6).epsilon(1e-5));
    const auto lp = fx.floats("per_token_logps"), glp = fx.floats("grad_per_token_logps");
    for (size_t i = 0; i < B; ++i)
      for (size_t t = 0; t < fb.len[i]; ++t) {
        if (!cm[i * C + t]) continue;  // TRL zeroes masked positions
        CHECK(tr.last_token_logprobs()[i][t] == Approx(lp[i * C + t]).margin(1e-5));
        CHECK(tr.last_token_grads()[i][t] == Approx(glp[i * C + t]).margin(1e-7).epsilon(1e-4));
      }
    check_metric(fx, "entropy", met.entropy);
    check_metric(fx, "clip_ratio.low_mean", met.clip_low, 1e-6);
    check_metric(fx, "clip_ratio.high_mean", met.clip_high, 1e-6);
    if (cfg.beta > 0) check_metric(fx, "kl", met.kl);
    check_metric(fx, "sampling.importance_sampling_ratio.min", met.is_ratio_min);
    check_metric(fx, "sampling.importance_sampling_ratio.mean", met.is_ratio_mean);
    check_metric(fx, "sampling.importance_sampling_ratio.max", met.is_ratio_max);
    check_metric(fx, "sampling.sampling_logp_difference.mean", met.sampling_logp_diff_mean);
    check_metric(fx, "sampling.sampling_logp_difference.max", met.sampling_logp_diff_max);
    if (cfg.entropy_coef != 0 || cfg.adaptive_entropy) check_metric(fx, "entropy_coef", met.entropy_coef, 1e-7);
    if (fx.meta("full_param_grads") == "true") test::check_param_grads(fx, tr);
    ++cases;
  }
  CHECK(cases == 11);
}

TEST_CASE("GRPO options: bad settings and inputs are rejected, naming the problem", "[train][grpo]") {
  auto model = Model::load(std::string(REASON_FIXTURES_DIR) + "/dense/qwen2_tied");
  Trainer tr(model, TrainerConfig{});
  std::vector<GrpoSample> batch(2);
  for (auto& s : batch) {
    s.prompt = {1, 2, 3};
    s.completion = {4, 5};
  }
  batch[1].reward = 1.0f;
  GrpoConfig cfg;
  cfg.group_size = 2;
  auto fails_with = [&](const GrpoConfig& c, const std::string& what) {
    try {
      tr.grpo_step(batch, c, 0, false);
      FAIL("no error for " << what);
    } catch (const std::exception& e) {
      CHECK_THAT(e.what(), Catch::Contains(what));
    }
  };
  GrpoConfig c = cfg;
  c.rollout_correction = RolloutCorrection::TokenTruncate;
  fails_with(c, "sampler's logprobs");
  c = cfg;
  c.top_entropy_quantile = 1.5f;
  fails_with(c, "top_entropy_quantile");
  c = cfg;
  c.rollout_correction = RolloutCorrection::TokenMask;
  c.rollout_clip_max = -1.0f;
  fails_with(c, "clip_min <= clip_max");
  batch[0].old_logprobs = {-1.0f, NAN};
  fails_with(cfg, "non-finite old logprobs value at token 1");
  batch[0].old_logprobs = {-1.0f};
  fails_with(cfg, "1 old logprobs for 2 completion tokens");
  batch[0].old_logprobs.clear();
  batch[0].mask = {1};
  fails_with(cfg, "1 mask values for 2 completion tokens");
}

TEST_CASE("GRPO: tokens masked out of a completion (tool output) carry no loss, gradient or count",
          "[train][grpo]") {
  // A completion whose middle tokens are masked gives the same loss and gradients at its live
  // tokens as the same completion scored with only those live tokens' weights, for GRPO and GSPO.
  auto model = Model::load(std::string(REASON_FIXTURES_DIR) + "/dense/qwen2_tied");
  for (auto level : {ImportanceLevel::Token, ImportanceLevel::Sequence}) {
    std::vector<GrpoSample> batch(2);
    batch[0].prompt = batch[1].prompt = {11, 12, 13};
    batch[0].completion = {20, 21, 22, 23, 24};
    batch[1].completion = {30, 31, 32};
    batch[0].reward = 1.0f;
    batch[0].old_logprobs = {-5.9f, -6.1f, -5.8f, -6.3f, -6.0f};
    batch[1].old_logprobs = {-6.0f, -5.7f, -6.2f};
    GrpoConfig cfg;
    cfg.group_size = 2;
    cfg.importance_level = level;
    cfg.aggregation = GrpoAggregation::TokenMean;
    Trainer tr(model, TrainerConfig{});
    auto full = tr.grpo_step(batch, cfg, 0, false);
    CHECK(full.tokens == 8);
    batch[0].mask = {1, 0, 0, 1, 1};
    auto masked = tr.grpo_step(batch, cfg, 0, false);
    CHECK(masked.tokens == 6);
    CHECK(tr.last_token_grads()[0][1] == 0.0f);
    CHECK(tr.last_token_grads()[0][2] == 0.0f);
    if (level == ImportanceLevel::Token) {  // token mean: each live token's gradient scales by 8 / 6
      const auto g = tr.last_token_grads();
      tr.grpo_step(batch, cfg, 0, false);
      batch[0].mask.clear();
      tr.grpo_step(batch, cfg, 0, false);
      const auto gf = tr.last_token_grads();
      for (size_t t : {0, 3, 4}) CHECK(g[0][t] == Approx(gf[0][t] * 8.0f / 6.0f).epsilon(1e-5));
      for (size_t t : {0, 1, 2}) CHECK(g[1][t] == Approx(gf[1][t] * 8.0f / 6.0f).epsilon(1e-5));
    } else {
      CHECK(tr.last_token_grads()[0][0] != 0.0f);
    }
  }
}

TEST_CASE("GRPO options from the trainer config text, with errors naming the field", "[train][grpo][config]") {
  const auto t = parse_trainer_config(
      "grpo { group_size: 4 importance_sampling_level: SEQUENCE_TOKEN_LEVEL reward_scaling: SCALE_BATCH"
      " rollout_correction { mode: SEQUENCE_MASK clip_min: 0.5 clip_max: 0 } top_entropy_quantile: 0.2"
      " entropy_coef: 0.01 adaptive_entropy { target: 0.5 delta: 0.002 coef_max: 0.1 } }",
      false);
  CHECK(t.grpo.importance_level == ImportanceLevel::SequenceToken);
  CHECK(t.grpo.reward_scaling == RewardScaling::Batch);
  CHECK(t.grpo.rollout_correction == RolloutCorrection::SequenceMask);
  CHECK(t.grpo.rollout_clip_min == 0.5f);
  CHECK(std::isinf(t.grpo.rollout_clip_max));  // 0 with a MASK mode: no upper bound
  CHECK(t.grpo.top_entropy_quantile == 0.2f);
  CHECK(t.grpo.adaptive_entropy);
  CHECK(t.grpo.entropy_coef == 0.01f);
  CHECK(t.grpo.entropy_target == 0.5f);
  CHECK(t.grpo.entropy_coef_delta == 0.002f);
  CHECK(t.grpo.entropy_coef_max == 0.1f);
  CHECK(parse_trainer_config("grpo { group_size: 2 scale_rewards: false }", false).grpo.reward_scaling == RewardScaling::None);
  CHECK(parse_trainer_config("grpo { group_size: 2 scale_rewards: false reward_scaling: SCALE_GROUP }", false).grpo.reward_scaling ==
        RewardScaling::Group);
  CHECK_THROWS_WITH(parse_trainer_config("grpo { top_entropy_quantile: 2 }", false), Catch::Contains("grpo.top_entropy_quantile"));
  CHECK_THROWS_WITH(parse_trainer_config("grpo { rollout_correction { mode: TOKEN_TRUNCATE clip_min: 3 clip_max: 2 } }", false),
                    Catch::Contains("grpo.rollout_correction.clip_max"));
  CHECK_THROWS_WITH(parse_trainer_config("grpo { adaptive_entropy { target: 1 coef_min: 0.5 coef_max: 0.1 } }", false),
                    Catch::Contains("grpo.adaptive_entropy.coef_min"));
}

TEST_CASE("the adaptive entropy controller's state survives a checkpoint", "[train][grpo][checkpoint]") {
  EntropyControl e{0.07f, 2.5, true};
  auto model = Model::load(std::string(REASON_FIXTURES_DIR) + "/dense/qwen2_tied");
  Trainer a(model, TrainerConfig{}), b(model, TrainerConfig{});
  a.set_entropy_control(e);
  restore_trainer_extra_state(b, trainer_extra_state(a));
  CHECK(b.entropy_control().started);
  CHECK(b.entropy_control().coef == 0.07f);
  CHECK(b.entropy_control().last_entropy == 2.5);
  CHECK_THROWS_WITH(restore_trainer_extra_state(b, nlohmann::json{{"entropy_control", {{"coef", "x"}}}}),
                    Catch::Contains("entropy_control"));
}
