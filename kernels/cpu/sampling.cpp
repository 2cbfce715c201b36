// The sampler's host algorithm (reason/kernels/sampling.h) and the CPU backend's sample_rows op,
// which runs it on the rows in parallel (one scratch per thread; each row's draw uses its own
// generator state, so the result does not depend on the number of threads).
#include "reason/kernels/sampling.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>

#include "cpu_ops.h"
#include "reason/kernels/backend.h"

namespace reason::kernels {

float token_logprob(const float* logits, int64_t n, int32_t token, float temperature) {
  const float inv_t = temperature > 0.0f ? 1.0f / temperature : 1.0f;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, logits[i] * inv_t);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(logits[i] * inv_t - mx));
  return float(double(logits[token] * inv_t - mx) - std::log(sum));
}

namespace {

// How many of the candidates (s.idx, partly sorted by logit) top-p keeps, growing the sorted
// prefix until the kept mass reaches top_p (of the mass z_limit left after top-k).
int64_t top_p_keep(const float* lg, const SampleRow& p, int64_t limit, float mx, double z_limit, SamplerScratch& s) {
  auto by_logit = [lg](int32_t a, int32_t b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); };
  int64_t sorted = p.top_k > 0 ? limit : 0;
  int64_t want = p.top_k > 0 ? limit : std::min<int64_t>(limit, 64);
  double mass = 0.0;
  int64_t i = 0;
  while (true) {
    if (want > sorted) {
      std::partial_sort(s.idx.begin() + sorted, s.idx.begin() + want, s.idx.end(), by_logit);
      sorted = want;
    }
    for (; i < sorted; ++i) {
      mass += std::exp(double(lg[s.idx[size_t(i)]] - mx)) / z_limit;
      if (mass >= double(p.top_p)) return i + 1;
    }
    if (sorted >= limit) return limit;
    want = std::min<int64_t>(limit, want * 4);
  }
}

}  // namespace

int64_t candidate_distribution(const float* raw, int64_t V, const SampleRow& p, SamplerScratch& s) {
  s.logits.assign(raw, raw + V);
  float* lg = s.logits.data();
  for (int64_t i = 0; i < V; ++i)
    if (std::isnan(lg[i])) throw BackendError("sampling: logits contain NaN (token " + std::to_string(i) + ")");

  if (p.repetition_penalty != 1.0f) {
    // Penalise each distinct token once (the transformers/vLLM semantics).
    s.idx.assign(p.history, p.history + p.n_history);
    std::sort(s.idx.begin(), s.idx.end());
    s.idx.erase(std::unique(s.idx.begin(), s.idx.end()), s.idx.end());
    for (int32_t t : s.idx) {
      if (t < 0 || t >= V) continue;
      lg[t] = lg[t] > 0 ? lg[t] / p.repetition_penalty : lg[t] * p.repetition_penalty;
    }
  }

  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    // Each generated token's count (sorted copy, runs counted).
    s.idx.assign(p.history + std::min(p.n_prompt, p.n_history), p.history + p.n_history);
    std::sort(s.idx.begin(), s.idx.end());
    for (size_t i = 0; i < s.idx.size();) {
      size_t j = i;
      while (j < s.idx.size() && s.idx[j] == s.idx[i]) ++j;
      const int32_t t = s.idx[i];
      if (t >= 0 && t < V) lg[t] -= p.presence_penalty + p.frequency_penalty * float(j - i);
      i = j;
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
    keep = top_p_keep(lg, p, limit, mx, z_limit, s);
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

namespace {

// The row's top_n tokens of log softmax(logits / T), most likely first (ties by id).
void top_logprobs(const float* logits, int64_t n, SampleRow& p, SamplerScratch& s) {
  if (!p.top_ids || !p.top_logprobs) throw BackendError("sampling: top_n without output arrays");
  const double inv_t = p.temperature > 0.0f ? 1.0 / double(p.temperature) : 1.0;
  const float mx = *std::max_element(logits, logits + n);
  double z = 0.0;
  for (int64_t i = 0; i < n; ++i) z += std::exp((double(logits[i]) - double(mx)) * inv_t);
  const double lse = std::log(z);
  const int64_t k = std::min<int64_t>(p.top_n, n);
  s.idx.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) s.idx[size_t(i)] = int32_t(i);
  std::partial_sort(s.idx.begin(), s.idx.begin() + k, s.idx.end(),
                    [logits](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  for (int64_t i = 0; i < k; ++i) {
    p.top_ids[i] = s.idx[size_t(i)];
    p.top_logprobs[i] = float((double(logits[s.idx[size_t(i)]]) - double(mx)) * inv_t - lse);
  }
}

}  // namespace

void sample_row(const float* logits, int64_t n, SampleRow& p, SamplerScratch& s) {
  const int64_t keep = candidate_distribution(logits, n, p, s);
  if (keep == 1) {
    p.token = s.idx[0];
  } else {
    if (!p.rng) throw BackendError("sampling: a row that draws has no generator state");
    const double u = xoshiro_uniform(p.rng);
    double acc = 0.0;
    int64_t pick = keep - 1;
    for (int64_t i = 0; i < keep; ++i) {
      acc += s.probs[size_t(i)];
      if (u < acc) {
        pick = i;
        break;
      }
    }
    p.token = s.idx[size_t(pick)];
  }
  p.logprob = token_logprob(logits, n, p.token, p.temperature);
  if (p.top_n > 0) top_logprobs(logits, n, p, s);
}

namespace cpu {

void sample_rows(const SampleArgs& a) {
  if (a.n_rows <= 0) return;
  if (!a.logits || !a.rows || a.n <= 0) throw BackendError("cpu sample_rows: null logits or rows, or an empty vocabulary");
  // Rows are independent; an error in one (NaN logits) is rethrown after the loop, the first by row.
  std::vector<std::exception_ptr> err(size_t(a.n_rows));
#pragma omp parallel num_threads(int(std::min<int64_t>(a.n_rows, cpu_threads())))
  {
    SamplerScratch s;
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < a.n_rows; ++i) {
      try {
        sample_row(a.logits + a.rows[i].row * a.n, a.n, a.rows[i], s);
      } catch (...) {
        err[size_t(i)] = std::current_exception();
      }
    }
  }
  for (auto& e : err)
    if (e) std::rethrow_exception(e);
}

}  // namespace cpu
}  // namespace reason::kernels
