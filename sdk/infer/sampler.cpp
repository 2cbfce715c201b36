#include "infer/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

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

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

float token_logprob(std::span<const float> logits, int32_t token, float temperature) {
  const float inv_t = temperature > 0.0f ? 1.0f / temperature : 1.0f;
  float mx = -std::numeric_limits<float>::infinity();
  for (float v : logits) mx = std::max(mx, v * inv_t);
  double sum = 0.0;
  for (float v : logits) sum += std::exp(double(v * inv_t - mx));
  return float(double(logits[size_t(token)] * inv_t - mx) - std::log(sum));
}

int64_t candidate_distribution(std::span<const float> raw, const SamplingParams& p, std::span<const int32_t> history,
                               SamplerScratch& s) {
  const int64_t V = int64_t(raw.size());
  s.logits.assign(raw.begin(), raw.end());
  float* lg = s.logits.data();
  for (int64_t i = 0; i < V; ++i)
    if (std::isnan(lg[i])) fail(ErrorCode::Backend, "sampling: logits contain NaN (token {})", i);

  if (p.repetition_penalty != 1.0f) {
    // Penalise each distinct token once (the transformers/vLLM semantics): the applied flag is
    // kept by negating nothing; a small seen-set over the history suffices.
    s.idx.assign(history.begin(), history.end());
    std::sort(s.idx.begin(), s.idx.end());
    s.idx.erase(std::unique(s.idx.begin(), s.idx.end()), s.idx.end());
    for (int32_t t : s.idx) {
      if (t < 0 || t >= V) continue;
      lg[t] = lg[t] > 0 ? lg[t] / p.repetition_penalty : lg[t] * p.repetition_penalty;
    }
  }

  if (p.temperature == 0.0f) {
    s.idx.assign(1, int32_t(std::max_element(lg, lg + V) - lg));
    s.probs.assign(1, 1.0f);
    return 1;
  }

  const float inv_t = 1.0f / p.temperature;
  for (int64_t i = 0; i < V; ++i) lg[i] *= inv_t;

  const float mx = *std::max_element(lg, lg + V);
  const bool truncate = p.top_k > 0 || p.top_p < 1.0f || p.min_p > 0.0f;
  if (!truncate) {  // plain temperature sampling over the whole vocabulary, in id order
    s.idx.resize(size_t(V));
    s.probs.resize(size_t(V));
    double z = 0.0;
    for (int64_t i = 0; i < V; ++i) {
      s.idx[size_t(i)] = int32_t(i);
      z += (s.probs[size_t(i)] = float(std::exp(double(lg[i] - mx))));
    }
    for (float& q : s.probs) q = float(q / z);
    return V;
  }

  // Candidates in descending logit order (ties by id). Only as many as top-k / top-p can need
  // are sorted: top-k sorts k; top-p grows a partial sort until the kept mass reaches top_p.
  // As in transformers and vLLM, top-p is measured on the distribution renormalised after
  // top-k, and min-p keeps tokens with p >= min_p * p_max.
  s.idx.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) s.idx[size_t(i)] = int32_t(i);
  auto by_logit = [lg](int32_t a, int32_t b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); };
  const int64_t limit = p.top_k > 0 ? std::min<int64_t>(p.top_k, V) : V;
  double z_limit = 0.0;
  if (p.top_k > 0) {
    std::partial_sort(s.idx.begin(), s.idx.begin() + limit, s.idx.end(), by_logit);
    for (int64_t i = 0; i < limit; ++i) z_limit += std::exp(double(lg[s.idx[size_t(i)]] - mx));
  } else {
    for (int64_t i = 0; i < V; ++i) z_limit += std::exp(double(lg[i] - mx));
  }
  int64_t keep = limit;
  if (p.top_p < 1.0f) {
    int64_t sorted = p.top_k > 0 ? limit : 0;
    int64_t want = p.top_k > 0 ? limit : std::min<int64_t>(limit, 64);
    double mass = 0.0;
    int64_t i = 0;
    bool done = false;
    while (!done) {
      if (want > sorted) {
        std::partial_sort(s.idx.begin() + sorted, s.idx.begin() + want, s.idx.end(), by_logit);
        sorted = want;
      }
      for (; i < sorted; ++i) {
        mass += std::exp(double(lg[s.idx[size_t(i)]] - mx)) / z_limit;
        if (mass >= double(p.top_p)) {
          keep = i + 1;
          done = true;
          break;
        }
      }
      if (!done && sorted >= limit) {
        keep = limit;
        done = true;
      }
      want = std::min<int64_t>(limit, want * 4);
    }
  } else if (p.top_k == 0) {
    // min-p only: keep the tokens above the threshold, sorted.
    const float thresh = mx + std::log(p.min_p);
    auto mid = std::partition(s.idx.begin(), s.idx.end(), [&](int32_t t) { return lg[t] >= thresh; });
    keep = int64_t(mid - s.idx.begin());
    std::sort(s.idx.begin(), mid, by_logit);
  }
  if (p.min_p > 0.0f) {
    const float thresh = mx + std::log(p.min_p);
    int64_t k = 1;
    while (k < keep && lg[s.idx[size_t(k)]] >= thresh) ++k;
    keep = k;
  }
  s.probs.resize(size_t(keep));
  double z = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    double e = std::exp(double(lg[s.idx[size_t(i)]] - mx));
    s.probs[size_t(i)] = float(e);
    z += e;
  }
  for (int64_t i = 0; i < keep; ++i) s.probs[size_t(i)] = float(s.probs[size_t(i)] / z);
  return keep;
}

Sampled sample(std::span<const float> raw, const SamplingParams& p, std::span<const int32_t> history, Rng& rng,
               SamplerScratch& s) {
  const int64_t keep = candidate_distribution(raw, p, history, s);
  Sampled out;
  if (keep == 1) {
    out.token = s.idx[0];
  } else {
    const double u = rng.uniform();
    double acc = 0.0;
    int64_t pick = keep - 1;
    for (int64_t i = 0; i < keep; ++i) {
      acc += s.probs[size_t(i)];
      if (u < acc) {
        pick = i;
        break;
      }
    }
    out.token = s.idx[size_t(pick)];
  }
  out.logprob = token_logprob(raw, out.token, p.temperature);
  return out;
}

}  // namespace reason
