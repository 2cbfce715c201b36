// The batch of a GRPO fixture (tests/fixtures/make_train_fixtures.py, make_grpo_option_fixtures.py):
// prompts (without their left padding), completions cut at their mask (whole when truncated, since
// TRL zeroes a truncated row's mask when it masks truncated completions), rewards, and the old and
// reference logprobs of each completion token.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fixture_util.h"
#include "train/trainer.h"

namespace reason::test {

struct GrpoFixtureBatch {
  std::vector<GrpoSample> batch;
  std::vector<size_t> len;  // completion length of each sample
  size_t C = 0;             // the fixture's padded completion width
};

inline GrpoFixtureBatch grpo_fixture_batch(const Fixture& fx) {
  const auto pid = fx.i64("prompt_ids"), cid = fx.i64("completion_ids"), cm = fx.i64("completion_mask"),
             trunc = fx.i64("truncated");
  const std::vector<int64_t> pm = fx.has("prompt_mask") ? fx.i64("prompt_mask") : std::vector<int64_t>(pid.size(), 1);
  const auto rewards = fx.floats("rewards"), old = fx.floats("old_per_token_logps"), ref = fx.floats("ref_per_token_logps");
  GrpoFixtureBatch out;
  const size_t B = rewards.size(), P = pid.size() / B;
  out.C = cid.size() / B;
  out.batch.resize(B);
  out.len.resize(B);
  for (size_t i = 0; i < B; ++i) {
    GrpoSample& s = out.batch[i];
    for (size_t t = 0; t < P; ++t)
      if (pm[i * P + t]) s.prompt.push_back(int32_t(pid[i * P + t]));
    size_t n = 0;
    if (trunc[i]) {
      n = out.C;
    } else {
      for (size_t t = 0; t < out.C; ++t) n += cm[i * out.C + t] ? 1 : 0;
    }
    out.len[i] = n;
    for (size_t t = 0; t < n; ++t) {
      s.completion.push_back(int32_t(cid[i * out.C + t]));
      s.old_logprobs.push_back(old[i * out.C + t]);
      s.ref_logprobs.push_back(ref[i * out.C + t]);
    }
    s.reward = rewards[i];
    s.truncated = trunc[i] != 0;
  }
  return out;
}

// Every parameter gradient of the trainer's last step against the fixture's grad.<name>, within
// 1e-4 of the largest (plus 1e-7).
inline void check_param_grads(const Fixture& fx, const Trainer& tr) {
  for (const auto& [name, g] : tr.gradients().by_name) {
    INFO("grad " << name);
    const auto want = fx.floats("grad." + name);
    REQUIRE(int64_t(want.size()) == g.numel());
    float scale = 1e-12f;
    for (float v : want) scale = std::max(scale, std::fabs(v));
    float worst = 0;
    for (size_t j = 0; j < want.size(); ++j) worst = std::max(worst, std::fabs(g.data<float>()[j] - want[j]));
    CHECK(worst <= 1e-4f * scale + 1e-7f);
  }
}

}  // namespace reason::test
