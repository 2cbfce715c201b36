// GRPO rollouts: prefix-shared group sampling equals independent sampling, computes each prompt
// once, and captures old-policy logprobs equal to the trainer's (1e-5 at T = 1 and 0.6, dense and
// MoE); rewards with failing callbacks; DAPO's overlong shaping; the synthetic addition task.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fixture_util.h"
#include "infer/generator.h"
#include "model/model.h"
#include "rl/evaluate.h"
#include "rl/rewards.h"
#include "rl/rollout.h"
#include "rl/synthetic_task.h"
#include "test_gate.h"

using namespace reason;

namespace {

const std::string kFix = std::string(REASON_FIXTURES_DIR);

std::vector<RolloutPrompt> toy_prompts(int n, int len) {
  std::vector<RolloutPrompt> ps(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    for (int t = 0; t < len; ++t) ps[size_t(i)].ids.push_back(int32_t(3 + (i * 7 + t * 13) % 300));
    ps[size_t(i)].seed = uint64_t(100 + i);
    ps[size_t(i)].answer = std::to_string(i);
  }
  return ps;
}

}  // namespace

TEST_CASE("prefix-shared groups sample exactly what independent requests sample, computing each prompt once",
          "[rollout]") {
  auto m = Model::load(kFix + "/dense/qwen2_tied");
  const int P = 3, G = 4, L = 9;
  auto prompts = toy_prompts(P, L);
  RolloutOptions ro;
  ro.group_size = G;
  ro.sampling.max_new_tokens = 12;
  ro.sampling.ignore_eos = true;
  RolloutStats st;
  auto shared = sample_rollouts(*m, prompts, ro, &st);
  REQUIRE(shared.size() == size_t(P * G));
  CHECK(st.prompt_tokens_computed == P * L);
  CHECK(st.prompt_tokens_shared == P * (G - 1) * L);
  CHECK(st.generated_tokens == P * G * 12);

  // The same requests without sharing.
  std::vector<GenRequest> reqs;
  for (int i = 0; i < P; ++i)
    for (int j = 0; j < G; ++j) {
      GenRequest r;
      r.prompt = prompts[size_t(i)].ids;
      r.params = ro.sampling;
      r.params.seed = rollout_seed(prompts[size_t(i)].seed, j);
      reqs.push_back(r);
    }
  GenerateStats gs;
  GenerateOptions go;
  go.stats = &gs;
  auto plain = generate(*m, reqs, {}, go);
  CHECK(gs.prompt_tokens_computed == P * G * L);
  CHECK(gs.prompt_tokens_shared == 0);
  std::set<std::vector<int32_t>> distinct;
  for (size_t k = 0; k < plain.size(); ++k) {
    CHECK(shared[k].prompt == k / G);
    CHECK(shared[k].completion == plain[k].tokens);
    REQUIRE(shared[k].logprobs.size() == plain[k].logprobs.size());
    // The shared prompt is computed in a prefill of another length, so its KV values differ by
    // summation order only (fixture_util.h derives the tolerance).
    const float tol = test::summation_order_tolerance(m->config(), test::logprob_magnitude(plain[k].logprobs), 1.0f);
    for (size_t t = 0; t < plain[k].logprobs.size(); ++t)
      CHECK(std::fabs(shared[k].logprobs[t] - plain[k].logprobs[t]) <= tol);
    CHECK(shared[k].truncated);
    distinct.insert(shared[k].completion);
  }
  CHECK(distinct.size() > size_t(P));  // the group members differ (own seeds)
}

TEST_CASE("share_prefix_with is validated", "[rollout]") {
  auto m = Model::load(kFix + "/dense/qwen2_tied");
  std::vector<GenRequest> reqs(2);
  reqs[0].prompt = {5, 6, 7};
  reqs[1].prompt = {5, 6, 8};
  reqs[1].share_prefix_with = 0;
  CHECK_THROWS_WITH(generate(*m, reqs), Catch::Contains("different prompt"));
  reqs[1].prompt = reqs[0].prompt;
  reqs[1].share_prefix_with = 1;
  CHECK_THROWS_WITH(generate(*m, reqs), Catch::Contains("not an earlier request"));
}

TEST_CASE("old-policy logprobs captured while sampling equal the trainer's (T = 1 and 0.6)", "[rollout]") {
  for (const char* dir : {"/dense/qwen2_tied", "/moe/qwen3_moe"}) {
    auto m = Model::load(kFix + dir);
    for (float T : {1.0f, 0.6f}) {
      INFO(dir << " T = " << T);
      auto prompts = toy_prompts(2, 6);
      RolloutOptions ro;
      ro.group_size = 3;
      ro.sampling.temperature = T;
      ro.sampling.max_new_tokens = 10;
      auto rolls = sample_rollouts(*m, prompts, ro);
      auto samples = to_grpo_samples(rolls, prompts);
      fill_reference_logprobs(*m, samples, T, /*batch_tokens=*/20);  // several batches
      // Sampling (KV-cache decode, one row at a time) and the trainer (whole sequences) run the
      // same kernels on different matmul shapes: the logits differ by summation order only, and
      // the logprobs divide them by T (fixture_util.h derives the tolerance). Measured worst on
      // AVX2 (Zen 3): dense 4.8e-6 / 7.9e-6, MoE 3.1e-6 / 1.6e-5 at T = 1 / 0.6.
      for (const auto& s : samples) {
        REQUIRE(s.ref_logprobs.size() == s.completion.size());
        const float tol = test::summation_order_tolerance(m->config(), test::logprob_magnitude(s.old_logprobs), T);
        for (size_t t = 0; t < s.completion.size(); ++t) CHECK(std::fabs(s.ref_logprobs[t] - s.old_logprobs[t]) <= tol);
      }
    }
  }
}

TEST_CASE("with top-k / top-p / min-p on, the sampler's logprobs are still the full distribution's", "[rollout]") {
  // The old-policy logprob of a sampled token is log softmax(logits / T) over the whole vocabulary,
  // before truncation, as the trainer computes it (TRL and vLLM once differed here: a logprob from
  // the truncated, renormalised distribution biases the ratio). A renormalised logprob would be
  // larger by -log(mass of the kept tokens) >= -log(mass of the top 2): that gap is computed from
  // the model's logits and must exceed the tolerance tenfold, so the check cannot pass by accident.
  auto m = Model::load(kFix + "/dense/qwen2_tied");
  auto prompts = toy_prompts(2, 6);
  RolloutOptions ro;
  ro.group_size = 3;
  ro.sampling.temperature = 0.6f;
  ro.sampling.top_k = 2;
  ro.sampling.top_p = 0.9f;
  ro.sampling.min_p = 0.01f;
  ro.sampling.max_new_tokens = 10;
  auto rolls = sample_rollouts(*m, prompts, ro);
  auto samples = to_grpo_samples(rolls, prompts);
  fill_reference_logprobs(*m, samples, 0.6f);
  const int64_t V = m->config().vocab_size;
  for (const auto& s : samples) {
    const float tol = test::summation_order_tolerance(m->config(), test::logprob_magnitude(s.old_logprobs), 0.6f);
    std::vector<int32_t> ids = s.prompt;
    ids.insert(ids.end(), s.completion.begin(), s.completion.end());
    const std::vector<float> logits = test::prefill_logits(*m, ids);
    for (size_t t = 0; t < s.completion.size(); ++t) {
      CHECK(std::fabs(s.ref_logprobs[t] - s.old_logprobs[t]) <= tol);
      const float* row = &logits[(s.prompt.size() - 1 + t) * size_t(V)];
      std::vector<double> z(row, row + V);
      std::partial_sort(z.begin(), z.begin() + 2, z.end(), std::greater<double>());
      double sum = 0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp((double(row[j]) - z[0]) / 0.6);
      const double top2 = (1.0 + std::exp((z[1] - z[0]) / 0.6)) / sum;
      CHECK(-std::log(top2) > 10.0 * tol);
    }
  }
}

TEST_CASE("rewards: built-ins, a throwing and a hanging callback, overlong shaping", "[rollout]") {
  std::vector<RolloutPrompt> prompts(1);
  prompts[0].answer = "42";
  std::vector<Rollout> rolls(3);
  rolls[0].text = "<think>6*7</think> \\boxed{42}";
  rolls[1].text = "<think>guess</think> \\boxed{41}";
  rolls[2].text = "no format, hangs";
  for (auto& r : rolls) r.completion.assign(10, 1);
  rolls[2].completion.assign(18, 1);
  std::vector<NamedReward> rw;
  rw.push_back({"math_accuracy", 1.0f, [](const RewardInput& in) { return math_accuracy_reward(in.completion, in.answer); }, true});
  rw.push_back({"format", 0.5f, [](const RewardInput& in) { return format_reward(in.completion); }, true});
  // The hanging judge waits on a gate opened only at the end of the test: score_rollouts returns
  // only if the runner's deadline abandons it (otherwise ctest's TIMEOUT fails the test; no clock
  // is asserted). The gate is never freed, so the abandoned call may return at any time.
  test::Gate* gate = test::Gate::make();
  rw.push_back({"judge", 1.0f, [gate](const RewardInput& in) -> float {
                  if (in.completion.find("41") != std::string::npos) throw std::runtime_error("judge exploded");
                  if (in.completion.find("hangs") != std::string::npos) gate->wait();
                  return 0.25f;
                }, false});
  // 1 s: far beyond what the built-in rewards take on a loaded machine; the hung call costs it once.
  RewardRunner runner(rw, std::chrono::milliseconds(1000), 2);
  OverlongShaping ov{20, 5, 1.0f};
  RolloutStats st;
  score_rollouts(rolls, prompts, runner, ov, &st);
  CHECK(rolls[0].reward == Approx(1.0 + 0.5 + 0.25));
  CHECK_FALSE(rolls[0].reward_failed);
  CHECK(rolls[1].reward == Approx(0.5));  // judge failed: 0
  CHECK(rolls[1].reward_failed);
  CHECK_THAT(rolls[1].reward_error, Catch::Contains("judge") && Catch::Contains("exploded"));
  CHECK(rolls[2].reward_failed);
  CHECK_THAT(rolls[2].reward_error, Catch::Contains("timed out"));
  // 18 tokens with max 20, cache 5: (15 - 18) / 5 = -0.6.
  CHECK(rolls[2].overlong_penalty == Approx(-0.6));
  CHECK(rolls[2].reward == Approx(-0.6));
  CHECK(st.reward_failures == 2);
  CHECK_FALSE(group_rewards_tied(rolls));
  CHECK(runner.stats().timed_out == 1);
  CHECK(gate->passed() == 0);
  gate->open();
  gate->await_passed(1);
}

TEST_CASE("DAPO overlong penalty", "[rollout]") {
  OverlongShaping o{100, 20, 1.0f};
  CHECK(overlong_penalty(80, o) == 0.0f);
  CHECK(overlong_penalty(90, o) == Approx(-0.5));
  CHECK(overlong_penalty(100, o) == Approx(-1.0));
  CHECK(overlong_penalty(101, o) == Approx(-1.0));
  CHECK(overlong_penalty(1000, OverlongShaping{}) == 0.0f);
}

TEST_CASE("synthetic addition: worked solutions, mistakes, held-out split", "[rollout][task]") {
  const AdditionProblem p{347, 89};
  const auto w = addition_worked_solution(p);
  CHECK(w.text == " <think> 347+089 7+9+0=16 4+8+1=13 3+0+1=4 so 436 </think> \\boxed{436}");
  CHECK(w.answer == "436");
  CHECK(math_accuracy_reward(w.text, addition_answer(p)) == 1.0f);
  CHECK(format_reward(w.text) == 1.0f);
  for (int col = 0; col < 3; ++col) {
    const auto bad = addition_worked_solution(p, col);
    CHECK(bad.answer != "436");
    CHECK(math_accuracy_reward(bad.text, "436") == 0.0f);
  }
  CHECK(addition_worked_solution({999, 1}).answer == "1000");
  AdditionTaskOptions o;
  auto train = make_addition_problems(3000, 7, o);
  o.held_out = true;
  auto held = make_addition_problems(300, 7, o);
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const auto& q : train) {
    CHECK_FALSE(addition_is_held_out(q.a, q.b));
    CHECK(q.a >= 10);
    CHECK(q.a <= 999);
    seen.insert({q.a, q.b});
  }
  CHECK(seen.size() == train.size());
  for (const auto& q : held) CHECK(seen.count({q.a, q.b}) == 0);
  // The corpus mix is what the options say (within sampling error).
  AdditionTaskOptions c;
  auto docs = make_addition_corpus(4000, 3, c, "Q: {prompt}\nA:");
  int direct = 0, wrong = 0;
  for (const auto& d : docs) {
    CHECK(d.rfind("Q: What is ", 0) == 0);
    if (d.find("<think>") == std::string::npos) ++direct;
  }
  auto probs = make_addition_problems(4000, 3, c);
  for (size_t i = 0; i < docs.size(); ++i)
    if (docs[i].find("<think>") != std::string::npos)
      wrong += math_accuracy_reward(docs[i], addition_answer(probs[i])) == 0.0f;
  CHECK(double(direct) / 4000 == Approx(0.3).margin(0.03));
  CHECK(double(wrong) / 4000 == Approx(0.3).margin(0.03));
  CHECK_THROWS_WITH(make_addition_problems(10, 1, AdditionTaskOptions{3, 2}), Catch::Contains("min_digits"));
}

TEST_CASE("majority vote groups equivalent answers", "[rollout][eval]") {
  std::vector<std::string> c = {"\\boxed{1/2}", "\\boxed{3}", "\\boxed{0.5}", "no answer", "\\boxed{3}", "\\boxed{\\frac12}"};
  CHECK(math_answers_equivalent("0.5", majority_answer(c)));
  std::vector<std::string> none = {"a", "b"};
  CHECK(majority_answer(none).empty());
}
