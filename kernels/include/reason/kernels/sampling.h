// Sampling the next token from rows of logits (Backend::sample_rows): the repetition, presence and
// frequency penalties, temperature, top-k, top-p and min-p, in the order transformers' logits processors apply them,
// then a draw from the kept candidates with a per-request xoshiro256** generator. The host
// algorithm is here (the CPU backend runs it on each row in parallel; the CUDA backend on rows it
// downloads) so that every backend samples the same token from the same logits and state.
// Threads: the functions are reentrant; a SamplerScratch and an Rng state belong to one thread.
#pragma once
#include <cstdint>
#include <vector>

namespace reason::kernels {

// xoshiro256** (Blackman & Vigna) on a 4-word state; uniform(): 53 bits in [0, 1).
inline uint64_t xoshiro_next(uint64_t s[4]) {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}
inline double xoshiro_uniform(uint64_t s[4]) { return double(xoshiro_next(s) >> 11) * (1.0 / 9007199254740992.0); }

// One row to sample: a host descriptor (like AttnSeq) whose logits row lives in the backend's
// memory. history (host) lists the tokens the repetition penalty applies to (each distinct id once).
struct SampleRow {
  int64_t row = 0;  // the logits row [row * n, (row + 1) * n)
  float temperature = 1.0f;  // 0: greedy (argmax)
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f, min_p = 0.0f, repetition_penalty = 1.0f;
  const int32_t* history = nullptr;
  int64_t n_history = 0;
  // OpenAI's presence and frequency penalties over the generated tokens (history past its first
  // n_prompt ids), after the repetition penalty and before the temperature, as vLLM applies them:
  // logit -= presence_penalty * (count > 0) + frequency_penalty * count.
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
  int64_t n_prompt = 0;
  // Top logprobs: when top_n > 0, the top_n most likely tokens of log softmax(logits / T) (T = 1
  // when greedy; the distribution `logprob` is from), most likely first, into top_ids and
  // top_logprobs (host arrays of top_n the caller owns).
  int32_t top_n = 0;
  int32_t* top_ids = nullptr;
  float* top_logprobs = nullptr;
  // The request's generator state (host, 4 words): advanced by one draw when more than one
  // candidate is left (greedy and single-candidate rows draw nothing).
  uint64_t* rng = nullptr;
  int32_t token = 0;     // out: the sampled id
  float logprob = 0.0f;  // out: log softmax(logits / T)[token] (T = 1 when greedy), before penalty and truncation
};

struct SampleArgs {
  const float* logits = nullptr;  // [rows, n] in the backend's memory
  int64_t n = 0;                  // vocabulary
  SampleRow* rows = nullptr;      // host array
  int64_t n_rows = 0;
};

// Reusable buffers of the host algorithm; one per thread.
struct SamplerScratch {
  std::vector<float> logits;
  std::vector<int32_t> idx;
  std::vector<float> probs;
};

// The distribution a row is drawn from: s.idx[0..k) token ids in descending logit order (ties by
// id) and s.probs[0..k) their renormalised probabilities after penalty, temperature, top-k, top-p
// (measured after top-k) and min-p; returns k (1 when greedy). Throws BackendError naming the
// token on a NaN logit.
int64_t candidate_distribution(const float* logits, int64_t n, const SampleRow& p, SamplerScratch& s);

// log softmax(logits / temperature)[token], stable (temperature 0 counts as 1).
float token_logprob(const float* logits, int64_t n, int32_t token, float temperature);

// candidate_distribution, a draw (when k > 1) and the token's logprob, into p.token / p.logprob.
void sample_row(const float* logits, int64_t n, SampleRow& p, SamplerScratch& s);

}  // namespace reason::kernels
