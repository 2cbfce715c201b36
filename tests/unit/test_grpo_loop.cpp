// An end-to-end GRPO loop on a toy task: sample groups with the engine, score them with a rule,
// take GRPO steps; the mean reward must rise. Also: the logprobs captured while sampling equal
// the trainer's logprobs of the same tokens (same kernels, same temperature).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "infer/generator.h"
#include "model/model.h"
#include "train/logprob_pass.h"
#include "train/trainer.h"

using namespace reason;

namespace {

const std::string kDense = std::string(REASON_FIXTURES_DIR) + "/dense/";

// The toy rule: the share of completion tokens with an id below 64 (about 1/8 at random).
float low_id_share(const std::vector<int32_t>& c) {
  int n = 0;
  for (int32_t t : c) n += t < 64;
  return c.empty() ? 0.0f : float(n) / float(c.size());
}

}  // namespace

TEST_CASE("sampling logprobs equal the trainer's logprobs at T = 1 and 0.6", "[train][grpo]") {
  auto m = Model::load(kDense + "qwen2_tied");
  for (float T : {1.0f, 0.6f}) {
    std::vector<GenRequest> reqs(3);
    for (int i = 0; i < 3; ++i) {
      reqs[size_t(i)].prompt = {int32_t(5 + i), 17, 33};
      reqs[size_t(i)].params.temperature = T;
      reqs[size_t(i)].params.max_new_tokens = 10;
      reqs[size_t(i)].params.ignore_eos = true;
      reqs[size_t(i)].params.seed = uint64_t(i);
    }
    auto res = generate(*m, reqs);
    for (int i = 0; i < 3; ++i) {
      std::vector<std::vector<int32_t>> seq{reqs[size_t(i)].prompt};
      seq[0].insert(seq[0].end(), res[size_t(i)].tokens.begin(), res[size_t(i)].tokens.end());
      LogprobPass pass;
      auto lp = pass.forward(*m, seq, T);
      // Same kernels, other matmul shapes: summation order only (fixture_util.h).
      const float tol = test::summation_order_tolerance(m->config(), test::logprob_magnitude(res[size_t(i)].logprobs), T);
      for (size_t t = 0; t < res[size_t(i)].tokens.size(); ++t)
        CHECK(std::fabs(lp[2 + t] - res[size_t(i)].logprobs[t]) <= tol);
    }
  }
}

TEST_CASE("a seeded GRPO loop raises the reward of a toy task", "[train][grpo]") {
  auto m = Model::load(kDense + "qwen2_tied");
  TrainerConfig tc;
  tc.optim.lr = 2e-2f;
  Trainer tr(m, tc);
  GrpoConfig gc;
  gc.group_size = 8;
  gc.epsilon_high = 0.28f;
  gc.temperature = 1.0f;
  const int n_prompts = 4, steps = 15;
  std::vector<float> curve;
  for (int step = 0; step < steps; ++step) {
    std::vector<GenRequest> reqs;
    for (int p = 0; p < n_prompts; ++p)
      for (int g = 0; g < gc.group_size; ++g) {
        GenRequest r;
        r.prompt = {int32_t(100 + p), 7, 9};
        r.params.temperature = gc.temperature;
        r.params.max_new_tokens = 6;
        r.params.ignore_eos = true;
        r.params.seed = uint64_t(1000 * step + 10 * p + g);
        reqs.push_back(r);
      }
    auto res = generate(*m, reqs);
    std::vector<GrpoSample> batch;
    double mean = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
      GrpoSample s;
      s.prompt = reqs[i].prompt;
      s.completion = res[i].tokens;
      s.old_logprobs = res[i].logprobs;
      s.reward = low_id_share(res[i].tokens);
      mean += s.reward;
      batch.push_back(std::move(s));
    }
    curve.push_back(float(mean / double(reqs.size())));
    tr.grpo_step(batch, gc);
  }
  const float start = (curve[0] + curve[1] + curve[2]) / 3, end = (curve[steps - 1] + curve[steps - 2] + curve[steps - 3]) / 3;
  INFO("mean reward over the first 3 steps " << start << ", over the last 3 " << end);
  CHECK(start < 0.3f);
  CHECK(end > start + 0.3f);
}
