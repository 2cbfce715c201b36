// Activation rows to int8 blocks for the quantised-weight dot products (isa_ops.h: ActQ8 blocks of
// 32 for Q8_0 / Q4_x / Q5_x weights, ActQ8K super-blocks of 256 for the K-quants): ggml's
// quantize_row_q8_0 / q8_1 and quantize_row_q8_K_ref. The scalar loops define the arithmetic; the
// AVX2 ones give the same bytes (the same f32 products, rounded half to even, clamped to +-127).
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

namespace {

[[maybe_unused]] static inline int8_t q8_clamped(float v) {
  const float r = nearbyintf(v);
  return int8_t(r > 127.0f ? 127 : r < -127.0f ? -127 : int(r));
}

// The block's scale d and its 32 values: d = amax / 127, q = nearest(x / d) (ggml's q8_0 / q8_1).
[[maybe_unused]] static void act_q8_scalar(const float* x, ActQ8* o) {
  float amax = 0.0f;
  for (int l = 0; l < 32; ++l) amax = fabsf(x[l]) > amax ? fabsf(x[l]) : amax;
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  int sum = 0;
  for (int l = 0; l < 32; ++l) {
    o->qs[l] = q8_clamped(x[l] * id);
    sum += o->qs[l];
  }
  // Stored as f16, as ggml's block_q8_0 / block_q8_1 hold them (q from the unrounded scale).
  o->d = f16_round(d);
  o->s = f16_round(d * float(sum));
  o->sum = sum;
}

// The signed value of largest magnitude (the first of equal ones), as quantize_row_q8_K_ref.
static float signed_max(const float* x, int n, float amax) {
  for (int l = 0; l < n; ++l)
    if (fabsf(x[l]) == amax) return x[l];
  return 0.0f;
}

#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// 32 values times s, rounded half to even and clamped to +-127, stored as int8; returns the 4
// vectors of int32 (for the sums).
static inline void round_store32(const float* x, float s, int8_t* q, __m256i* iv) {
  const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int k = 0; k < 4; ++k) {
    __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    iv[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
  }
  // int32 -> int8 (packs work per 128-bit lane; the permute restores the order)
  const __m256i p16a = _mm256_packs_epi32(iv[0], iv[1]), p16b = _mm256_packs_epi32(iv[2], iv[3]);
  const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p8);
}

static inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

static inline float amax32(const float* x) {
  __m256 m = abs8(_mm256_loadu_ps(x));
  for (int k = 1; k < 4; ++k) m = _mm256_max_ps(m, abs8(_mm256_loadu_ps(x + 8 * k)));
  return hmax8(m);
}

static void act_q8(const float* x, ActQ8* o) {
  const float amax = amax32(x);
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  __m256i iv[4];
  round_store32(x, id, o->qs, iv);
  const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3])));
  o->d = f16_round(d);
  o->s = f16_round(d * float(sum));
  o->sum = sum;
}

static void act_q8k(const float* x, ActQ8K* o) {
  float amax = 0.0f;
  for (int c = 0; c < 8; ++c) {
    const float a = amax32(x + 32 * c);
    amax = a > amax ? a : amax;
  }
  if (amax == 0.0f) {
    memset(o, 0, sizeof(*o));
    return;
  }
  const float iscale = -127.0f / signed_max(x, 256, amax);
  for (int c = 0; c < 8; ++c) {
    __m256i iv[4];
    round_store32(x + 32 * c, iscale, o->qs + 32 * c, iv);
    o->bsums[2 * c] = int16_t(hsum_i32(_mm256_add_epi32(iv[0], iv[1])));
    o->bsums[2 * c + 1] = int16_t(hsum_i32(_mm256_add_epi32(iv[2], iv[3])));
  }
  o->d = 1.0f / iscale;
}
#else
static void act_q8(const float* x, ActQ8* o) { act_q8_scalar(x, o); }

static void act_q8k(const float* x, ActQ8K* o) {
  float amax = 0.0f;
  for (int l = 0; l < 256; ++l) amax = fabsf(x[l]) > amax ? fabsf(x[l]) : amax;
  if (amax == 0.0f) {
    memset(o, 0, sizeof(*o));
    return;
  }
  const float iscale = -127.0f / signed_max(x, 256, amax);
  for (int l = 0; l < 256; ++l) o->qs[l] = q8_clamped(iscale * x[l]);
  for (int j = 0; j < 16; ++j) {
    int s = 0;
    for (int l = 0; l < 16; ++l) s += o->qs[16 * j + l];
    o->bsums[j] = int16_t(s);
  }
  o->d = 1.0f / iscale;
}
#endif

}  // namespace

void quantize_act(const float* x, int64_t k, bool k_quant, uint8_t* out) {
  if (k_quant)
    for (int64_t b = 0; b < k / 256; ++b) act_q8k(x + 256 * b, reinterpret_cast<ActQ8K*>(out) + b);
  else
    for (int64_t b = 0; b < k / 32; ++b) act_q8(x + 32 * b, reinterpret_cast<ActQ8*>(out) + b);
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
