#include "infer/sampler.h"

#include <cmath>

#include "core/error.h"
#include "reason/kernels/backend.h"

namespace reason {

SamplingParams SamplingParams::r1() {
  SamplingParams p;
  p.temperature = 0.6f;
  p.top_p = 0.95f;
  p.max_new_tokens = 32768;
  return p;
}

void SamplingParams::validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    fail(ErrorCode::InvalidArgument, "sampling: temperature must be >= 0 (got {})", temperature);
  if (top_k < 0) fail(ErrorCode::InvalidArgument, "sampling: top_k must be >= 0 (got {})", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail(ErrorCode::InvalidArgument, "sampling: top_p must be in (0, 1] (got {})", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) fail(ErrorCode::InvalidArgument, "sampling: min_p must be in [0, 1] (got {})", min_p);
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
    fail(ErrorCode::InvalidArgument, "sampling: repetition_penalty must be > 0 (got {})", repetition_penalty);
  for (auto [name, v] : {std::pair{"presence_penalty", presence_penalty}, std::pair{"frequency_penalty", frequency_penalty}})
    if (!(v >= -2.0f && v <= 2.0f)) fail(ErrorCode::InvalidArgument, "sampling: {} must be in [-2, 2] (got {})", name, v);
  if (max_new_tokens < 1) fail(ErrorCode::InvalidArgument, "sampling: max_new_tokens must be >= 1 (got {})", max_new_tokens);
  for (const auto& s : stop_strings)
    if (s.empty()) fail(ErrorCode::InvalidArgument, "sampling: stop strings must not be empty");
}

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Rng::Rng(uint64_t seed) {
  for (auto& w : s_) w = splitmix64(seed);
}

kernels::SampleRow sample_row_of(const SamplingParams& p, std::span<const int32_t> history, Rng& rng, int64_t n_prompt) {
  kernels::SampleRow r;
  r.temperature = p.temperature;
  r.top_k = p.top_k;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.repetition_penalty = p.repetition_penalty;
  r.presence_penalty = p.presence_penalty;
  r.frequency_penalty = p.frequency_penalty;
  r.n_prompt = n_prompt;
  r.history = history.data();
  r.n_history = int64_t(history.size());
  r.rng = rng.state();
  return r;
}

// The host entry points translate the kernels' BackendError (NaN logits) into Error(Backend).
template <typename F>
static auto as_error(F&& f) {
  try {
    return f();
  } catch (const kernels::BackendError& e) {
    fail(ErrorCode::Backend, "{}", e.what());
  }
}

float token_logprob(std::span<const float> logits, int32_t token, float temperature) {
  return kernels::token_logprob(logits.data(), int64_t(logits.size()), token, temperature);
}

int64_t candidate_distribution(std::span<const float> raw, const SamplingParams& p, std::span<const int32_t> history,
                               SamplerScratch& s) {
  Rng unused(0);
  const kernels::SampleRow r = sample_row_of(p, history, unused);
  return as_error([&] { return kernels::candidate_distribution(raw.data(), int64_t(raw.size()), r, s); });
}

Sampled sample(std::span<const float> raw, const SamplingParams& p, std::span<const int32_t> history, Rng& rng,
               SamplerScratch& s) {
  kernels::SampleRow r = sample_row_of(p, history, rng);
  as_error([&] {
    kernels::sample_row(raw.data(), int64_t(raw.size()), r, s);
    return 0;
  });
  return Sampled{r.token, r.logprob};
}

}  // namespace reason
