// Token sampling: repetition penalty, temperature, top-k, top-p, min-p, with a seeded
// per-request random generator, and the logprob of the chosen token. The algorithm is the
// backends' (reason/kernels/sampling.h, Backend::sample_rows, which the generator calls on the
// device's logits); these functions run it on host logits, for tests and host callers.
// Pure functions plus a small RNG value type: a Rng belongs to one request (one thread).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "reason/kernels/sampling.h"

namespace reason {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy (argmax)
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off: drop tokens with p < min_p * p_max
  float repetition_penalty = 1.0f;  // CTRL: logit/penalty if > 0 else logit*penalty, once per distinct token
  // OpenAI's penalties over the generated tokens: logit -= presence * (count > 0) + frequency * count.
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;  // [-2, 2]
  int32_t max_new_tokens = 256;
  uint64_t seed = 0;
  std::vector<int32_t> stop_token_ids;   // in addition to the model's EOS ids
  std::vector<std::string> stop_strings;
  bool ignore_eos = false;

  // DeepSeek-R1's recommended settings (temperature 0.6, top-p 0.95).
  static SamplingParams r1();
  // Throws InvalidArgument naming the field when a value is out of range.
  void validate() const;
};

// xoshiro256** seeded by splitmix64: the same seed gives the same stream on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next() { return kernels::xoshiro_next(s_); }
  // Uniform in [0, 1) with 53 bits.
  double uniform() { return kernels::xoshiro_uniform(s_); }
  // The 4-word state a backend's sample_rows advances (kernels::SampleRow::rng).
  uint64_t* state() { return s_; }

 private:
  uint64_t s_[4];
};

struct Sampled {
  int32_t token = 0;
  float logprob = 0.0f;  // log softmax(logits / T)[token], T = 1 when greedy; before penalties and truncation
};

// Reusable buffers for sample(); one per thread.
using SamplerScratch = kernels::SamplerScratch;

// A backend sample row for `p` (row 0, the history as its penalty list, the first n_prompt of
// which are the prompt, rng's state).
kernels::SampleRow sample_row_of(const SamplingParams& p, std::span<const int32_t> history, Rng& rng, int64_t n_prompt = 0);

// The distribution sample() draws from: fills scratch.idx[0..k) with token ids and
// scratch.probs[0..k) with their renormalised probabilities after the repetition penalty,
// temperature, top-k, top-p and min-p (in that order, as transformers applies them); returns k.
// Greedy (temperature 0) gives k = 1. Throws Error(Backend) naming the token on NaN logits (the
// backends' sample_rows, which the generator calls, throw kernels::BackendError, which the C ABI
// reports as REASON_ERR_BACKEND).
int64_t candidate_distribution(std::span<const float> logits, const SamplingParams& p,
                               std::span<const int32_t> history, SamplerScratch& scratch);

// Picks the next token from raw logits [vocab]. `history` = prompt + generated so far (used by
// the repetition penalty).
Sampled sample(std::span<const float> logits, const SamplingParams& p, std::span<const int32_t> history,
               Rng& rng, SamplerScratch& scratch);

// log softmax(logits / temperature)[token] computed stably (temperature 0 is treated as 1).
float token_logprob(std::span<const float> logits, int32_t token, float temperature);

}  // namespace reason
