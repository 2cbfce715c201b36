// Training loops: the backward of RMSNorm and SwiGLU's gate (RoPE's is in elementwise.cpp), embedding scatter-add, column
// sums, the blocked sum of squares and the AdamW update. Threaded; every output element is
// written by one thread with a fixed summation order, so the results do not depend on the number
// of threads. Compiled once per ISA path (isa_vec.h says the rules).
#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

namespace {
constexpr int64_t kColBlock = 64;      // columns per work item of the column reductions
constexpr int64_t kSumBlock = 4096;    // elements per partial sum of sum_squares (backend.h)
}  // namespace

void rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd, const float* dy,
                 int64_t rows, int64_t dim) {
  const int nt = cpu_threads();
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * dim;
      const float* g = dy + r * dim;
      const float rs = rstd[r];
      double dot = 0;
      for (int64_t i = 0; i < dim; ++i) dot += double(w[i]) * g[i] * xr[i];
      const float coef = float(dot) * rs * rs * rs / float(dim);
      float* d = dx + r * dim;
      for (int64_t i = 0; i < dim; ++i) d[i] += rs * w[i] * g[i] - coef * xr[i];
    }
#pragma omp for schedule(static)
    for (int64_t c0 = 0; c0 < (dw ? dim : 0); c0 += kColBlock) {  // dw null: a frozen weight
      const int64_t nc = dim - c0 < kColBlock ? dim - c0 : kColBlock;
      float acc[kColBlock];
      for (int64_t i = 0; i < nc; ++i) acc[i] = dw[c0 + i];
      for (int64_t r = 0; r < rows; ++r) {
        const float* g = dy + r * dim + c0;
        const float* xr = x + r * dim + c0;
        const float rs = rstd[r];
        for (int64_t i = 0; i < nc; ++i) acc[i] += g[i] * xr[i] * rs;
      }
      for (int64_t i = 0; i < nc; ++i) dw[c0 + i] = acc[i];
    }
  }
}

void silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n) {
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float z = gate[i], sg = 1.0f / (1.0f + expf(-z));
    dup[i] = dout[i] * z * sg;
    dgate[i] = dout[i] * up[i] * sg * (1.0f + z * (1.0f - sg));
  }
}

void scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim) {
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c0 = 0; c0 < dim; c0 += kColBlock) {
    const int64_t nc = dim - c0 < kColBlock ? dim - c0 : kColBlock;
    for (int64_t r = 0; r < n; ++r) {
      float* dst = table + int64_t(ids[r]) * dim + c0;
      const float* s = src + r * dim + c0;
      if (weights) {
        const float w = weights[r];
        for (int64_t i = 0; i < nc; ++i) dst[i] += w * s[i];
      } else {
        for (int64_t i = 0; i < nc; ++i) dst[i] += s[i];
      }
    }
  }
}

void add_column_sums(float* out, const float* x, int64_t rows, int64_t cols) {
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c0 = 0; c0 < cols; c0 += kColBlock) {
    const int64_t nc = cols - c0 < kColBlock ? cols - c0 : kColBlock;
    float acc[kColBlock];
    for (int64_t i = 0; i < nc; ++i) acc[i] = out[c0 + i];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < nc; ++i) acc[i] += x[r * cols + c0 + i];
    for (int64_t i = 0; i < nc; ++i) out[c0 + i] = acc[i];
  }
}

namespace {
// Sum of squares of one block in double: 16 partial sums (4 x 4 lanes on AVX2; the float
// products are exact in double, so FMA or not gives the same partials), added pairwise at the end.
double block_sum_squares(const float* x, int64_t n) {
  int64_t i = 0;
  double s = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
    const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v0)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v0, 1));
    const __m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(v1)), d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(v1, 1));
    a0 = _mm256_fmadd_pd(d0, d0, a0), a1 = _mm256_fmadd_pd(d1, d1, a1);
    a2 = _mm256_fmadd_pd(d2, d2, a2), a3 = _mm256_fmadd_pd(d3, d3, a3);
  }
  const __m256d t = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
  s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
#endif
  for (; i < n; ++i) s += double(x[i]) * x[i];
  return s;
}
}  // namespace

double sum_squares_blocked(const float* x, int64_t n) {
  const int64_t nb = (n + kSumBlock - 1) / kSumBlock;
  double* part = static_cast<double*>(thread_scratch(sizeof(double) * size_t(nb > 0 ? nb : 1), 1));
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (nb > 1)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t e = (b + 1) * kSumBlock < n ? (b + 1) * kSumBlock : n;
    part[b] = block_sum_squares(x + b * kSumBlock, e - b * kSumBlock);
  }
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += part[b];
  return total;
}

void adamw_update(const AdamWArgs& a) {
  const int nt = cpu_threads();
  const float keep = 1.0f - a.lr * a.decay;
  int64_t head = 0;  // elements done by the vector loop (the same operations, 8 at a time)
#if defined(__AVX2__) && defined(__FMA__)
  head = a.n / 8 * 8;
  {
    const __m256 clip = _mm256_set1_ps(a.clip), vkeep = _mm256_set1_ps(keep), b1 = _mm256_set1_ps(a.beta1),
                 c1 = _mm256_set1_ps(1.0f - a.beta1), b2 = _mm256_set1_ps(a.beta2), c2 = _mm256_set1_ps(1.0f - a.beta2),
                 bc2 = _mm256_set1_ps(a.bc2_sqrt), eps = _mm256_set1_ps(a.eps), step = _mm256_set1_ps(a.step_size);
    const bool decay = a.decay != 0.0f;
#pragma omp parallel for num_threads(nt) schedule(static) if (a.n > 16384)
    for (int64_t i = 0; i < head; i += 8) {
      const __m256 g = _mm256_mul_ps(_mm256_loadu_ps(a.g + i), clip);
      __m256 w = _mm256_loadu_ps(a.w + i);
      if (decay) w = _mm256_mul_ps(w, vkeep);
      const __m256 m = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(a.m + i)), _mm256_mul_ps(c1, g));
      const __m256 v = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(a.v + i)), _mm256_mul_ps(_mm256_mul_ps(c2, g), g));
      const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), bc2), eps);
      _mm256_storeu_ps(a.m + i, m);
      _mm256_storeu_ps(a.v + i, v);
      _mm256_storeu_ps(a.w + i, _mm256_sub_ps(w, _mm256_div_ps(_mm256_mul_ps(step, m), denom)));
    }
  }
#endif
#pragma omp parallel for num_threads(nt) schedule(static) if (a.n - head > 16384)
  for (int64_t i = head; i < a.n; ++i) {
    const float gi = a.g[i] * a.clip;
    if (a.decay != 0.0f) a.w[i] *= keep;
    a.m[i] = a.beta1 * a.m[i] + (1.0f - a.beta1) * gi;
    a.v[i] = a.beta2 * a.v[i] + (1.0f - a.beta2) * gi * gi;
    const float denom = sqrtf(a.v[i]) / a.bc2_sqrt + a.eps;
    a.w[i] -= a.step_size * a.m[i] / denom;
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
