// Causal grouped-query attention of each sequence's queries over its own KV history.
// The history of a query row is cut into parts of kPart positions (fixed by position, so a row's
// result does not depend on how rows and parts are spread over threads: decode and prefill agree
// bit for bit). A part is attended for every head of the row at once: its key and value rows are
// read whole (all KV heads), once, in chunks that fit L1 (bf16 rows widened once per chunk, not
// once per query head), and the part keeps per head its max m, exp-sum l and output O (softmax
// over the part's keys). The parts of a row are then merged in part order:
//   out = sum_p exp(m_p - M) l_p O_p / sum_p exp(m_p - M) l_p.
// Prefill spreads rows over the threads; decode (fewer rows than threads) spreads parts, so that
// one sequence's long history is read by every thread (flash-decoding).
// On AVX2 the scores of 8 keys come from 8 independent FMA chains and one transposing sum per
// head, and the weighted sum keeps each head's output in registers across a chunk of value rows.
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

double scaled_exp_sum(const float* z, int64_t n, float scale, float shift, float* out, double* dot);
float row_max(const float* z, int64_t n);

namespace {

// Key/value rows of one sequence, in runs of consecutive positions that are contiguous in memory:
// the whole history (contiguous layout) or one block (paged layout).
struct KvRun {
  const char* k;
  const char* v;
  int64_t n;
};

// Positions per part of a row's history (see the top of the file).
constexpr int64_t kPart = 256;
// f32 values of a chunk of KV rows (all heads), widened once and kept in L1.
constexpr int64_t kChunkFloats = 4096;

// KV rows per chunk for rows of kvd values: a multiple of 8 in [8, 32], kChunkFloats when it can.
static inline int64_t chunk_rows(int64_t kvd) {
  const int64_t r = kChunkFloats / kvd / 8 * 8;
  return r < 8 ? 8 : r > 32 ? 32 : r;
}

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
// The horizontal sums of a[0..8) as one vector: lane j = sum of a[j]'s lanes.
static inline __m256 hsum8(const __m256* a) {
  const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// scores[hh][j] = scale * q_hh . key j for 8 keys at k (rows `stride` bytes apart) and the group's
// heads: 8 independent FMA chains per head, one transposing sum for the 8 scores (hd % 8 == 0;
// f32 rows).
static inline void scores8(float* scores, int64_t ld, const float* q, int group, int hd, const char* k,
                           int64_t stride, float scale) {
  for (int hh = 0; hh < group; ++hh) {
    __m256 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    const float* qh = q + hh * hd;
    for (int d = 0; d < hd; d += 8) {
      const __m256 qv = _mm256_loadu_ps(qh + d);
      for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(reinterpret_cast<const float*>(k + j * stride) + d), acc[j]);
    }
    _mm256_storeu_ps(scores + hh * ld, _mm256_mul_ps(hsum8(acc), _mm256_set1_ps(scale)));
  }
}

// out[hh][d0 .. d0 + 8 L) += sum over n f32 value rows of w[hh][p] * v_p, kept in registers over the
// rows. L is a template parameter so that the L vectors stay in registers (a run-time count made
// the compiler test it at every row).
template <int L>
static inline void values_tile(float* out, const float* w, int64_t ld, int group, int hd, int d0, const char* v,
                               int64_t stride, int64_t n) {
  for (int hh = 0; hh < group; ++hh) {
    __m256 o[L];
    for (int c = 0; c < L; ++c) o[c] = _mm256_loadu_ps(out + hh * hd + d0 + 8 * c);
    const float* wh = w + hh * ld;
    for (int64_t p = 0; p < n; ++p) {
      const __m256 wp = _mm256_set1_ps(wh[p]);
      const float* vp = reinterpret_cast<const float*>(v + p * stride) + d0;
      for (int c = 0; c < L; ++c) o[c] = _mm256_fmadd_ps(wp, _mm256_loadu_ps(vp + 8 * c), o[c]);
    }
    for (int c = 0; c < L; ++c) _mm256_storeu_ps(out + hh * hd + d0 + 8 * c, o[c]);
  }
}

// Prefetch of the KV rows a part reads, kAheadRows ahead: the part reads its key rows, then its
// value rows; x counts through both (x < len: key row pa + x, else value row pa + x - len).
// Paged runs are a few KB, too short for the hardware prefetcher to ramp up in. (GCC deems a
// function whose only effect is a prefetch free of side effects and drops its calls: the empty
// volatile asm keeps them.)
constexpr int64_t kAheadRows = 48;
static inline void prefetch_rows(const AttnArgs& a, const AttnSeq& sq, int64_t pa, int64_t len, int64_t x, int64_t count,
                                 int64_t elem) {
  __asm__ volatile("");
  const int64_t row_bytes = int64_t(a.n_kv_heads) * a.head_dim * elem, stride = a.kv_stride * elem;
  for (int64_t e = min_i64(x + count, 2 * len); x < e;) {
    const bool values = x >= len;
    const int64_t p = pa + (values ? x - len : x);
    const KvRun r = kv_run(a, sq, p, pa + len, elem);
    const int64_t n = min_i64(r.n, (values ? 2 * len : len) - x);
    const int64_t m = min_i64(n, e - x);
    const char* base = values ? r.v : r.k;
    for (int64_t j = 0; j < m; ++j)
      for (int64_t b = 0; b < row_bytes; b += 64) _mm_prefetch(base + j * stride + b, _MM_HINT_T0);
    x += m;
  }
}

// Rows of a KV chunk as f32: bf16 rows (w values each) are widened once into `tile` (c rows of w,
// packed), so that every head reads them as f32 (widening at each use cost more than the FMAs);
// f32 rows are used where they are. Returns the rows; *stride becomes their distance in bytes.
static inline const char* f32_rows(const char* rows, int64_t* stride, int64_t c, int64_t w, bool bf16, float* tile) {
  if (!bf16) return rows;
  for (int64_t r = 0; r < c; ++r) {
    const uint16_t* src = reinterpret_cast<const uint16_t*>(rows + r * *stride);
    for (int64_t d = 0; d < w; d += 8) _mm256_storeu_ps(tile + r * w + d, load_bf16x8(src + d));
  }
  *stride = w * 4;
  return reinterpret_cast<const char*>(tile);
}

// The same for output columns d0 .. min(d0 + 64, hd) (hd % 8 == 0).
static inline void values64(float* out, const float* w, int64_t ld, int group, int hd, int d0, const char* v,
                            int64_t stride, int64_t n) {
  switch ((hd - d0 < 64 ? hd - d0 : 64) / 8) {
    case 8: values_tile<8>(out, w, ld, group, hd, d0, v, stride, n); break;
    case 7: values_tile<7>(out, w, ld, group, hd, d0, v, stride, n); break;
    case 6: values_tile<6>(out, w, ld, group, hd, d0, v, stride, n); break;
    case 5: values_tile<5>(out, w, ld, group, hd, d0, v, stride, n); break;
    case 4: values_tile<4>(out, w, ld, group, hd, d0, v, stride, n); break;
    case 3: values_tile<3>(out, w, ld, group, hd, d0, v, stride, n); break;
    case 2: values_tile<2>(out, w, ld, group, hd, d0, v, stride, n); break;
    default: values_tile<1>(out, w, ld, group, hd, d0, v, stride, n); break;
  }
}
#endif

// One query row: its sequence, its token's index there, and the keys it sees, [k0, n_kv).
struct QRow {
  const AttnSeq* sq;
  int64_t t, k0, n_kv;
};

// The first part index of a row and its number of parts.
static inline int64_t first_part(const QRow& r) { return r.k0 / kPart; }
static inline int64_t n_parts(const QRow& r) { return (r.n_kv - 1) / kPart - first_part(r) + 1; }

// Scratch of one thread for attend_part: scores [n_heads][kPart] and a widened chunk.
struct PartScratch {
  float* scores;
  float* tile;
};

// Part `part` of row r: for every head h, m[h] = max score, l[h] = sum exp(score - m[h]) and
// O[h] = sum softmax(score) v over the part's keys, written to res = [O: n_heads x hd]
// [m: n_heads][l: n_heads].
void attend_part(const AttnArgs& a, const QRow& r, int64_t part, float* res, PartScratch ws) {
  const AttnSeq& sq = *r.sq;
  const int group = a.n_heads / a.n_kv_heads, hd = a.head_dim, nh = a.n_heads;
  const bool bf16 = a.kv_dtype == DType::BF16;
  const int64_t elem = bf16 ? 2 : 4, stride_bytes = a.kv_stride * elem;
  const int64_t pa = part * kPart > r.k0 ? part * kPart : r.k0, pb = min_i64((part + 1) * kPart, r.n_kv), len = pb - pa;
  const float* q = sq.q + r.t * a.q_stride;
  float* sc = ws.scores;
  float* out = res;
  float* m = res + int64_t(nh) * hd;
  float* l = m + nh;
#if defined(__AVX2__) && defined(__FMA__)
  const bool vec = hd % 8 == 0;
  const int64_t kvd = int64_t(a.n_kv_heads) * hd, chunk = chunk_rows(kvd);
  prefetch_rows(a, sq, pa, len, 0, kAheadRows, elem);
#endif
  for (int64_t p = pa; p < pb;) {  // scores
    KvRun run = kv_run(a, sq, p, pb, elem);
#if defined(__AVX2__) && defined(__FMA__)
    if (vec) {
      for (int64_t j = 0; j < run.n;) {
        const int64_t c = min_i64(chunk, run.n - j);
        prefetch_rows(a, sq, pa, len, p - pa + kAheadRows, c, elem);
        int64_t st = stride_bytes;
        const char* k = f32_rows(run.k + j * stride_bytes, &st, c, kvd, bf16, ws.tile);
        for (int g = 0; g < a.n_kv_heads; ++g) {
          const float* qg = q + int64_t(g) * group * hd;
          const char* kg = k + int64_t(g) * hd * 4;
          float* sg = sc + int64_t(g) * group * kPart + (p - pa);
          int64_t i = 0;
          for (; i + 8 <= c; i += 8) scores8(sg + i, kPart, qg, group, hd, kg + i * st, st, a.scale);
          for (; i < c; ++i)
            for (int hh = 0; hh < group; ++hh)
              sg[hh * kPart + i] = dot(qg + hh * hd, reinterpret_cast<const float*>(kg + i * st), hd) * a.scale;
        }
        j += c, p += c;
      }
      continue;
    }
#endif
    for (int64_t j = 0; j < run.n; ++j, ++p)
      for (int h = 0; h < nh; ++h)
        sc[h * kPart + (p - pa)] = key_dot(q + int64_t(h) * hd, run.k + j * stride_bytes + int64_t(h / group) * hd * elem, bf16, hd) * a.scale;
  }
  for (int h = 0; h < nh; ++h) {  // the part's softmax
    float* sh = sc + int64_t(h) * kPart;
    m[h] = row_max(sh, len);
    const double sum = scaled_exp_sum(sh, len, 1.0f, m[h], sh, nullptr);
    const float inv = float(1.0 / sum);
    for (int64_t i = 0; i < len; ++i) sh[i] *= inv;
    l[h] = float(sum);
    for (int i = 0; i < hd; ++i) out[h * hd + i] = 0.0f;
  }
  for (int64_t p = pa; p < pb;) {  // weighted values
    KvRun run = kv_run(a, sq, p, pb, elem);
#if defined(__AVX2__) && defined(__FMA__)
    if (vec) {
      for (int64_t j = 0; j < run.n;) {
        const int64_t c = min_i64(chunk, run.n - j);
        prefetch_rows(a, sq, pa, len, len + p - pa + kAheadRows, c, elem);
        int64_t st = stride_bytes;
        const char* v = f32_rows(run.v + j * stride_bytes, &st, c, kvd, bf16, ws.tile);
        for (int g = 0; g < a.n_kv_heads; ++g)
          for (int d0 = 0; d0 < hd; d0 += 64)
            values64(out + int64_t(g) * group * hd, sc + int64_t(g) * group * kPart + (p - pa), kPart, group, hd, d0,
                     v + int64_t(g) * hd * 4, st, c);
        j += c, p += c;
      }
      continue;
    }
#endif
    for (int64_t j = 0; j < run.n; ++j, ++p)
      for (int h = 0; h < nh; ++h)
        value_axpy(out + h * hd, sc[h * kPart + (p - pa)], run.v + j * stride_bytes + int64_t(h / group) * hd * elem, bf16, hd);
  }
}

// out[h] = sum_p exp(m_p - M) l_p O_p / sum_p exp(m_p - M) l_p over the np part results at res
// (each res_stride floats, laid out as attend_part writes them), in part order. One part: out = O.
void merge_parts(const AttnArgs& a, const float* res, int64_t np, int64_t res_stride, float* out) {
  const int hd = a.head_dim, nh = a.n_heads;
  for (int h = 0; h < nh; ++h) {
    const float* m = res + int64_t(nh) * hd + h;  // m of part p at m[p * res_stride], l at m[... + nh]
    float mx = m[0];
    for (int64_t p = 1; p < np; ++p) mx = fmaxf(mx, m[p * res_stride]);
    double den = 0;
    for (int64_t p = 0; p < np; ++p) den += double(expf(m[p * res_stride] - mx)) * m[p * res_stride + nh];
    float* o = out + int64_t(h) * hd;
    for (int i = 0; i < hd; ++i) o[i] = 0.0f;
    for (int64_t p = 0; p < np; ++p)
      axpy(o, float(double(expf(m[p * res_stride] - mx)) * m[p * res_stride + nh] / den), res + p * res_stride + int64_t(h) * hd, hd);
  }
}

}  // namespace

void attention(const AttnArgs& a) {
  // Flatten (seq, token) pairs so threads balance across sequences of different lengths:
  // first[s] is the index of sequence s's first token among all queries; for decode, part0[i]
  // is the index of query row i's first part among all parts (one scratch buffer for both).
  int64_t n_rows = 0;
  for (int s = 0; s < a.n_seqs; ++s) n_rows += a.seqs[s].n_q;
  int64_t* first = static_cast<int64_t*>(thread_scratch(sizeof(int64_t) * size_t(a.n_seqs + 1 + n_rows + 1), 1));
  int64_t* part0 = first + a.n_seqs + 1;
  first[0] = 0;
  for (int s = 0; s < a.n_seqs; ++s) first[s + 1] = first[s] + a.seqs[s].n_q;
  const int nt = cpu_threads(), nh = a.n_heads, hd = a.head_dim;
  const int64_t res_stride = int64_t(nh) * (hd + 2);
  auto row_at = [&](int64_t i) {
    int s = 0;
    while (first[s + 1] <= i) ++s;
    const AttnSeq& sq = a.seqs[s];
    const int64_t t = i - first[s], n_kv = sq.q_pos0 + t + 1;
    return QRow{&sq, t, a.window > 0 && n_kv > a.window ? n_kv - a.window : 0, n_kv};
  };
  const int64_t kvd = int64_t(a.n_kv_heads) * hd;
  auto scratch = [&] {
    return PartScratch{static_cast<float*>(thread_scratch(sizeof(float) * size_t(nh * kPart), 0)),
                       static_cast<float*>(thread_scratch(sizeof(float) * size_t(chunk_rows(kvd) * kvd), 2))};
  };

  if (n_rows >= nt) {  // prefill: rows over the threads, each row's parts in turn
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t i = 0; i < n_rows; ++i) {
      const QRow r = row_at(i);
      const PartScratch ws = scratch();
      const int64_t np = n_parts(r);
      float* res = static_cast<float*>(thread_scratch(sizeof(float) * size_t(np * res_stride), 3));
      for (int64_t p = 0; p < np; ++p) attend_part(a, r, first_part(r) + p, res + p * res_stride, ws);
      merge_parts(a, res, np, res_stride, r.sq->out + r.t * a.out_stride);
    }
    return;
  }
  // decode: every part of every row is a work item, then rows x heads are merged
  part0[0] = 0;
  for (int64_t i = 0; i < n_rows; ++i) part0[i + 1] = part0[i] + n_parts(row_at(i));
  const int64_t n_items = part0[n_rows];
  float* res = static_cast<float*>(thread_scratch(sizeof(float) * size_t(n_items * res_stride), 3));
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; ++it) {
      int64_t i = 0;
      while (part0[i + 1] <= it) ++i;
      const QRow r = row_at(i);
      attend_part(a, r, first_part(r) + (it - part0[i]), res + it * res_stride, scratch());
    }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n_rows; ++i) {
      const QRow r = row_at(i);
      merge_parts(a, res + part0[i] * res_stride, part0[i + 1] - part0[i], res_stride, r.sq->out + r.t * a.out_stride);
    }
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
