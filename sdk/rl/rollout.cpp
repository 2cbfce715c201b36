#include "rl/rollout.h"

#include <chrono>

#include "core/error.h"
#include "train/logprob_pass.h"

namespace reason {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

float overlong_penalty(int64_t length, const OverlongShaping& o) {
  if (o.max_length <= 0) return 0.0f;
  const int64_t free_len = o.max_length - o.cache;
  if (length <= free_len) return 0.0f;
  if (length > o.max_length || o.cache <= 0) return -o.weight;
  return o.weight * float(double(free_len - length) / double(o.cache));
}

uint64_t rollout_seed(uint64_t prompt_seed, int64_t j) {
  uint64_t x = prompt_seed + 0x9e3779b97f4a7c15ULL * uint64_t(j + 1);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::vector<Rollout> sample_rollouts(const Model& model, std::span<const RolloutPrompt> prompts,
                                     const RolloutOptions& opts, RolloutStats* stats) {
  if (opts.group_size < 1) fail(ErrorCode::InvalidArgument, "rollouts: group_size must be >= 1 (got {})", opts.group_size);
  const auto t0 = std::chrono::steady_clock::now();
  const size_t G = size_t(opts.group_size);
  std::vector<GenRequest> reqs;
  reqs.reserve(prompts.size() * G);
  for (size_t i = 0; i < prompts.size(); ++i)
    for (size_t j = 0; j < G; ++j) {
      GenRequest r;
      r.prompt = prompts[i].ids;
      r.params = opts.sampling;
      r.params.seed = rollout_seed(prompts[i].seed, int64_t(j));
      r.share_prefix_with = j == 0 ? -1 : int64_t(i * G);
      reqs.push_back(std::move(r));
    }
  GenerateStats gs;
  GenerateOptions go;
  go.max_active = std::max(opts.max_active, int(G));
  go.stats = &gs;
  auto res = generate(model, reqs, {}, go);
  std::vector<Rollout> out(res.size());
  for (size_t k = 0; k < res.size(); ++k) {
    Rollout& r = out[k];
    r.prompt = k / G;
    r.completion = std::move(res[k].tokens);
    r.logprobs = std::move(res[k].logprobs);
    r.text = std::move(res[k].text);
    r.truncated = res[k].finish == FinishReason::Length;
  }
  if (stats) {
    stats->prompt_tokens_computed += gs.prompt_tokens_computed;
    stats->prompt_tokens_shared += gs.prompt_tokens_shared;
    stats->generated_tokens += gs.generated_tokens;
    stats->generate_seconds += seconds_since(t0);
  }
  return out;
}

void score_rollouts(std::vector<Rollout>& rollouts, std::span<const RolloutPrompt> prompts, RewardRunner& runner,
                    const OverlongShaping& overlong, RolloutStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<RewardInput> inputs(rollouts.size());
  for (size_t k = 0; k < rollouts.size(); ++k) {
    const RolloutPrompt& p = prompts[rollouts[k].prompt];
    inputs[k] = RewardInput{p.text, rollouts[k].text, p.answer, p.extra_json};
  }
  auto outcomes = runner.score(inputs);
  for (size_t k = 0; k < rollouts.size(); ++k) {
    Rollout& r = rollouts[k];
    r.reward_terms = outcomes[k].values;
    r.overlong_penalty = overlong_penalty(int64_t(r.completion.size()), overlong);
    r.reward = outcomes[k].total + r.overlong_penalty;
    r.reward_failed = outcomes[k].failed;
    r.reward_error = outcomes[k].error;
    if (stats && r.reward_failed) stats->reward_failures += 1;
  }
  if (stats) stats->reward_seconds += seconds_since(t0);
}

bool group_rewards_tied(std::span<const Rollout> group) {
  for (const Rollout& r : group)
    if (r.reward != group.front().reward) return false;
  return true;
}

std::vector<GrpoSample> to_grpo_samples(std::span<const Rollout> rollouts, std::span<const RolloutPrompt> prompts,
                                        bool sampler_logprobs_as_sampling) {
  std::vector<GrpoSample> out(rollouts.size());
  for (size_t k = 0; k < rollouts.size(); ++k) {
    out[k].prompt = prompts[rollouts[k].prompt].ids;
    out[k].completion = rollouts[k].completion;
    out[k].reward = rollouts[k].reward;
    (sampler_logprobs_as_sampling ? out[k].sampling_logprobs : out[k].old_logprobs) = rollouts[k].logprobs;
    out[k].truncated = rollouts[k].truncated;
  }
  return out;
}

void fill_reference_logprobs(const Model& model, std::span<GrpoSample> samples, float temperature,
                             int64_t batch_tokens) {
  LogprobPass pass;
  size_t i = 0;
  while (i < samples.size()) {
    std::vector<std::vector<int32_t>> seqs;
    std::vector<uint8_t> need;  // completion targets only
    size_t j = i;
    int64_t tokens = 0;
    while (j < samples.size() && (j == i || tokens < batch_tokens)) {
      append_completion_sequence(seqs, need, samples[j].prompt, samples[j].completion);
      tokens += int64_t(seqs.back().size());
      ++j;
    }
    const auto lp = pass.forward(model, seqs, temperature, need);
    size_t off = 0;
    for (size_t k = i; k < j; ++k) {
      const size_t n = seqs[k - i].size() - 1, c = samples[k].completion.size();
      samples[k].ref_logprobs.assign(lp.begin() + long(off + n - c), lp.begin() + long(off + n));
      off += n;
    }
    i = j;
  }
}

}  // namespace reason
