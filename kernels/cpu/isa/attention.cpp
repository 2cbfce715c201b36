// Causal grouped-query attention of each sequence's queries over its own KV history.
// Work items are (sequence, query token, KV head) triples spread over the threads; each computes,
// for the query heads that share the KV head, the scores (each key row read once for all of them),
// a max-subtracted softmax (vectorised exp) and the weighted sum of values (each value row read
// once), in f32. Reading each KV row once per group rather than once per query head keeps decode
// fast deep into a long context, where the KV history is most of the bytes a step reads. On AVX2
// the scores of 8 keys come from 8 independent FMA chains and one transposing sum per head, and
// the weighted sum keeps each head's output in registers across a run of value rows.
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

namespace {

// Key/value rows of one sequence, in runs of consecutive positions that are contiguous in memory:
// the whole history (contiguous layout) or one block (paged layout).
struct KvRun {
  const char* k;
  const char* v;
  int64_t n;
};

static inline KvRun kv_run(const AttnArgs& a, const AttnSeq& sq, int64_t p, int64_t n_kv, int64_t elem) {
  if (a.block_size <= 0)
    return KvRun{static_cast<const char*>(sq.k) + p * a.kv_stride * elem, static_cast<const char*>(sq.v) + p * a.kv_stride * elem, n_kv - p};
  const int64_t b = p / a.block_size, off = p % a.block_size;
  const int64_t n = min_i64(a.block_size - off, n_kv - p);
  return KvRun{static_cast<const char*>(sq.k_blocks[b]) + off * a.kv_stride * elem,
               static_cast<const char*>(sq.v_blocks[b]) + off * a.kv_stride * elem, n};
}

static inline float key_dot(const float* q, const char* k, bool bf16, int hd) {
  return bf16 ? dot_bf16(q, reinterpret_cast<const uint16_t*>(k), hd) : dot(q, reinterpret_cast<const float*>(k), hd);
}

static inline void value_axpy(float* out, float w, const char* v, bool bf16, int hd) {
  if (bf16)
    axpy_bf16(out, w, reinterpret_cast<const uint16_t*>(v), hd);
  else
    axpy(out, w, reinterpret_cast<const float*>(v), hd);
}

#if defined(__AVX2__) && defined(__FMA__)
// 8 values of a key or value row (f32, or bf16 widened exactly).
static inline __m256 kv8(const char* p, bool bf16) {
  return bf16 ? load_bf16x8(reinterpret_cast<const uint16_t*>(p)) : _mm256_loadu_ps(reinterpret_cast<const float*>(p));
}

// The horizontal sums of a[0..8) as one vector: lane j = sum of a[j]'s lanes.
static inline __m256 hsum8(const __m256* a) {
  const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// scores[hh][j] = scale * q_hh . key j for 8 keys at k (rows `stride` bytes apart) and the group's
// heads: 8 independent FMA chains per head, one transposing sum for the 8 scores (hd % 8 == 0).
static inline void scores8(float* scores, int64_t ld, const float* q, int group, int hd, const char* k,
                           int64_t stride, bool bf16, float scale) {
  const int64_t elem = bf16 ? 2 : 4;
  for (int hh = 0; hh < group; ++hh) {
    __m256 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    const float* qh = q + hh * hd;
    for (int d = 0; d < hd; d += 8) {
      const __m256 qv = _mm256_loadu_ps(qh + d);
      for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(qv, kv8(k + j * stride + d * elem, bf16), acc[j]);
    }
    _mm256_storeu_ps(scores + hh * ld, _mm256_mul_ps(hsum8(acc), _mm256_set1_ps(scale)));
  }
}

// out[hh][d0 .. d0 + 8 L) += sum over n value rows of w[hh][p] * v_p, kept in registers over the
// rows. L is a template parameter so that the L vectors stay in registers (a run-time count made
// the compiler test it at every row).
template <int L>
static inline void values_tile(float* out, const float* w, int64_t ld, int group, int hd, int d0, const char* v,
                               int64_t stride, int64_t n, bool bf16) {
  const int64_t elem = bf16 ? 2 : 4;
  for (int hh = 0; hh < group; ++hh) {
    __m256 o[L];
    for (int c = 0; c < L; ++c) o[c] = _mm256_loadu_ps(out + hh * hd + d0 + 8 * c);
    const float* wh = w + hh * ld;
    for (int64_t p = 0; p < n; ++p) {
      const __m256 wp = _mm256_set1_ps(wh[p]);
      const char* vp = v + p * stride + int64_t(d0) * elem;
      for (int c = 0; c < L; ++c) o[c] = _mm256_fmadd_ps(wp, kv8(vp + 8 * c * elem, bf16), o[c]);
    }
    for (int c = 0; c < L; ++c) _mm256_storeu_ps(out + hh * hd + d0 + 8 * c, o[c]);
  }
}

// The same for output columns d0 .. min(d0 + 64, hd) (hd % 8 == 0).
static inline void values64(float* out, const float* w, int64_t ld, int group, int hd, int d0, const char* v,
                            int64_t stride, int64_t n, bool bf16) {
  switch ((hd - d0 < 64 ? hd - d0 : 64) / 8) {
    case 8: values_tile<8>(out, w, ld, group, hd, d0, v, stride, n, bf16); break;
    case 7: values_tile<7>(out, w, ld, group, hd, d0, v, stride, n, bf16); break;
    case 6: values_tile<6>(out, w, ld, group, hd, d0, v, stride, n, bf16); break;
    case 5: values_tile<5>(out, w, ld, group, hd, d0, v, stride, n, bf16); break;
    case 4: values_tile<4>(out, w, ld, group, hd, d0, v, stride, n, bf16); break;
    case 3: values_tile<3>(out, w, ld, group, hd, d0, v, stride, n, bf16); break;
    case 2: values_tile<2>(out, w, ld, group, hd, d0, v, stride, n, bf16); break;
    default: values_tile<1>(out, w, ld, group, hd, d0, v, stride, n, bf16); break;
  }
}
#endif

}  // namespace

double scaled_exp_sum(const float* z, int64_t n, float scale, float shift, float* out, double* dot);
float row_max(const float* z, int64_t n);

void attention(const AttnArgs& a) {
  // Flatten (seq, token) pairs so threads balance across sequences of different lengths:
  // first[s] is the index of sequence s's first token among all queries.
  int64_t* first = static_cast<int64_t*>(thread_scratch(sizeof(int64_t) * size_t(a.n_seqs + 1), 1));
  first[0] = 0;
  for (int s = 0; s < a.n_seqs; ++s) first[s + 1] = first[s] + a.seqs[s].n_q;
  const int64_t n_items = first[a.n_seqs] * a.n_kv_heads;
  const int group = a.n_heads / a.n_kv_heads;
  const int hd = a.head_dim;
  const int nt = cpu_threads();
  const bool bf16 = a.kv_dtype == DType::BF16;
  const int64_t elem = bf16 ? 2 : 4, stride_bytes = a.kv_stride * elem;

#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t it = 0; it < n_items; ++it) {
    const int64_t row = it / a.n_kv_heads;
    int s = 0;
    while (first[s + 1] <= row) ++s;
    const int64_t t = row - first[s];
    const int g = int(it % a.n_kv_heads);
    const AttnSeq& sq = a.seqs[s];
    const int64_t n_kv = sq.q_pos0 + t + 1;
    const int64_t k0 = a.window > 0 && n_kv > a.window ? n_kv - a.window : 0;  // first key seen
    const int64_t n = n_kv - k0;
    float* scores = static_cast<float*>(thread_scratch(sizeof(float) * size_t(n * group), 0));  // [head][p - k0]
    const float* q = sq.q + t * a.q_stride + int64_t(g) * group * hd;
    const int64_t koff = int64_t(g) * hd * elem;
    for (int64_t p = k0; p < n_kv;) {
      const KvRun r = kv_run(a, sq, p, n_kv, elem);
      int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
      if (hd % 8 == 0)  // 8 keys at a time
        for (; j + 8 <= r.n; j += 8, p += 8)
          scores8(scores + (p - k0), n, q, group, hd, r.k + j * stride_bytes + koff, stride_bytes, bf16, a.scale);
#endif
      for (; j < r.n; ++j, ++p) {
        const char* k = r.k + j * stride_bytes + koff;
        for (int hh = 0; hh < group; ++hh) scores[hh * n + (p - k0)] = key_dot(q + hh * hd, k, bf16, hd) * a.scale;
      }
    }
    float* out = sq.out + t * a.out_stride + int64_t(g) * group * hd;
    for (int hh = 0; hh < group; ++hh) {
      float* sc = scores + hh * n;
      const float mx = row_max(sc, n);
      const float inv = float(1.0 / scaled_exp_sum(sc, n, 1.0f, mx, sc, nullptr));
      for (int64_t p = 0; p < n; ++p) sc[p] *= inv;
      for (int i = 0; i < hd; ++i) out[hh * hd + i] = 0.0f;
    }
    for (int64_t p = k0; p < n_kv;) {
      const KvRun r = kv_run(a, sq, p, n_kv, elem);
#if defined(__AVX2__) && defined(__FMA__)
      if (hd % 8 == 0) {  // the output rows in registers over the run's value rows
        for (int d0 = 0; d0 < hd; d0 += 64)
          values64(out, scores + (p - k0), n, group, hd, d0, r.v + koff, stride_bytes, r.n, bf16);
        p += r.n;
        continue;
      }
#endif
      for (int64_t j = 0; j < r.n; ++j, ++p) {
        const char* v = r.v + j * stride_bytes + koff;
        for (int hh = 0; hh < group; ++hh) value_axpy(out + hh * hd, scores[hh * n + (p - k0)], v, bf16, hd);
      }
    }
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
