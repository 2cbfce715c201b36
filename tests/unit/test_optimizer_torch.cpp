// AdamW + gradient clipping + cosine warmup schedule over 8 steps against torch.optim.AdamW,
// torch.nn.utils.clip_grad_norm_ and transformers.get_cosine_schedule_with_warmup
// (tests/fixtures/optim/adamw_torch.safetensors, written by tests/fixtures/make_adamw_fixture.py).
// The engine's optimizer (sdk/train/optimizer.h) gets the same initial parameters and the same
// gradient every step, at the learning rate its own LrSchedule gives, exactly as Trainer's
// apply_step calls it; the parameters are compared after every step.
//
// Tolerances (derived, then checked against what this AVX2 machine measures):
// - Learning rate: three f32 roundings separate the two: the engine's base lr is an f32 (1e-2
//   is not exact), LrSchedule::at rounds its double result to f32, and the fixture stores torch's
//   double lr as f32; each is half an ulp: |diff| <= 2^-22 * lr (2 ulp) + a 1e-12 floor for lr 0.
// - Gradient norm: the engine sums squares in double and rounds once; torch sums the f32 squares
//   of each tensor (f32 pairwise) and the norms of the norms: relative 1e-6 (~8 f32 ulp).
// - Parameters: both sides run the same f32 recurrence; they differ by the rounding of a few
//   operations per step (torch's exp_avg uses lerp, m + (1-b1)(g - m), the engine b1 m + (1-b1) g;
//   torch rounds the decay factor 1 - lr wd from double, the engine computes it in f32; torch
//   multiplies step_size by m/denom, the engine divides step_size * m by denom), each a relative
//   2^-24 of a term at most lr ~ 1e-2 times the parameter scale or the update. Over 8 steps that is
//   < 1e-7 of the tensor's largest magnitude; the bound used is 1e-6 * max|p| of the tensor (the
//   ~1e-6 relative of the brief, taken per tensor because single elements cross zero).
//   Measured worst on Zen 3 is printed below (WARN) and recorded in the commit message.
// - The final Adam state (exp_avg, exp_avg_sq) is compared with the same rule.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixture_util.h"
#include "reason/kernels/backend.h"
#include "train/optimizer.h"

using namespace reason;

namespace {

float max_abs(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

Tensor tensor_from(const std::vector<float>& v, const Shape& shape) {
  Tensor t = Tensor::zeros(DType::F32, shape);
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

}  // namespace

TEST_CASE("AdamW with clipping and a cosine warmup schedule equals torch over 8 steps", "[train][optim][torch]") {
  test::Fixture fx(std::string(REASON_FIXTURES_DIR) + "/optim/adamw_torch.safetensors");
  const auto cfg = nlohmann::json::parse(fx.meta("config"));
  const auto names = nlohmann::json::parse(fx.meta("params")).get<std::vector<std::string>>();
  const int64_t steps = cfg["steps"].get<int64_t>();
  REQUIRE(steps >= 5);
  REQUIRE(names.size() == 4);

  AdamWConfig ac;
  ac.lr = cfg["lr"].get<float>();
  ac.beta1 = cfg["betas"][0].get<float>();
  ac.beta2 = cfg["betas"][1].get<float>();
  ac.eps = cfg["eps"].get<float>();
  ac.weight_decay = cfg["weight_decay"].get<float>();
  ac.max_grad_norm = cfg["max_grad_norm"].get<float>();
  LrSchedule sched;
  REQUIRE(cfg["schedule"] == "cosine");
  sched.kind = LrSchedule::Kind::Cosine;
  sched.warmup_steps = cfg["warmup_steps"].get<int64_t>();
  sched.total_steps = cfg["total_steps"].get<int64_t>();
  // The fixture's parameters cover both weight-decay groups.
  CHECK(no_weight_decay("model.layers.0.self_attn.q_proj.bias"));
  CHECK(no_weight_decay("model.layers.0.input_layernorm.weight"));
  CHECK_FALSE(no_weight_decay("model.embed_tokens.weight"));

  std::vector<std::pair<std::string, Tensor>> params;
  Gradients grads;
  for (const auto& n : names) {
    const auto& e = fx.entry("init." + n, "F32");
    params.emplace_back(n, tensor_from(fx.floats("init." + n), e.shape));
    grads.by_name.emplace(n, Tensor::zeros(DType::F32, e.shape));
  }
  const auto want_lr = fx.floats("lr"), want_norm = fx.floats("grad_norm");
  REQUIRE(int64_t(want_lr.size()) == steps);

  AdamW opt(ac);
  double worst_p = 0, worst_lr = 0, worst_norm = 0;
  int clipped = 0;
  for (int64_t k = 0; k < steps; ++k) {
    INFO("step " << k);
    for (const auto& n : names) {
      const auto g = fx.floats("grad." + std::to_string(k) + "." + n);
      std::copy(g.begin(), g.end(), grads.at(n).data<float>());
    }
    const float lr = sched.at(opt.steps(), ac.lr);  // as Trainer::apply_step
    CHECK(std::fabs(double(lr) - want_lr[size_t(k)]) <= 0x1p-22 * want_lr[size_t(k)] + 1e-12);
    worst_lr = std::max(worst_lr, std::fabs(double(lr) - want_lr[size_t(k)]));
    const float norm = opt.step(reason::kernels::cpu_backend(), params, grads, lr);
    const double rel_norm = std::fabs(double(norm) - want_norm[size_t(k)]) / want_norm[size_t(k)];
    CHECK(rel_norm <= 1e-6);
    worst_norm = std::max(worst_norm, rel_norm);
    clipped += want_norm[size_t(k)] > ac.max_grad_norm;
    for (const auto& [n, p] : params) {
      INFO(n);
      const auto want = fx.floats("param." + std::to_string(k) + "." + n);
      REQUIRE(int64_t(want.size()) == p.numel());
      const float scale = max_abs(want);
      const float diff = test::max_abs_diff(p.data<float>(), want.data(), want.size());
      CHECK(diff <= 1e-6f * scale);
      worst_p = std::max(worst_p, double(diff) / scale);
    }
  }
  CHECK(opt.steps() == steps);
  CHECK(clipped == 3);  // the fixture really exercises clipping (and 5 unclipped steps)
  for (const auto& n : names) {
    INFO(n);
    auto it = opt.state().find(n);
    REQUIRE(it != opt.state().end());
    const auto m = fx.floats("exp_avg." + n), v = fx.floats("exp_avg_sq." + n);
    CHECK(test::max_abs_diff(it->second.first.data<float>(), m.data(), m.size()) <= 1e-6f * max_abs(m));
    CHECK(test::max_abs_diff(it->second.second.data<float>(), v.data(), v.size()) <= 1e-6f * max_abs(v));
  }
  WARN("AdamW vs torch: worst |dp| / max|p| " << worst_p << ", worst |dlr| " << worst_lr << ", worst rel norm diff "
                                             << worst_norm);
}
