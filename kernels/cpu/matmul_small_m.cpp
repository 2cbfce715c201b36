// Small-m matmul (decode): y[m, n] = x[m, k] . w[n, k]^T for m <= kSmallM.
// Decode is bound by reading the weights, so each weight row is streamed once and dotted
// with all m rows of x while it is in registers. Threads split the n weight rows.
// bf16 weights: x is rounded to bf16 (the same semantics as the oneDNN path) and the dot
// products use AVX512-BF16 (vdpbf16ps) when the CPU has it, else AVX2 FMA on widened values.
#include <immintrin.h>
#include <omp.h>

#include <vector>

#include "cpu_ops.h"

namespace reason::kernels::cpu {

namespace {

bool has_avx512_bf16() {
  static const bool v = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
  return v;
}

inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

// ---- bf16 weights, AVX512-BF16 -------------------------------------------------------------
template <int M>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void rows_bf16_avx512(
    const uint16_t* xb, int64_t kp, const uint16_t* w, int64_t k, int64_t j0, int64_t j1,
    float* y, int64_t ldy, const float* bias, float beta) {
  const int64_t kfull = k / 32 * 32;
  const __mmask32 tail = k > kfull ? __mmask32((1ull << (k - kfull)) - 1) : 0;
  for (int64_t j = j0; j < j1; ++j) {
    const uint16_t* wr = w + j * k;
    __m512 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t c = 0; c < kfull; c += 32) {
      __m512bh wv = (__m512bh)_mm512_loadu_si512(wr + c);
      for (int i = 0; i < M; ++i)
        acc[i] = _mm512_dpbf16_ps(acc[i], wv, (__m512bh)_mm512_loadu_si512(xb + i * kp + c));
    }
    if (tail) {
      __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(tail, wr + kfull);
      for (int i = 0; i < M; ++i)
        acc[i] = _mm512_dpbf16_ps(acc[i], wv, (__m512bh)_mm512_loadu_si512(xb + i * kp + kfull));
    }
    for (int i = 0; i < M; ++i) {
      float s = _mm512_reduce_add_ps(acc[i]);
      if (bias) s += bias[j];
      float* out = y + i * ldy + j;
      *out = beta != 0.0f ? beta * *out + s : s;
    }
  }
}

// ---- bf16 weights, AVX2 fallback -----------------------------------------------------------
template <int M>
void rows_bf16_avx2(const float* xr /* bf16-rounded f32 [M][kp] */, int64_t kp, const uint16_t* w,
                    int64_t k, int64_t j0, int64_t j1, float* y, int64_t ldy, const float* bias,
                    float beta) {
  const int64_t kfull = k / 8 * 8;
  for (int64_t j = j0; j < j1; ++j) {
    const uint16_t* wr = w + j * k;
    __m256 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t c = 0; c < kfull; c += 8) {
      __m256i wi = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + c)));
      __m256 wv = _mm256_castsi256_ps(_mm256_slli_epi32(wi, 16));
      for (int i = 0; i < M; ++i) acc[i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xr + i * kp + c), acc[i]);
    }
    for (int i = 0; i < M; ++i) {
      float s = hsum256(acc[i]);
      for (int64_t c = kfull; c < k; ++c) s += bf16_to_f32(wr[c]) * xr[i * kp + c];
      if (bias) s += bias[j];
      float* out = y + i * ldy + j;
      *out = beta != 0.0f ? beta * *out + s : s;
    }
  }
}

// ---- f32 weights ---------------------------------------------------------------------------
template <int M>
void rows_f32(const float* x, int64_t ldx, const float* w, int64_t k, int64_t j0, int64_t j1,
              float* y, int64_t ldy, const float* bias, float beta) {
  const int64_t kfull = k / 8 * 8;
  for (int64_t j = j0; j < j1; ++j) {
    const float* wr = w + j * k;
    __m256 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t c = 0; c < kfull; c += 8) {
      __m256 wv = _mm256_loadu_ps(wr + c);
      for (int i = 0; i < M; ++i) acc[i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + i * ldx + c), acc[i]);
    }
    for (int i = 0; i < M; ++i) {
      float s = hsum256(acc[i]);
      for (int64_t c = kfull; c < k; ++c) s += wr[c] * x[i * ldx + c];
      if (bias) s += bias[j];
      float* out = y + i * ldy + j;
      *out = beta != 0.0f ? beta * *out + s : s;
    }
  }
}


template <int M, typename Fn>
void for_m(int64_t m, Fn&& fn) {
  if constexpr (M <= kSmallM) {
    if (m == M) return fn(std::integral_constant<int, M>{});
    for_m<M + 1>(m, fn);
  }
}

}  // namespace

void matmul_small_m(const MatmulArgs& a) {
  const int64_t ldx = a.ldx ? a.ldx : a.k;
  const int64_t ldy = a.ldy ? a.ldy : a.n;
  const int nt = cpu_threads();
  // Split rows of w into chunks of 16 so threads get balanced work even for small n.
  const int64_t chunk = 16;
  const int64_t nchunks = (a.n + chunk - 1) / chunk;

  if (a.w_dtype == DType::F32) {
    const float* w = static_cast<const float*>(a.w);
    for_m<1>(a.m, [&](auto mc) {
      constexpr int M = decltype(mc)::value;
#pragma omp parallel for num_threads(nt) schedule(static)
      for (int64_t c = 0; c < nchunks; ++c)
        rows_f32<M>(a.x, ldx, w, a.k, c * chunk, std::min(a.n, (c + 1) * chunk), a.y, ldy, a.bias, a.beta);
    });
    return;
  }

  const uint16_t* w = static_cast<const uint16_t*>(a.w);
  const int64_t kp = (a.k + 31) / 32 * 32;
  if (has_avx512_bf16()) {
    thread_local std::vector<uint16_t> xb;
    xb.assign(size_t(a.m * kp), 0);
    for (int64_t i = 0; i < a.m; ++i)
      for (int64_t c = 0; c < a.k; ++c) xb[i * kp + c] = f32_to_bf16(a.x[i * ldx + c]);
    const uint16_t* xp = xb.data();
    for_m<1>(a.m, [&](auto mc) {
      constexpr int M = decltype(mc)::value;
#pragma omp parallel for num_threads(nt) schedule(static)
      for (int64_t c = 0; c < nchunks; ++c)
        rows_bf16_avx512<M>(xp, kp, w, a.k, c * chunk, std::min(a.n, (c + 1) * chunk), a.y, ldy, a.bias, a.beta);
    });
  } else {
    thread_local std::vector<float> xr;
    xr.assign(size_t(a.m * kp), 0.0f);
    for (int64_t i = 0; i < a.m; ++i)
      for (int64_t c = 0; c < a.k; ++c) xr[i * kp + c] = bf16_to_f32(f32_to_bf16(a.x[i * ldx + c]));
    const float* xp = xr.data();
    for_m<1>(a.m, [&](auto mc) {
      constexpr int M = decltype(mc)::value;
#pragma omp parallel for num_threads(nt) schedule(static)
      for (int64_t c = 0; c < nchunks; ++c)
        rows_bf16_avx2<M>(xp, kp, w, a.k, c * chunk, std::min(a.n, (c + 1) * chunk), a.y, ldy, a.bias, a.beta);
    });
  }
}

}  // namespace reason::kernels::cpu
