// Training attention in O(rows) memory: the FlashAttention-2 algorithm (Dao, 2023) on the CPU.
//
// Forward, per work item (sequence s, kv head g, query tile R of kBr rows), for each query head h
// of the group and row i of R, over the key tiles C of kBc keys up to the diagonal:
//   S_ij = scale * q_i . k_j  (j <= i),  m' = max(m_i, max_j S_ij),  P_ij = exp(S_ij - m')
//   l_i = exp(m_i - m') l_i + sum_j P_ij,  O_i = exp(m_i - m') O_i + sum_j P_ij v_j,  m_i = m'
// then o_i = O_i / l_i and lse_i = m_i + log(l_i). Each key tile is packed transposed once for the
// whole group. Inside a tile every product is a small register-blocked matrix product (mm_acc:
// S = Q K^T, O += P V, dP = dO V^T, dV += P^T dO, dK += dS^T Q, dQ += dS K), 4 rows x 16 columns
// of accumulators on AVX2, so the tile's FLOPs run at matmul speed rather than as axpys.
//
// Backward, with P_ij = exp(S_ij - lse_i) recomputed tile by tile and D_i = dO_i . o_i:
//   dP_ij = dO_i . v_j,  dS_ij = P_ij (dP_ij - D_i),
//   dv_j = sum_i P_ij dO_i,  dk_j = scale sum_i dS_ij q_i,  dq_i = scale sum_j dS_ij k_j
// in three passes that each write their rows once, with no atomics and no per-thread copies:
// D per (row, head); dK/dV with the key tile outermost (item = sequence, kv head, key tile: every
// query head of the group and every later query row is visited inside it); dQ with the query tile
// outermost (item = sequence, head, query tile). Sums run in a fixed order, so results do not
// depend on the number of threads. The dQ pass recomputes S and dP once more (about 1.4x the
// FLOPs of FlashAttention-2's backward with atomic dQ), the price of determinism in O(rows) memory.
// Compiled once per ISA path (isa_vec.h says the rules).
#include <omp.h>

#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

namespace {

constexpr int64_t kBr = 32;  // query rows per tile
constexpr int64_t kBc = 64;  // keys per tile

int64_t tiles(int64_t n, int64_t t) { return (n + t - 1) / t; }

// The sequence containing work-item-numbered tile `item` when sequence s has tiles_per[s] tiles
// (prefix sums in first[]): returns s and sets *local to the tile index within it.
int find_seq(const int64_t* first, int n_seqs, int64_t item, int64_t* local) {
  int lo = 0, hi = n_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first[mid] <= item) lo = mid;
    else hi = mid - 1;
  }
  *local = item - first[lo];
  return lo;
}

// Transposes rows [c0, c0 + nc) of head `head` (width d) into t[d][kBc]; columns nc..kBc-1 are 0.
void pack_t(const float* base, int64_t stride, int64_t head_off, int64_t c0, int64_t nc, int64_t d, float* t) {
  for (int64_t j = 0; j < nc; ++j) {
    const float* row = base + (c0 + j) * stride + head_off;
    for (int64_t c = 0; c < d; ++c) t[c * kBc + j] = row[c];
  }
  for (int64_t c = 0; c < d; ++c)
    for (int64_t j = nc; j < kBc; ++j) t[c * kBc + j] = 0.0f;
}

// C[M x N] += A[M x K] B[K x N], with A(i, k) = A[i * a_rs + k * a_cs] (so A may be a transposed
// view), B row-major with leading dimension ldb, C with ldc. The sum over k runs in order for every
// element, whatever the blocking.
void mm_acc(int64_t M, int64_t N, int64_t K, const float* A, int64_t a_rs, int64_t a_cs, const float* B, int64_t ldb,
            float* C, int64_t ldc) {
  int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; j + 16 <= N; j += 16) {
    int64_t i = 0;
    for (; i + 4 <= M; i += 4) {
      float* c = C + i * ldc + j;
      __m256 c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8);
      __m256 c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8);
      __m256 c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
      __m256 c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
      const float* a = A + i * a_rs;
      for (int64_t k = 0; k < K; ++k) {
        const __m256 b0 = _mm256_loadu_ps(B + k * ldb + j), b1 = _mm256_loadu_ps(B + k * ldb + j + 8);
        const float* ak = a + k * a_cs;
        __m256 x = _mm256_broadcast_ss(ak);
        c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(ak + a_rs);
        c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(ak + 2 * a_rs);
        c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(ak + 3 * a_rs);
        c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
      }
      _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
      _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
      _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
      _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    }
    for (; i < M; ++i) {
      float* c = C + i * ldc + j;
      __m256 c0 = _mm256_loadu_ps(c), c1 = _mm256_loadu_ps(c + 8);
      for (int64_t k = 0; k < K; ++k) {
        const __m256 x = _mm256_broadcast_ss(A + i * a_rs + k * a_cs);
        c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(B + k * ldb + j), c0);
        c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(B + k * ldb + j + 8), c1);
      }
      _mm256_storeu_ps(c, c0), _mm256_storeu_ps(c + 8, c1);
    }
  }
  for (; j + 8 <= N; j += 8)
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + i * ldc + j;
      __m256 c0 = _mm256_loadu_ps(c);
      for (int64_t k = 0; k < K; ++k)
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(A + i * a_rs + k * a_cs), _mm256_loadu_ps(B + k * ldb + j), c0);
      _mm256_storeu_ps(c, c0);
    }
#endif
  if (j < N)  // columns left over (all of them on the baseline path, which the compiler vectorises)
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + i * ldc;
      for (int64_t k = 0; k < K; ++k) {
        const float x = A[i * a_rs + k * a_cs];
        const float* bk = B + k * ldb;
        for (int64_t jj = j; jj < N; ++jj) c[jj] += x * bk[jj];
      }
    }
}

void zero(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.0f;
}

// S [nr x kBc] = scale * Q[rows] Kt, for the query rows at q (stride q_stride).
void tile_scores(const float* q, int64_t q_stride, int64_t nr, const float* kt, int64_t dk, float scale, float* s) {
  zero(s, nr * kBc);
  mm_acc(nr, kBc, dk, q, q_stride, 1, kt, kBc, s, kBc);
  for (int64_t i = 0; i < nr * kBc; ++i) s[i] *= scale;
}

// The backward's dS = P (dP - D) * scale, in place of dp, for the tile's rows (P already masked).
// Rows: query rows i0 .. i0 + nr of head h; D per (row, head) in delta.
void tile_ds(const float* p, float* dp, int64_t nr, const float* delta, int64_t row0, int64_t H, int64_t h, float scale) {
  for (int64_t r = 0; r < nr; ++r) {
    const float di = delta[(row0 + r) * H + h];
    for (int64_t j = 0; j < kBc; ++j) dp[r * kBc + j] = p[r * kBc + j] * (dp[r * kBc + j] - di) * scale;
  }
}

// The keys [lo, lim) of a tile that query row i sees: causal (key c0 + j <= i, j < nc) and, with
// a sliding window W > 0, key c0 + j > i - W.
inline void visible(int64_t i, int64_t c0, int64_t nc, int64_t window, int64_t* lo, int64_t* lim) {
  *lim = min_i64(nc, i - c0 + 1);
  *lo = window > 0 && i - window + 1 - c0 > 0 ? i - window + 1 - c0 : 0;
  if (*lo > *lim) *lo = *lim > 0 ? *lim : 0;
}

// First key tile a query tile starting at row r0 needs (0 without a window).
inline int64_t first_key_tile(int64_t r0, int64_t window) {
  return window > 0 && r0 - window + 1 > 0 ? (r0 - window + 1) / kBc * kBc : 0;
}

// P = exp(S - lse_i) over the visible part of the tile (visible()), 0 elsewhere.
void tile_probs(float* s, int64_t nr, int64_t i0, int64_t c0, int64_t nc, int64_t window, const float* lse, int64_t row0,
                int64_t H, int64_t h) {
  for (int64_t r = 0; r < nr; ++r) {
    int64_t lo, lim;
    visible(i0 + r, c0, nc, window, &lo, &lim);
    float* p = s + r * kBc;
    for (int64_t j = 0; j < lo; ++j) p[j] = 0.0f;
    if (lim > lo) exp_shifted(p + lo, lim - lo, lse[(row0 + r) * H + h]);
    for (int64_t j = lim < lo ? lo : lim; j < kBc; ++j) p[j] = 0.0f;
  }
}

// Tiles of each sequence, as prefix sums (first[n_seqs] = total), in caller scratch.
int64_t tile_prefix(const FlashAttnArgs& a, int64_t tile, int64_t* first) {
  first[0] = 0;
  for (int s = 0; s < a.n_seqs; ++s) first[s + 1] = first[s] + tiles(a.seq_start[s + 1] - a.seq_start[s], tile);
  return first[a.n_seqs];
}

// The online softmax of one query tile and key tile: for each row r (query i0 + r), the visible
// scores s[r][lo, lim) become P = exp(S - m'), m and l are updated, and alpha[r] = exp(m - m')
// rescales the row's accumulator (1 for a row that sees no key of the tile).
void online_softmax(float* s, int64_t nr, int64_t i0, int64_t c0, int64_t nc, int64_t window, float* m, float* l,
                    float* alpha) {
  for (int64_t r = 0; r < nr; ++r) {
    int64_t lo, lim;
    visible(i0 + r, c0, nc, window, &lo, &lim);
    float* p = s + r * kBc;
    if (lim <= lo) {
      zero(p, kBc);
      alpha[r] = 1.0f;
      continue;
    }
    float mx = m[r];
    for (int64_t j = lo; j < lim; ++j) mx = p[j] > mx ? p[j] : mx;
    alpha[r] = expf(m[r] - mx);  // 0 on the first tile (m = -inf)
    for (int64_t j = 0; j < lo; ++j) p[j] = 0.0f;
    exp_shifted(p + lo, lim - lo, mx);
    for (int64_t j = lim; j < kBc; ++j) p[j] = 0.0f;
    float sum = 0.0f;
    for (int64_t j = lo; j < lim; ++j) sum += p[j];
    l[r] = alpha[r] * l[r] + sum;
    m[r] = mx;
  }
}

}  // namespace

void flash_attention_fwd(const FlashAttnArgs& a) {
  const int64_t group = a.n_heads / a.n_kv_heads, dk = a.dk, dv = a.dv;
  int64_t* first = static_cast<int64_t*>(thread_scratch(sizeof(int64_t) * size_t(a.n_seqs + 1), 3));
  const int64_t n_items = tile_prefix(a, kBr, first) * a.n_kv_heads;
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(dynamic)
  for (int64_t it = n_items - 1; it >= 0; --it) {  // late (long) query tiles first
    int64_t rt;
    const int s = find_seq(first, a.n_seqs, it / a.n_kv_heads, &rt);
    const int64_t g = it % a.n_kv_heads;
    const int64_t b = a.seq_start[s], n = a.seq_start[s + 1] - b;
    const int64_t r0 = rt * kBr, nr = min_i64(kBr, n - r0);
    float* kt = static_cast<float*>(thread_scratch(sizeof(float) * size_t(dk * kBc), 0));
    float* st = static_cast<float*>(thread_scratch(sizeof(float) * size_t(group * kBr * (dv + 2) + kBr * (kBc + 1)), 1));
    float* m = st;                          // [group][kBr]
    float* l = m + group * kBr;             // [group][kBr]
    float* acc = l + group * kBr;           // [group][kBr][dv]
    float* p = acc + group * kBr * dv;      // [kBr][kBc]
    float* alpha = p + kBr * kBc;           // [kBr]
    for (int64_t i = 0; i < group * kBr; ++i) m[i] = -INFINITY, l[i] = 0.0f;
    zero(acc, group * kBr * dv);
    for (int64_t c0 = first_key_tile(r0, a.window); c0 < r0 + nr; c0 += kBc) {
      const int64_t nc = min_i64(kBc, n - c0);
      pack_t(a.k + b * a.k_stride, a.k_stride, g * dk, c0, nc, dk, kt);
      for (int64_t hh = 0; hh < group; ++hh) {
        const int64_t h = g * group + hh;
        tile_scores(a.q + (b + r0) * a.q_stride + h * dk, a.q_stride, nr, kt, dk, a.scale, p);
        online_softmax(p, nr, r0, c0, nc, a.window, m + hh * kBr, l + hh * kBr, alpha);
        float* o = acc + hh * kBr * dv;
        for (int64_t r = 0; r < nr; ++r)
          if (alpha[r] != 1.0f)
            for (int64_t c = 0; c < dv; ++c) o[r * dv + c] *= alpha[r];
        mm_acc(nr, dv, nc, p, kBc, 1, a.v + (b + c0) * a.v_stride + g * dv, a.v_stride, o, dv);
      }
    }
    for (int64_t hh = 0; hh < group; ++hh) {
      const int64_t h = g * group + hh;
      for (int64_t r = 0; r < nr; ++r) {
        const float li = l[hh * kBr + r], inv = 1.0f / li;
        float* o = a.o + (b + r0 + r) * a.o_stride + h * dv;
        const float* src = acc + (hh * kBr + r) * dv;
        for (int64_t c = 0; c < dv; ++c) o[c] = src[c] * inv;
        if (a.lse) a.lse[(b + r0 + r) * a.n_heads + h] = m[hh * kBr + r] + logf(li);
      }
    }
  }
}

void flash_attention_bwd(const FlashAttnBwdArgs& ba) {
  const FlashAttnArgs& a = ba.fwd;
  const int64_t group = a.n_heads / a.n_kv_heads, dk = a.dk, dv = a.dv, H = a.n_heads;
  const int64_t rows = a.seq_start[a.n_seqs];
  const int nt = cpu_threads();
  // 1. D = rowsum(dO * O) per (row, head).
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t h = 0; h < H; ++h)
      ba.delta[t * H + h] = dot(ba.dout + t * a.o_stride + h * dv, a.o + t * a.o_stride + h * dv, dv);

  int64_t* first = static_cast<int64_t*>(thread_scratch(sizeof(int64_t) * size_t(a.n_seqs + 1), 3));
  // 2. dK, dV: key tile outermost; query rows from the tile's first key on, kBr at a time.
  const int64_t n_kv_items = tile_prefix(a, kBc, first) * a.n_kv_heads;
#pragma omp parallel for num_threads(nt) schedule(dynamic)
  for (int64_t it = 0; it < n_kv_items; ++it) {  // early key tiles (the most queries) first
    int64_t ct;
    const int s = find_seq(first, a.n_seqs, it / a.n_kv_heads, &ct);
    const int64_t g = it % a.n_kv_heads;
    const int64_t b = a.seq_start[s], n = a.seq_start[s + 1] - b;
    const int64_t c0 = ct * kBc, nc = min_i64(kBc, n - c0);
    float* kt = static_cast<float*>(thread_scratch(sizeof(float) * size_t((dk + dv) * kBc), 0));
    float* vt = kt + dk * kBc;
    float* gacc = static_cast<float*>(thread_scratch(sizeof(float) * size_t(kBc * (dk + dv) + 2 * kBr * kBc), 1));
    float* gk = gacc;             // [kBc][dk]
    float* gv = gk + kBc * dk;    // [kBc][dv]
    float* p = gv + kBc * dv;     // [kBr][kBc]
    float* dp = p + kBr * kBc;    // [kBr][kBc]
    pack_t(a.k + b * a.k_stride, a.k_stride, g * dk, c0, nc, dk, kt);
    pack_t(a.v + b * a.v_stride, a.v_stride, g * dv, c0, nc, dv, vt);
    zero(gacc, kBc * (dk + dv));
    for (int64_t hh = 0; hh < group; ++hh) {
      const int64_t h = g * group + hh;
      // queries from the tile's first key on; with a window only those that still see its last key
      const int64_t i_end = a.window > 0 ? min_i64(n, c0 + nc + a.window - 1) : n;
      for (int64_t i0 = c0; i0 < i_end; i0 += kBr) {
        const int64_t nr = min_i64(kBr, n - i0);
        const float* q = a.q + (b + i0) * a.q_stride + h * dk;
        const float* go = ba.dout + (b + i0) * a.o_stride + h * dv;
        tile_scores(q, a.q_stride, nr, kt, dk, a.scale, p);
        tile_probs(p, nr, i0, c0, nc, a.window, a.lse, b + i0, H, h);
        zero(dp, nr * kBc);
        mm_acc(nr, kBc, dv, go, a.o_stride, 1, vt, kBc, dp, kBc);
        tile_ds(p, dp, nr, ba.delta, b + i0, H, h, a.scale);
        mm_acc(nc, dv, nr, p, 1, kBc, go, a.o_stride, gv, dv);   // dV += P^T dO
        mm_acc(nc, dk, nr, dp, 1, kBc, q, a.q_stride, gk, dk);   // dK += dS^T Q
      }
    }
    for (int64_t j = 0; j < nc; ++j) {
      float* dkr = ba.dk + (b + c0 + j) * a.k_stride + g * dk;
      float* dvr = ba.dv + (b + c0 + j) * a.v_stride + g * dv;
      for (int64_t c = 0; c < dk; ++c) dkr[c] = gk[j * dk + c];
      for (int64_t c = 0; c < dv; ++c) dvr[c] = gv[j * dv + c];
    }
  }

  // 3. dQ: query tile outermost.
  const int64_t n_q_items = tile_prefix(a, kBr, first) * H;
#pragma omp parallel for num_threads(nt) schedule(dynamic)
  for (int64_t it = n_q_items - 1; it >= 0; --it) {
    int64_t rt;
    const int s = find_seq(first, a.n_seqs, it / H, &rt);
    const int64_t h = it % H, g = h / group;
    const int64_t b = a.seq_start[s], n = a.seq_start[s + 1] - b;
    const int64_t r0 = rt * kBr, nr = min_i64(kBr, n - r0);
    float* kt = static_cast<float*>(thread_scratch(sizeof(float) * size_t((dk + dv) * kBc), 0));
    float* vt = kt + dk * kBc;
    float* w = static_cast<float*>(thread_scratch(sizeof(float) * size_t(kBr * dk + 2 * kBr * kBc), 1));
    float* gq = w;               // [kBr][dk]
    float* p = gq + kBr * dk;    // [kBr][kBc]
    float* dp = p + kBr * kBc;   // [kBr][kBc]
    const float* q = a.q + (b + r0) * a.q_stride + h * dk;
    const float* go = ba.dout + (b + r0) * a.o_stride + h * dv;
    zero(gq, kBr * dk);
    for (int64_t c0 = first_key_tile(r0, a.window); c0 < r0 + nr; c0 += kBc) {
      const int64_t nc = min_i64(kBc, n - c0);
      pack_t(a.k + b * a.k_stride, a.k_stride, g * dk, c0, nc, dk, kt);
      pack_t(a.v + b * a.v_stride, a.v_stride, g * dv, c0, nc, dv, vt);
      tile_scores(q, a.q_stride, nr, kt, dk, a.scale, p);
      tile_probs(p, nr, r0, c0, nc, a.window, a.lse, b + r0, H, h);
      zero(dp, nr * kBc);
      mm_acc(nr, kBc, dv, go, a.o_stride, 1, vt, kBc, dp, kBc);
      tile_ds(p, dp, nr, ba.delta, b + r0, H, h, a.scale);
      mm_acc(nr, dk, nc, dp, kBc, 1, a.k + (b + c0) * a.k_stride + g * dk, a.k_stride, gq, dk);  // dQ += dS K
    }
    for (int64_t r = 0; r < nr; ++r) {
      float* dqr = ba.dq + (b + r0 + r) * a.q_stride + h * dk;
      for (int64_t c = 0; c < dk; ++c) dqr[c] = gq[r * dk + c];
    }
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
