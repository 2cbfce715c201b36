// Training attention in O(rows) memory: the FlashAttention-2 algorithm (Dao, 2023) on the CPU.
//
// Forward, per work item (sequence s, kv head g, query tile R of kBr rows), for each query head h
// of the group and row i of R, over the key tiles C of kBc keys up to the diagonal:
//   S_ij = scale * q_i . k_j  (j <= i),  m' = max(m_i, max_j S_ij),  P_ij = exp(S_ij - m')
//   l_i = exp(m_i - m') l_i + sum_j P_ij,  O_i = exp(m_i - m') O_i + sum_j P_ij v_j,  m_i = m'
// then o_i = O_i / l_i and lse_i = m_i + log(l_i). Each key tile is packed transposed once for the
// whole group, so scores are axpys over kBc keys.
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
constexpr int64_t kBc = 64;  // keys per tile: one score row is 8 AVX2 / 4 AVX-512 registers

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

// Transposes rows [c0, c0 + nc) of head `head` (width d) into t[d][kBc].
void pack_t(const float* base, int64_t stride, int64_t head_off, int64_t c0, int64_t nc, int64_t d, float* t) {
  for (int64_t j = 0; j < nc; ++j) {
    const float* row = base + (c0 + j) * stride + head_off;
    for (int64_t c = 0; c < d; ++c) t[c * kBc + j] = row[c];
  }
}

// s[j] = scale * q . k_j for j < lim, from the packed kt[d][kBc].
void scores(const float* q, const float* kt, int64_t d, int64_t lim, float scale, float* s) {
  for (int64_t j = 0; j < lim; ++j) s[j] = 0.0f;
  for (int64_t c = 0; c < d; ++c) axpy(s, q[c], kt + c * kBc, lim);
  for (int64_t j = 0; j < lim; ++j) s[j] *= scale;
}

// Tiles of each sequence, as prefix sums (first[n_seqs] = total), in caller scratch.
int64_t tile_prefix(const FlashAttnArgs& a, int64_t tile, int64_t* first) {
  first[0] = 0;
  for (int s = 0; s < a.n_seqs; ++s) first[s + 1] = first[s] + tiles(a.seq_start[s + 1] - a.seq_start[s], tile);
  return first[a.n_seqs];
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
    // scratch: kt [dk][kBc], vrows (pointers not needed: v rows read in place), state per head/row
    float* kt = static_cast<float*>(thread_scratch(sizeof(float) * size_t(dk * kBc), 0));
    float* st = static_cast<float*>(thread_scratch(sizeof(float) * size_t(group * kBr * (dv + 2) + kBc), 1));
    float* m = st;                          // [group][kBr]
    float* l = m + group * kBr;             // [group][kBr]
    float* acc = l + group * kBr;           // [group][kBr][dv]
    float* p = acc + group * kBr * dv;      // [kBc]
    for (int64_t i = 0; i < group * kBr; ++i) m[i] = -INFINITY, l[i] = 0.0f;
    for (int64_t i = 0; i < group * kBr * dv; ++i) acc[i] = 0.0f;
    for (int64_t c0 = 0; c0 < r0 + nr; c0 += kBc) {
      const int64_t nc = min_i64(kBc, n - c0);
      pack_t(a.k + b * a.k_stride, a.k_stride, g * dk, c0, nc, dk, kt);
      for (int64_t hh = 0; hh < group; ++hh) {
        const int64_t h = g * group + hh;
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t i = r0 + r;
          if (i < c0) continue;
          const int64_t lim = min_i64(nc, i - c0 + 1);
          scores(a.q + (b + i) * a.q_stride + h * dk, kt, dk, lim, a.scale, p);
          float mx = m[hh * kBr + r];
          for (int64_t j = 0; j < lim; ++j) mx = p[j] > mx ? p[j] : mx;
          const float alpha = expf(m[hh * kBr + r] - mx);  // 0 on the first tile (m = -inf)
          exp_shifted(p, lim, mx);
          float sum = 0.0f;
          for (int64_t j = 0; j < lim; ++j) sum += p[j];
          l[hh * kBr + r] = alpha * l[hh * kBr + r] + sum;
          m[hh * kBr + r] = mx;
          float* o = acc + (hh * kBr + r) * dv;
          for (int64_t c = 0; c < dv; ++c) o[c] *= alpha;
          for (int64_t j = 0; j < lim; ++j) axpy(o, p[j], a.v + (b + c0 + j) * a.v_stride + g * dv, dv);
        }
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
  // 2. dK, dV: key tile outermost.
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
    float* gacc = static_cast<float*>(thread_scratch(sizeof(float) * size_t(kBc * (dk + dv) + 2 * kBc), 1));
    float* gk = gacc;             // [kBc][dk]
    float* gv = gk + kBc * dk;    // [kBc][dv]
    float* p = gv + kBc * dv;     // [kBc]
    float* dp = p + kBc;          // [kBc]
    pack_t(a.k + b * a.k_stride, a.k_stride, g * dk, c0, nc, dk, kt);
    pack_t(a.v + b * a.v_stride, a.v_stride, g * dv, c0, nc, dv, vt);
    for (int64_t i = 0; i < kBc * (dk + dv); ++i) gacc[i] = 0.0f;
    for (int64_t hh = 0; hh < group; ++hh) {
      const int64_t h = g * group + hh;
      for (int64_t i = c0; i < n; ++i) {
        const int64_t lim = min_i64(nc, i - c0 + 1);
        const float* q = a.q + (b + i) * a.q_stride + h * dk;
        const float* go = ba.dout + (b + i) * a.o_stride + h * dv;
        scores(q, kt, dk, lim, a.scale, p);
        exp_shifted(p, lim, a.lse[(b + i) * H + h]);
        for (int64_t j = 0; j < lim; ++j) dp[j] = 0.0f;
        for (int64_t c = 0; c < dv; ++c) axpy(dp, go[c], vt + c * kBc, lim);
        const float di = ba.delta[(b + i) * H + h];
        for (int64_t j = 0; j < lim; ++j) {
          axpy(gv + j * dv, p[j], go, dv);
          axpy(gk + j * dk, a.scale * (p[j] * (dp[j] - di)), q, dk);
        }
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
    float* w = static_cast<float*>(thread_scratch(sizeof(float) * size_t(kBr * dk + 2 * kBc), 1));
    float* gq = w;               // [kBr][dk]
    float* p = gq + kBr * dk;    // [kBc]
    float* dp = p + kBc;         // [kBc]
    for (int64_t i = 0; i < kBr * dk; ++i) gq[i] = 0.0f;
    for (int64_t c0 = 0; c0 < r0 + nr; c0 += kBc) {
      const int64_t nc = min_i64(kBc, n - c0);
      pack_t(a.k + b * a.k_stride, a.k_stride, g * dk, c0, nc, dk, kt);
      pack_t(a.v + b * a.v_stride, a.v_stride, g * dv, c0, nc, dv, vt);
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t i = r0 + r;
        if (i < c0) continue;
        const int64_t lim = min_i64(nc, i - c0 + 1);
        const float* go = ba.dout + (b + i) * a.o_stride + h * dv;
        scores(a.q + (b + i) * a.q_stride + h * dk, kt, dk, lim, a.scale, p);
        exp_shifted(p, lim, a.lse[(b + i) * H + h]);
        for (int64_t j = 0; j < lim; ++j) dp[j] = 0.0f;
        for (int64_t c = 0; c < dv; ++c) axpy(dp, go[c], vt + c * kBc, lim);
        const float di = ba.delta[(b + i) * H + h];
        for (int64_t j = 0; j < lim; ++j)
          axpy(gq + r * dk, a.scale * (p[j] * (dp[j] - di)), a.k + (b + c0 + j) * a.k_stride + g * dk, dk);
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      float* dqr = ba.dq + (b + r0 + r) * a.q_stride + h * dk;
      for (int64_t c = 0; c < dk; ++c) dqr[c] = gq[r * dk + c];
    }
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
