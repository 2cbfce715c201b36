// The batch of a GRPO fixture (tests/fixtures/make_train_fixtures.py, make_grpo_option_fixtures.py):
// prompts (without their left padding), completions cut at their mask (whole when truncated, since
// TRL zeroes a truncated row's mask when it masks truncated completions), rewards, and the old and
// reference logprobs of each completion token.
#pragma once
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

}  // namespace reason::test
