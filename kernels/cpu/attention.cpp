// Causal grouped-query attention of each sequence's queries over its own KV history.
// Work items are (sequence, query token, head) triples spread over the threads; each computes
// scores, a max-subtracted softmax and the weighted sum of values in f32.
#include <cmath>
#include <vector>

#include "cpu_ops.h"
#include "vec.h"

namespace reason::kernels::cpu {

void attention(const AttnArgs& a) {
  // Flatten (seq, token) pairs so threads balance across sequences of different lengths.
  std::vector<std::pair<int, int64_t>> items;
  for (int s = 0; s < a.n_seqs; ++s)
    for (int64_t t = 0; t < a.seqs[s].n_q; ++t) items.emplace_back(s, t);
  const int64_t n_items = int64_t(items.size()) * a.n_heads;
  const int group = a.n_heads / a.n_kv_heads;
  const int hd = a.head_dim;
  const int nt = cpu_threads();

#pragma omp parallel num_threads(nt)
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < n_items; ++it) {
      const auto [s, t] = items[size_t(it / a.n_heads)];
      const int h = int(it % a.n_heads);
      const AttnSeq& sq = a.seqs[s];
      const int64_t n_kv = sq.q_pos0 + t + 1;
      const float* q = sq.q + t * a.q_stride + int64_t(h) * hd;
      const int64_t koff = int64_t(h / group) * hd;
      scores.resize(size_t(n_kv));
      float mx = -INFINITY;
      for (int64_t p = 0; p < n_kv; ++p) {
        const float sc = dot(q, sq.k + p * a.kv_stride + koff, hd) * a.scale;
        scores[size_t(p)] = sc;
        mx = sc > mx ? sc : mx;
      }
      float sum = 0.0f;
      for (int64_t p = 0; p < n_kv; ++p) {
        const float e = std::exp(scores[size_t(p)] - mx);
        scores[size_t(p)] = e;
        sum += e;
      }
      const float inv = 1.0f / sum;
      float* out = sq.out + t * a.out_stride + int64_t(h) * hd;
      for (int i = 0; i < hd; ++i) out[i] = 0.0f;
      for (int64_t p = 0; p < n_kv; ++p) axpy(out, scores[size_t(p)] * inv, sq.v + p * a.kv_stride + koff, hd);
    }
  }
}

}  // namespace reason::kernels::cpu
