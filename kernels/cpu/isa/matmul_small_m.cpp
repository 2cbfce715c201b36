// Small-m matmul (decode): y[m, n] = x[m, k] . w[n, k]^T for m <= kSmallM.
// Decode is bound by reading the weights, so each weight row is streamed once and dotted
// with all m rows of x while it is in registers. Threads split the n weight rows.
// bf16 weights: x is rounded to bf16 (the same semantics as the oneDNN path) and the dot
// products use AVX512-BF16 (vdpbf16ps) on the AVX-512 path when the CPU has it, else FMA on
// widened values (AVX2), else scalar loops (generic).
// Compiled once per ISA path (isa_vec.h says the rules).
#include <omp.h>

#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

namespace {

#if defined(__AVX512F__)
bool has_avx512_bf16() {
  static const bool v = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
  return v;
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
      // GCC 12 flags _mm512_reduce_add_ps's own _mm256_undefined_pd as maybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
      float s = _mm512_reduce_add_ps(acc[i]);
#pragma GCC diagnostic pop
      if (bias) s += bias[j];
      float* out = y + i * ldy + j;
      *out = beta != 0.0f ? beta * *out + s : s;
    }
  }
}

#endif  // __AVX512F__

#if defined(__AVX2__) && defined(__FMA__)
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
      float s = hsum(acc[i]);
      for (int64_t c = kfull; c < k; ++c) s += widen_bf16(wr[c]) * xr[i * kp + c];
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
      float s = hsum(acc[i]);
      for (int64_t c = kfull; c < k; ++c) s += wr[c] * x[i * ldx + c];
      if (bias) s += bias[j];
      float* out = y + i * ldy + j;
      *out = beta != 0.0f ? beta * *out + s : s;
    }
  }
}
#else
// ---- baseline x86-64: the same per-element association as dot() in isa_vec.h ---------------
template <int M>
void rows_bf16_avx2(const float* xr /* bf16-rounded f32 [M][kp] */, int64_t kp, const uint16_t* w,
                    int64_t k, int64_t j0, int64_t j1, float* y, int64_t ldy, const float* bias,
                    float beta) {
  float* wf = static_cast<float*>(thread_scratch(sizeof(float) * size_t(k), 2));
  for (int64_t j = j0; j < j1; ++j) {
    for (int64_t c = 0; c < k; ++c) wf[c] = widen_bf16(w[j * k + c]);
    for (int i = 0; i < M; ++i) {
      float s = dot(wf, xr + i * kp, k);
      if (bias) s += bias[j];
      float* out = y + i * ldy + j;
      *out = beta != 0.0f ? beta * *out + s : s;
    }
  }
}

template <int M>
void rows_f32(const float* x, int64_t ldx, const float* w, int64_t k, int64_t j0, int64_t j1,
              float* y, int64_t ldy, const float* bias, float beta) {
  for (int64_t j = j0; j < j1; ++j)
    for (int i = 0; i < M; ++i) {
      float s = dot(w + j * k, x + i * ldx, k);
      if (bias) s += bias[j];
      float* out = y + i * ldy + j;
      *out = beta != 0.0f ? beta * *out + s : s;
    }
}
#endif

template <int M>
struct IntC {
  static constexpr int value = M;
};

template <int M, typename Fn>
void for_m(int64_t m, Fn&& fn) {
  if constexpr (M <= kSmallM) {
    if (m == M) return fn(IntC<M>{});
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

  // rows(M, j0, j1) over the chunks of weight rows, threaded, with M = a.m as a constant.
  auto over_chunks = [&](auto&& rows) {
    for_m<1>(a.m, [&](auto mc) {
#pragma omp parallel for num_threads(nt) schedule(static)
      for (int64_t c = 0; c < nchunks; ++c) rows(mc, c * chunk, min_i64(a.n, (c + 1) * chunk));
    });
  };

  if (a.w_dtype == DType::F32) {
    const float* w = static_cast<const float*>(a.w);
    over_chunks([&](auto mc, int64_t j0, int64_t j1) {
      rows_f32<decltype(mc)::value>(a.x, ldx, w, a.k, j0, j1, a.y, ldy, a.bias, a.beta);
    });
    return;
  }

  const uint16_t* w = static_cast<const uint16_t*>(a.w);
  const int64_t kp = (a.k + 31) / 32 * 32;
#if defined(__AVX512F__)
  if (has_avx512_bf16()) {
    uint16_t* xb = static_cast<uint16_t*>(thread_scratch(sizeof(uint16_t) * size_t(a.m * kp), 0));
    for (int64_t i = 0; i < a.m; ++i) {
      for (int64_t c = 0; c < a.k; ++c) xb[i * kp + c] = round_bf16(a.x[i * ldx + c]);
      for (int64_t c = a.k; c < kp; ++c) xb[i * kp + c] = 0;
    }
    const uint16_t* xp = xb;
    over_chunks([&](auto mc, int64_t j0, int64_t j1) {
      rows_bf16_avx512<decltype(mc)::value>(xp, kp, w, a.k, j0, j1, a.y, ldy, a.bias, a.beta);
    });
    return;
  }
#endif
  {
    float* xr = static_cast<float*>(thread_scratch(sizeof(float) * size_t(a.m * kp), 0));
    for (int64_t i = 0; i < a.m; ++i) {
      for (int64_t c = 0; c < a.k; ++c) xr[i * kp + c] = widen_bf16(round_bf16(a.x[i * ldx + c]));
      for (int64_t c = a.k; c < kp; ++c) xr[i * kp + c] = 0.0f;
    }
    const float* xp = xr;
    over_chunks([&](auto mc, int64_t j0, int64_t j1) {
      rows_bf16_avx2<decltype(mc)::value>(xp, kp, w, a.k, j0, j1, a.y, ldy, a.bias, a.beta);
    });
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
