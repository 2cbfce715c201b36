// GRPO rollouts: for each prompt, G completions sampled in one batch with the prompt's KV cache
// computed once and shared by the group (GenRequest::share_prefix_with), the old-policy logprob
// of every sampled token captured while sampling (no second forward pass), truncation recorded,
// rewards computed per completion, then packed as GrpoSamples for Trainer::grpo_step.
//
// The captured logprobs are log softmax(logits / T) of the sampling forward pass, the same
// kernels and temperature the trainer uses, so they are the old-policy logprobs of the step
// (tests/unit/test_rollout.cpp checks them against the trainer's to 1e-5).
//
// Threads: sample_rollouts runs on the calling thread (compute is parallel inside); nothing may
// train the model while it samples. Reward callbacks run on the RewardRunner's workers.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "infer/generator.h"
#include "model/model.h"
#include "rl/reward_runner.h"
#include "rl/tool_calls.h"
#include "train/trainer.h"

namespace reason {

struct RolloutPrompt {
  std::vector<int32_t> ids;  // the formatted, tokenized prompt
  std::string text;          // the prompt as the reward functions see it
  std::string answer;        // gold answer (may be empty)
  std::string extra_json;    // other dataset fields, as a JSON object text
  uint64_t seed = 0;         // completion j samples with seed rollout_seed(seed, j)
};

struct RolloutOptions {
  int64_t group_size = 8;     // G completions per prompt
  SamplingParams sampling;    // its seed is ignored (see RolloutPrompt::seed); max_new_tokens bounds
                              // the whole completion, tool responses included
  int max_active = 256;       // sequences decoded together
  // Tools the completions may call (rl/tool_calls.h; null or none: single-turn sampling). A
  // completion that stops at tools->call_close gets the call's result appended (masked) and is
  // continued, up to tools->max_calls calls; a result that would not fit in max_new_tokens ends
  // the completion as truncated, without it (as TRL does).
  const ToolOptions* tools = nullptr;
};

struct Rollout {
  size_t prompt = 0;                 // index into the prompts
  std::vector<int32_t> completion;   // sampled ids, including the EOS that ended it
  std::vector<float> logprobs;       // old-policy logprob of each sampled id
  std::string text;                  // decoded completion (no EOS)
  bool truncated = false;            // stopped by max_new_tokens, not by EOS / a stop string
  float reward = 0.0f;               // total reward (weighted terms + overlong shaping)
  std::vector<float> reward_terms;   // per reward of the runner, unweighted
  float overlong_penalty = 0.0f;     // the shaping term added to reward (<= 0)
  bool reward_failed = false;        // a reward call failed (threw, timed out, NaN): it scored 0
  std::string reward_error;
  std::vector<uint8_t> mask;         // per completion id: 0 = a tool response's (not sampled); empty: all 1
  int tool_calls = 0, tool_errors = 0;
};

struct RolloutStats {
  int64_t prompt_tokens_computed = 0, prompt_tokens_shared = 0, generated_tokens = 0;
  int64_t reward_failures = 0;
  int64_t tool_calls = 0, tool_errors = 0;
  double generate_seconds = 0, reward_seconds = 0, tool_seconds = 0;
};

// DAPO's soft overlong punishment (eq. 13): 0 for length <= max_length - cache, then
// ((max_length - cache) - length) / cache down to -1 at max_length, and -1 beyond; times weight.
struct OverlongShaping {
  int64_t max_length = 0;  // 0: off
  int64_t cache = 0;
  float weight = 1.0f;
};
float overlong_penalty(int64_t length, const OverlongShaping& o);

uint64_t rollout_seed(uint64_t prompt_seed, int64_t j);

// Samples opts.group_size completions per prompt; the result holds the groups consecutively
// (prompt 0's G completions, then prompt 1's, ...). Adds to *stats when given.
std::vector<Rollout> sample_rollouts(const Model& model, std::span<const RolloutPrompt> prompts,
                                     const RolloutOptions& opts, RolloutStats* stats = nullptr);

// Scores every rollout with the runner (reward = sum of weighted terms) plus the overlong
// penalty. Never throws because of a reward callback.
void score_rollouts(std::vector<Rollout>& rollouts, std::span<const RolloutPrompt> prompts, RewardRunner& runner,
                    const OverlongShaping& overlong = {}, RolloutStats* stats = nullptr);

// True when every reward of the group is the same (its GRPO advantages are all 0).
bool group_rewards_tied(std::span<const Rollout> group);

// GrpoSamples (prompt ids, completion, reward, the sampler's logprobs, truncation) in the same
// order. The sampler's logprobs become the old policy's (the ratio's denominator), or with
// sampler_logprobs_as_sampling the sampling logprobs of rollout correction, the old policy's then
// being the trainer's own (GrpoSample).
std::vector<GrpoSample> to_grpo_samples(std::span<const Rollout> rollouts, std::span<const RolloutPrompt> prompts,
                                        bool sampler_logprobs_as_sampling = false);

// Per completion token logprobs under `model` (log softmax(logits / T)), computed in batches of
// about `batch_tokens` tokens: the reference logprobs of a GRPO batch.
void fill_reference_logprobs(const Model& model, std::span<GrpoSample> samples, float temperature,
                             int64_t batch_tokens = 8192);

}  // namespace reason
