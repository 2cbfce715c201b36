// Causal grouped-query attention of each sequence's queries over its own KV history.
// Work items are (sequence, query token, head) triples spread over the threads; each computes
// scores, a max-subtracted softmax and the weighted sum of values in f32.
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

void attention(const AttnArgs& a) {
  // Flatten (seq, token) pairs so threads balance across sequences of different lengths:
  // first[s] is the index of sequence s's first token among all queries.
  int64_t* first = static_cast<int64_t*>(thread_scratch(sizeof(int64_t) * size_t(a.n_seqs + 1), 1));
  first[0] = 0;
  for (int s = 0; s < a.n_seqs; ++s) first[s + 1] = first[s] + a.seqs[s].n_q;
  const int64_t n_items = first[a.n_seqs] * a.n_heads;
  const int group = a.n_heads / a.n_kv_heads;
  const int hd = a.head_dim;
  const int nt = cpu_threads();

#pragma omp parallel for num_threads(nt) schedule(dynamic, 4)
  for (int64_t it = 0; it < n_items; ++it) {
    const int64_t row = it / a.n_heads;
    int s = 0;
    while (first[s + 1] <= row) ++s;
    const int64_t t = row - first[s];
    const int h = int(it % a.n_heads);
    const AttnSeq& sq = a.seqs[s];
    const int64_t n_kv = sq.q_pos0 + t + 1;
    float* scores = static_cast<float*>(thread_scratch(sizeof(float) * size_t(n_kv), 0));
    const float* q = sq.q + t * a.q_stride + int64_t(h) * hd;
    const int64_t koff = int64_t(h / group) * hd;
    float mx = -INFINITY;
    for (int64_t p = 0; p < n_kv; ++p) {
      const float sc = dot(q, sq.k + p * a.kv_stride + koff, hd) * a.scale;
      scores[p] = sc;
      mx = sc > mx ? sc : mx;
    }
    float sum = 0.0f;
    for (int64_t p = 0; p < n_kv; ++p) {
      const float e = expf(scores[p] - mx);
      scores[p] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    float* out = sq.out + t * a.out_stride + int64_t(h) * hd;
    for (int i = 0; i < hd; ++i) out[i] = 0.0f;
    for (int64_t p = 0; p < n_kv; ++p) axpy(out, scores[p] * inv, sq.v + p * a.kv_stride + koff, hd);
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
