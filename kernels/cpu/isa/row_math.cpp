// Softmax statistics over rows: AVX2/FMA exp (the Cephes polynomial of avx_mathfun) on the
// AVX2 and AVX-512 paths, libm expf on the generic path.
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

// Elements [j, n) one by one with libm expf, added to *sum and *dsum (every element on the generic
// path; the tail past the last full vector on the others).
static void exp_sum_from(const float* z, int64_t j, int64_t n, float scale, float shift, float* out, double* sum,
                         double* dsum) {
  for (; j < n; ++j) {
    const float zs = z[j] * scale;
    const float e = expf(zs - shift);
    if (out) out[j] = e;
    *sum += e;
    *dsum += double(e) * zs;
  }
}

#if defined(__AVX2__) && defined(__FMA__)
static inline double hsum_pd(__m256d v) {
  __m128d lo = _mm256_castpd256_pd128(v), hi = _mm256_extractf128_pd(v, 1);
  lo = _mm_add_pd(lo, hi);
  return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

double scaled_exp_sum(const float* z, int64_t n, float scale, float shift, float* out, double* dot) {
  const __m256 vs = _mm256_set1_ps(scale), vsh = _mm256_set1_ps(shift);
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), d0 = _mm256_setzero_pd(), d1 = _mm256_setzero_pd();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 zs = _mm256_mul_ps(_mm256_loadu_ps(z + j), vs);
    const __m256 e = exp256(_mm256_sub_ps(zs, vsh));
    if (out) _mm256_storeu_ps(out + j, e);
    const __m256d elo = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), ehi = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
    s0 = _mm256_add_pd(s0, elo);
    s1 = _mm256_add_pd(s1, ehi);
    if (dot) {
      const __m256 ez = _mm256_mul_ps(e, zs);
      d0 = _mm256_add_pd(d0, _mm256_cvtps_pd(_mm256_castps256_ps128(ez)));
      d1 = _mm256_add_pd(d1, _mm256_cvtps_pd(_mm256_extractf128_ps(ez, 1)));
    }
  }
  double sum = hsum_pd(_mm256_add_pd(s0, s1)), dsum = hsum_pd(_mm256_add_pd(d0, d1));
  exp_sum_from(z, j, n, scale, shift, out, &sum, &dsum);
  if (dot) *dot = dsum;
  return sum;
}

float row_max(const float* z, int64_t n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(z + j));
  alignas(32) float t[8];
  _mm256_store_ps(t, m);
  float r = t[0];
  for (int i = 1; i < 8; ++i) r = t[i] > r ? t[i] : r;
  for (; j < n; ++j) r = z[j] > r ? z[j] : r;
  return r;
}
#else
double scaled_exp_sum(const float* z, int64_t n, float scale, float shift, float* out, double* dot) {
  double sum = 0.0, dsum = 0.0;
  exp_sum_from(z, 0, n, scale, shift, out, &sum, &dsum);
  if (dot) *dot = dsum;
  return sum;
}

float row_max(const float* z, int64_t n) {
  float r = -INFINITY;
  for (int64_t j = 0; j < n; ++j) r = z[j] > r ? z[j] : r;
  return r;
}
#endif

}  // namespace reason::kernels::cpu::REASON_ISA_NS
