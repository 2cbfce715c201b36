// Dot products of quantised weight rows (quant.h's formats) with activation rows quantised to int8
// (isa_ops.h: ActQ8 blocks of 32 for Q8_0 / Q4_0 / Q4_1, ActQ8K super-blocks of 256 for the
// K-quants), llama.cpp's vec_dot_*_q8_* idea: the integer products are exact, the float scales are
// applied per block. AVX2 kernels use maddubs (u8 x s8 -> s16 pairs) and madd as ggml's do; the
// generic path is the same arithmetic in scalar loops (the integer sums are identical, the float
// accumulation order differs).
// Compiled once per ISA path (isa_vec.h says the rules).
#include <string.h>

#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

namespace {


// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block (ggml's get_scale_min_k4).
static inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = uint8_t(q[j] & 63);
    *m = uint8_t(q[j + 4] & 63);
  } else {
    *sc = uint8_t((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// ---- scalar kernels (the generic path; their arithmetic defines the others') -----------------

[[maybe_unused]] static float dot_q8_0_scalar(const uint8_t* w, const ActQ8* x, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 34) {
    const int8_t* q = reinterpret_cast<const int8_t*>(w + 2);
    int32_t s = 0;
    for (int l = 0; l < 32; ++l) s += int32_t(q[l]) * x[b].qs[l];
    acc += fp16_at(w) * x[b].d * float(s);
  }
  return acc;
}

[[maybe_unused]] static float dot_q4_0_scalar(const uint8_t* w, const ActQ8* x, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 18) {
    const uint8_t* q = w + 2;
    int32_t s = 0;
    for (int l = 0; l < 16; ++l)
      s += (int32_t(q[l] & 0x0F) - 8) * x[b].qs[l] + (int32_t(q[l] >> 4) - 8) * x[b].qs[l + 16];
    acc += fp16_at(w) * x[b].d * float(s);
  }
  return acc;
}

[[maybe_unused]] static float dot_q4_1_scalar(const uint8_t* w, const ActQ8* x, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 20) {
    const uint8_t* q = w + 4;
    int32_t s = 0;
    for (int l = 0; l < 16; ++l) s += int32_t(q[l] & 0x0F) * x[b].qs[l] + int32_t(q[l] >> 4) * x[b].qs[l + 16];
    acc += fp16_at(w) * x[b].d * float(s) + fp16_at(w + 2) * x[b].s;
  }
  return acc;
}

// Q5_0 (signed: q - 16) and Q5_1 (unsigned, + m * sum x): element e's fifth bit is bit e of qh.
[[maybe_unused]] static float dot_q5_scalar(const uint8_t* w, const ActQ8* x, int64_t nb, bool one) {
  const size_t bytes = one ? 24 : 22;
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += bytes) {
    uint32_t qh;
    memcpy(&qh, w + (one ? 4 : 2), 4);
    const uint8_t* q = w + (one ? 8 : 6);
    const int32_t off = one ? 0 : 16;
    int32_t s = 0;
    for (int l = 0; l < 16; ++l) {
      s += (int32_t((q[l] & 0x0F) | (((qh >> l) & 1) << 4)) - off) * x[b].qs[l];
      s += (int32_t((q[l] >> 4) | (((qh >> (l + 16)) & 1) << 4)) - off) * x[b].qs[l + 16];
    }
    acc += fp16_at(w) * x[b].d * float(s);
    if (one) acc += fp16_at(w + 2) * x[b].s;
  }
  return acc;
}

// Q4_K and Q5_K: sum_j sc_j (q . x)_j d - dmin sum_j m_j (sum x)_j over the 8 sub-blocks of 32.
[[maybe_unused]] static float dot_k4_k5_scalar(const uint8_t* w, const ActQ8K* x, int64_t nb, bool five) {
  const size_t bytes = five ? 176 : 144;
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += bytes) {
    const uint8_t* scales = w + 4;
    const uint8_t* qh = w + 16;
    const uint8_t* ql = w + (five ? 48 : 16);
    int32_t sum_q = 0, sum_m = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      scale_min_k4(j, scales, &sc, &m);
      const uint8_t* qj = ql + (j / 2) * 32;
      const int shift = (j % 2) * 4;
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) {
        int q = (qj[l] >> shift) & 0x0F;
        if (five) q |= ((qh[l] >> j) & 1) << 4;
        s += q * x[b].qs[j * 32 + l];
      }
      sum_q += sc * s;
      sum_m += m * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
    }
    acc += x[b].d * fp16_at(w) * float(sum_q) - x[b].d * fp16_at(w + 2) * float(sum_m);
  }
  return acc;
}

[[maybe_unused]] static float dot_q6_k_scalar(const uint8_t* w, const ActQ8K* x, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 210) {
    const uint8_t* ql = w;
    const uint8_t* qh = w + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
    const int8_t* q8 = x[b].qs;
    int32_t sum = 0;
    for (int n = 0; n < 2; ++n, ql += 64, qh += 32, sc += 8, q8 += 128) {
      int32_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // by scale index
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        s[is + 0] += (int32_t((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32) * q8[l];
        s[is + 2] += (int32_t((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32) * q8[l + 32];
        s[is + 4] += (int32_t((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * q8[l + 64];
        s[is + 6] += (int32_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * q8[l + 96];
      }
      for (int i = 0; i < 8; ++i) sum += sc[i] * s[i];
    }
    acc += x[b].d * fp16_at(w + 208) * float(sum);
  }
  return acc;
}

#if defined(__AVX2__) && defined(__FMA__)
// ---- AVX2 kernels ---------------------------------------------------------------------------

// sum over pairs of x[i] * y[i] (signed bytes) as 8 floats (the sign trick: |x| as u8 times
// y * sign(x) as s8, so maddubs applies).
static inline __m256 mul_sum_i8_pairs_float(__m256i x, __m256i y) {
  const __m256i ax = _mm256_sign_epi8(x, x);
  const __m256i sy = _mm256_sign_epi8(y, x);
  const __m256i dot = _mm256_maddubs_epi16(ax, sy);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)));
}

// 16 bytes of nibbles as 32 bytes: low nibbles in the low lane (elements 0..15), high in the high.
static inline __m256i nibbles_32(const uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

static float dot_q8_0_avx2(const uint8_t* w, const ActQ8* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += 34) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_at(w) * x[b].d), mul_sum_i8_pairs_float(q, y), acc);
  }
  return hsum(acc);
}

static float dot_q4_0_avx2(const uint8_t* w, const ActQ8* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i off = _mm256_set1_epi8(8);
  for (int64_t b = 0; b < nb; ++b, w += 18) {
    const __m256i q = _mm256_sub_epi8(nibbles_32(w + 2), off);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_at(w) * x[b].d), mul_sum_i8_pairs_float(q, y), acc);
  }
  return hsum(acc);
}

// 32 bits as 32 bytes: 0xFF where bit e is set (ggml's bytes_from_bits_32).
static inline __m256i bytes_from_bits_32(const uint8_t* p) {
  uint32_t x32;
  memcpy(&x32, p, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int(x32)), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

static float dot_q5_0_avx2(const uint8_t* w, const ActQ8* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += 22) {
    // nibble | 0xF0 where the fifth bit is clear: the byte is then q - 16 as a signed value
    const __m256i hi = _mm256_andnot_si256(bytes_from_bits_32(w + 2), _mm256_set1_epi8(char(0xF0)));
    const __m256i q = _mm256_or_si256(nibbles_32(w + 6), hi);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_at(w) * x[b].d), mul_sum_i8_pairs_float(q, y), acc);
  }
  return hsum(acc);
}

static float dot_q5_1_avx2(const uint8_t* w, const ActQ8* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  float summ = 0.0f;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b, w += 24) {
    const __m256i hi = _mm256_and_si256(bytes_from_bits_32(w + 4), _mm256_set1_epi8(0x10));
    const __m256i q = _mm256_or_si256(nibbles_32(w + 8), hi);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), ones);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_at(w) * x[b].d), _mm256_cvtepi32_ps(p), acc);
    summ += fp16_at(w + 2) * x[b].s;
  }
  return hsum(acc) + summ;
}

static float dot_q4_1_avx2(const uint8_t* w, const ActQ8* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  float summ = 0.0f;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b, w += 20) {
    const __m256i q = nibbles_32(w + 4);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), ones);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_at(w) * x[b].d), _mm256_cvtepi32_ps(p), acc);
    summ += fp16_at(w + 2) * x[b].s;
  }
  return hsum(acc) + summ;
}

// Shuffles that broadcast 16-bit scale i to all 16 lanes (ggml's get_scale_shuffle_k4).
static inline __m256i scale_shuffle_k4(int i) {
  alignas(32) static const uint8_t k[8][32] = {
      {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1},
      {2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
      {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5},
      {6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
      {8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9},
      {10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11,
       10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11},
      {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13,
       12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13},
      {14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15,
       14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15}};
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(k[i]));
}

// The 8 scales then the 8 mins of a Q4_K / Q5_K block as 16-bit lanes (ggml's utmp shuffle).
static inline __m256i k4_mins_and_scales(const uint8_t* scales) {
  uint32_t u[4];
  memcpy(u, scales, 12);
  const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
  const uint32_t uaux = u[1] & kmask1;
  u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
  u[2] = uaux;
  u[0] &= kmask1;
  return _mm256_cvtepu8_epi16(_mm_set_epi32(int(u[3]), int(u[2]), int(u[1]), int(u[0])));
}

// sum_j m_j * (sum of the activations of sub-block j), from the 16 partial sums of 16.
static inline int32_t k4_min_sum(__m256i mins_and_scales, const int16_t* bsums) {
  const __m256i q8sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums));
  const __m128i q8s = _mm_hadd_epi16(_mm256_extracti128_si256(q8sums, 0), _mm256_extracti128_si256(q8sums, 1));
  const __m128i prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
  const __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(prod, prod), prod);
  return _mm_cvtsi128_si32(h);
}

static float dot_k4_k5_avx2(const uint8_t* w, const ActQ8K* x, int64_t nb, bool five) {
  const size_t bytes = five ? 176 : 144;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float summ = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += bytes) {
    const __m256i ms = k4_mins_and_scales(w + 4);
    summ += x[b].d * fp16_at(w + 2) * float(k4_min_sum(ms, x[b].bsums));
    const __m128i sc128 = _mm256_extracti128_si256(ms, 0);
    const __m256i scales = _mm256_set_m128i(sc128, sc128);
    const uint8_t* q = w + (five ? 48 : 16);
    const __m256i hbits = five ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16)) : _mm256_setzero_si256();
    const int8_t* q8 = x[b].qs;
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j, q += 32, q8 += 64) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
      __m256i lo = _mm256_and_si256(bits, m4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
      if (five) {  // the fifth bit of sub-block 2j is bit 2j of hbits, of 2j + 1 bit 2j + 1
        const __m256i one = _mm256_set1_epi8(1);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one), 4));
      }
      const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8)));
      const __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 32)));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, scale_shuffle_k4(2 * j)), plo));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, scale_shuffle_k4(2 * j + 1)), phi));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * fp16_at(w)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc) - summ;
}

// Shuffles that broadcast int8 scales 2i and 2i + 1 to 8 lanes each (ggml's get_scale_shuffle).
static inline __m128i scale_shuffle_q6(int i) {
  alignas(16) static const uint8_t k[8][16] = {
      {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},         {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
      {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},         {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
      {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},         {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
      {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
      {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};
  return _mm_load_si128(reinterpret_cast<const __m128i*>(k[i]));
}

// (q - 32) . x = q . x - 32 sum_j sc_j (sum of x over sub-block j): the offset from the
// activations' sums by 16 (one madd per super-block), not a second maddubs per 32 as ggml's.
static float dot_q6_k_avx2(const uint8_t* w, const ActQ8K* x, int64_t nb) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += 210) {
    const uint8_t* q4 = w;
    const uint8_t* qh = w + 128;
    const int8_t* q8 = x[b].qs;
    const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192));
    const __m256i offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales),
                                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].bsums)));
    __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 5));
    for (int j = 0, is = 0; j < 2; ++j, is += 4, q4 += 64, qh += 32, q8 += 128) {
      const __m256i bits1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q4));
      const __m256i bits2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q4 + 32));
      const __m256i bitsh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(bitsh, m2), 4);
      const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bitsh, 2), m2), 4);
      const __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bitsh, 4), m2), 4);
      const __m256i h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bitsh, 6), m2), 4);
      const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(bits1, m4), h0),
                            _mm256_or_si256(_mm256_and_si256(bits2, m4), h1),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4), h2),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4), h3)};
      for (int t = 0; t < 4; ++t) {
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 32 * t));
        const __m256i p = _mm256_maddubs_epi16(q[t], y);  // q < 64: pair sums <= 2 * 63 * 127
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(is + t)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * fp16_at(w + 208)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

// ---- x8 layouts (quant_x8.inc): 8 rows at once, one int32 lane per row -------------------------

// Activation bytes p[0..4) in every 32-bit lane.
static inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// 0x10 in byte e of every lane where the fifth bit of element 4c + e + 16h of the lane's row is
// set: qh is permuted at packing so that it is bit 8e + c + 4h (quant_x8.inc).
static inline __m256i fifth_bits(__m256i qh, int c, int h) {
  const __m256i at = 4 * h > c ? _mm256_srli_epi32(qh, c + 4 * h - 4) : _mm256_slli_epi32(qh, 4 - c - 4 * h);
  return _mm256_and_si256(at, _mm256_set1_epi32(0x10101010));
}

// out[8 i + r] = row r of an x8 group (nb blocks of t) . activation row i (at x + i * xs), i < M:
// M = 1 is decode; prefill tiles its rows (4 for the blocks of 32, 2 for the K-quants: what AVX2's
// 16 registers hold), so each weight vector, once loaded and unpacked, feeds M rows (an int8 GEMM
// on the x8 layout). Integer sums per block as the base kernels'.
// Weights are read once, as a stream: the x8 kernels ask for the cache lines 4 KiB ahead, which
// measured 10-60% more GB/s from DRAM on one Zen 3 core than the hardware prefetcher alone.
static constexpr size_t kPrefetch = 4096;

template <class A>
static inline const A* act_row(const uint8_t* x, size_t xs, int i) {
  return reinterpret_cast<const A*>(x + size_t(i) * xs);
}

// A template on the layout, so that each type's loop is compiled without the others' branches.
template <DType t, int M>
static void dot_x8_avx2(const uint8_t* w, const uint8_t* x, size_t xs, int64_t nb, float* out) {
  constexpr bool q8 = t == DType::Q8_0x8, five = t == DType::Q5_0x8 || t == DType::Q5_1x8;
  constexpr bool with_min = t == DType::Q4_1x8 || t == DType::Q5_1x8;
  constexpr int offset = t == DType::Q4_0x8 ? 8 : t == DType::Q5_0x8 ? 16 : 0;  // (q - offset) . x
  constexpr size_t bb = 8 * (q8 ? 34 : t == DType::Q4_0x8 ? 18 : t == DType::Q4_1x8 ? 20 : t == DType::Q5_0x8 ? 22 : 24);
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += bb) {
    for (size_t l = 0; l < bb; l += 64) _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch + l), _MM_HINT_T0);
    const ActQ8* xb[M];
    for (int i = 0; i < M; ++i) xb[i] = act_row<ActQ8>(x, xs, i) + b;
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    const uint8_t* p = w + 16;
    if constexpr (with_min) {
      const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      for (int i = 0; i < M; ++i) acc[i] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xb[i]->s), acc[i]);
      p += 16;
    }
    __m256i sumi[M];
    for (int i = 0; i < M; ++i) sumi[i] = _mm256_setzero_si256();
    if constexpr (q8) {
      for (int c = 0; c < 8; ++c) {  // |q|, |x| <= 127: a pair sum fits int16
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
        const __m256i aq = _mm256_sign_epi8(q, q);
        for (int i = 0; i < M; ++i) {
          const __m256i pr = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(bcast4(xb[i]->qs + 4 * c), q));
          sumi[i] = _mm256_add_epi32(sumi[i], _mm256_madd_epi16(pr, ones));
        }
      }
    } else {
      __m256i qh = _mm256_setzero_si256();
      if constexpr (five) {
        qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        p += 32;
      }
      __m256i s16[M];  // 4-bit q: 8 pair sums of <= 2 * 15 * 127 fit int16
      for (int i = 0; i < M; ++i) s16[i] = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
        __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        if constexpr (five) {  // elements 4c + e (low nibbles) and 16 + 4c + e (high)
          lo = _mm256_or_si256(lo, fifth_bits(qh, c, 0));
          hi = _mm256_or_si256(hi, fifth_bits(qh, c, 1));
        }
        for (int i = 0; i < M; ++i) {
          const __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(xb[i]->qs + 4 * c)),
                                              _mm256_maddubs_epi16(hi, bcast4(xb[i]->qs + 16 + 4 * c)));
          if constexpr (five)
            sumi[i] = _mm256_add_epi32(sumi[i], _mm256_madd_epi16(pr, ones));
          else
            s16[i] = _mm256_add_epi16(s16[i], pr);
        }
      }
      for (int i = 0; i < M; ++i) {
        if constexpr (!five) sumi[i] = _mm256_madd_epi16(s16[i], ones);
        if constexpr (offset != 0) sumi[i] = _mm256_sub_epi32(sumi[i], _mm256_set1_epi32(offset * xb[i]->sum));
      }
    }
    for (int i = 0; i < M; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xb[i]->d)), _mm256_cvtepi32_ps(sumi[i]), acc[i]);
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

// Bit p of every byte of v at bit 4 (0x10), the rest 0 (p = 0..7; 16-bit shifts, as the mask keeps
// each byte's own bit).
static inline __m256i bit_to_0x10(__m256i v, int p) {
  const __m256i at = p <= 4 ? _mm256_slli_epi16(v, 4 - p) : _mm256_srli_epi16(v, p - 4);
  return _mm256_and_si256(at, _mm256_set1_epi8(0x10));
}

// Q4_K's and Q5_K's x8 blocks (quant_x8.inc). Per pair g of sub-blocks, 8 chunks of 32 bytes give 4
// elements of sub-blocks 2g (low nibbles) and 2g + 1 (high) of every row; their int16 sums are
// scaled by madd with each row's 6-bit scales; the mins by madd of each row's mins with the
// activation sums of the sub-blocks. int16 sums stay in range: Q4_K adds 8 chunks of pair sums
// <= 2 * 15 * 127, Q5_K 4 chunks of <= 2 * 31 * 127 at a time.
template <bool five, int M>
static void dot_k45x8_avx2(const uint8_t* w, const uint8_t* x, size_t xs, int64_t nb, float* out) {
  constexpr size_t bb = 8 * (five ? 180 : 148);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += bb) {
    for (size_t l = 0; l < bb; l += 64) _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch + l), _MM_HINT_T0);
    const ActQ8K* xb[M];
    for (int i = 0; i < M; ++i) xb[i] = act_row<ActQ8K>(x, xs, i) + b;
    __m256i sumi[M], mins[M];
    for (int i = 0; i < M; ++i) sumi[i] = mins[i] = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
      const uint8_t* q = w + 160 + 256 * g;
      // (scale 2g, scale 2g + 1) of each row as two int16, then each duplicated
      const __m256i sc = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 32 + 16 * g)));
      const __m256i sc_lo = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(sc, 0xA0), 0xA0);
      const __m256i sc_hi = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(sc, 0xF5), 0xF5);
      for (int half = 0; half < (five ? 2 : 1); ++half) {
        __m256i lo16[M], hi16[M];
        for (int i = 0; i < M; ++i) lo16[i] = hi16[i] = _mm256_setzero_si256();
        for (int c = five ? 4 * half : 0; c < (five ? 4 * half + 4 : 8); ++c) {
          const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * c));
          __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
          if constexpr (five) {
            const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 1184 + 32 * c));
            lo = _mm256_or_si256(lo, bit_to_0x10(h, 2 * g));
            hi = _mm256_or_si256(hi, bit_to_0x10(h, 2 * g + 1));
          }
          for (int i = 0; i < M; ++i) {
            lo16[i] = _mm256_add_epi16(lo16[i], _mm256_maddubs_epi16(lo, bcast4(xb[i]->qs + 64 * g + 4 * c)));
            hi16[i] = _mm256_add_epi16(hi16[i], _mm256_maddubs_epi16(hi, bcast4(xb[i]->qs + 64 * g + 32 + 4 * c)));
          }
        }
        for (int i = 0; i < M; ++i)
          sumi[i] = _mm256_add_epi32(sumi[i], _mm256_add_epi32(_mm256_madd_epi16(lo16[i], sc_lo), _mm256_madd_epi16(hi16[i], sc_hi)));
      }
      // (min 2g, min 2g + 1) . (sum of x over sub-block 2g, over 2g + 1)
      const __m256i mn = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 96 + 16 * g)));
      for (int i = 0; i < M; ++i) {
        const int16_t* bs = xb[i]->bsums;
        const int32_t s0 = bs[4 * g] + bs[4 * g + 1], s1 = bs[4 * g + 2] + bs[4 * g + 3];
        mins[i] = _mm256_add_epi32(mins[i], _mm256_madd_epi16(mn, _mm256_set1_epi32(int32_t(uint32_t(uint16_t(s0)) | (uint32_t(uint16_t(s1)) << 16)))));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16)));
    for (int i = 0; i < M; ++i) {
      const __m256 dx = _mm256_set1_ps(xb[i]->d);
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(sumi[i]), acc[i]);
      acc[i] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dx), _mm256_cvtepi32_ps(mins[i]), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

// Q6_K's x8 block (quant_x8.inc). Three chunks (two of low nibbles, one of high bit pairs) give q of
// 4 elements in each of 4 runs t of 32 (elements 128n + 32t + 4c + e) of every row; two chunks'
// int16 pair sums (<= 2 * 2 * 63 * 127) are scaled by madd with the rows' int8 scales of their
// sub-block of 16. The -32 offset comes from the activations' sums by 16, as in dot_q6_k_avx2.
template <int M>
static void dot_q6kx8_avx2(const uint8_t* w, const uint8_t* x, size_t xs, int64_t nb, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += 8 * 210) {
    for (size_t l = 0; l < 8 * 210; l += 64) _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch + l), _MM_HINT_T0);
    const ActQ8K* xb[M];
    for (int i = 0; i < M; ++i) xb[i] = act_row<ActQ8K>(x, xs, i) + b;
    __m256i sumi[M], offset[M];
    for (int i = 0; i < M; ++i) sumi[i] = offset[i] = _mm256_setzero_si256();
    for (int n = 0; n < 2; ++n) {
      // scales of sub-blocks 8n + 2t + s (pair k = 4n + t) as int16 lanes, each row's duplicated
      __m256i sc[4][2];
      for (int t = 0; t < 4; ++t) {
        const int k = 4 * n + t;
        const __m256i pair = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16 + 16 * k)));
        for (int i = 0; i < M; ++i) {
          const int16_t* bs = xb[i]->bsums;
          offset[i] = _mm256_add_epi32(offset[i], _mm256_madd_epi16(pair, _mm256_set1_epi32(int32_t(
                                                                         uint32_t(uint16_t(bs[2 * k])) | (uint32_t(uint16_t(bs[2 * k + 1])) << 16)))));
        }
        sc[t][0] = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(pair, 0xA0), 0xA0);
        sc[t][1] = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(pair, 0xF5), 0xF5);
      }
      const uint8_t* q = w + 144 + 768 * n;
      for (int c = 0; c < 8; c += 2) {
        __m256i p[M][4];
        for (int u = 0; u < 2; ++u) {
          const uint8_t* ch = q + 96 * (c + u);
          const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch));
          const __m256i bq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch + 32));
          const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch + 64));
          const __m256i qv[4] = {
              _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30)),
              _mm256_or_si256(_mm256_and_si256(bq, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4), _mm256_and_si256(h, m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bq, 4), m4), _mm256_and_si256(_mm256_srli_epi16(h, 2), m30))};
          for (int i = 0; i < M; ++i) {
            const int8_t* xn = xb[i]->qs + 128 * n + 4 * (c + u);
            for (int t = 0; t < 4; ++t) {
              const __m256i pr = _mm256_maddubs_epi16(qv[t], bcast4(xn + 32 * t));
              p[i][t] = u == 0 ? pr : _mm256_add_epi16(p[i][t], pr);
            }
          }
        }
        for (int i = 0; i < M; ++i)
          for (int t = 0; t < 4; ++t) sumi[i] = _mm256_add_epi32(sumi[i], _mm256_madd_epi16(p[i][t], sc[t][c / 4]));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    for (int i = 0; i < M; ++i) {
      sumi[i] = _mm256_sub_epi32(sumi[i], _mm256_slli_epi32(offset[i], 5));
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb[i]->d)), _mm256_cvtepi32_ps(sumi[i]), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

// One x8 group times M activation rows with the AVX2 kernels.
template <int M>
static void dot_x8_tile_avx2(DType t, const uint8_t* w, const uint8_t* x, size_t xs, int64_t nb, float* o) {
  switch (t) {
    case DType::Q4_Kx8: dot_k45x8_avx2<false, M>(w, x, xs, nb, o); break;
    case DType::Q5_Kx8: dot_k45x8_avx2<true, M>(w, x, xs, nb, o); break;
    case DType::Q6_Kx8: dot_q6kx8_avx2<M>(w, x, xs, nb, o); break;
    case DType::Q8_0x8: dot_x8_avx2<DType::Q8_0x8, M>(w, x, xs, nb, o); break;
    case DType::Q4_0x8: dot_x8_avx2<DType::Q4_0x8, M>(w, x, xs, nb, o); break;
    case DType::Q4_1x8: dot_x8_avx2<DType::Q4_1x8, M>(w, x, xs, nb, o); break;
    case DType::Q5_0x8: dot_x8_avx2<DType::Q5_0x8, M>(w, x, xs, nb, o); break;
    default: dot_x8_avx2<DType::Q5_1x8, M>(w, x, xs, nb, o); break;
  }
}

// Rows i0 <= i < i1 of activations times one x8 group: tiles of 4 rows (2 for the K-quants, whose
// per-row int16 sums take twice the registers), then the rest one by one.
static void dot_x8_rows_avx2(DType t, const uint8_t* w, const uint8_t* x, size_t xs, int64_t i0, int64_t i1,
                             int64_t nb, float* o /* [i1 - i0][8] */) {
  const bool k_quant = t == DType::Q4_Kx8 || t == DType::Q5_Kx8 || t == DType::Q6_Kx8;
  int64_t i = i0;
  if (k_quant)
    for (; i + 2 <= i1; i += 2) dot_x8_tile_avx2<2>(t, w, x + size_t(i) * xs, xs, nb, o + 8 * (i - i0));
  if (t == DType::Q8_0x8)  // Q8_0 keeps no int16 sums: 6 rows' accumulators fit the 16 registers
    for (; i + 6 <= i1; i += 6) dot_x8_avx2<DType::Q8_0x8, 6>(w, x + size_t(i) * xs, xs, nb, o + 8 * (i - i0));
  if (!k_quant)
    for (; i + 4 <= i1; i += 4) dot_x8_tile_avx2<4>(t, w, x + size_t(i) * xs, xs, nb, o + 8 * (i - i0));
  for (; i < i1; ++i) dot_x8_tile_avx2<1>(t, w, x + size_t(i) * xs, xs, nb, o + 8 * (i - i0));
}

#if defined(__AVX512F__)
// ---- x8 layouts with AVX512-VNNI (the AVX-512 path, where the CPU has it) ----------------------
// vpdpbusd adds the 4 products u8 x s8 of each int32 lane to it: one instruction where AVX2 needs
// maddubs, madd and add, and no int16 intermediate sums (so no pairing of chunks to stay in
// range). The integer sums equal the AVX2 kernels'; K-quant scales multiply int32 sums (mullo).
// Each kernel takes M activation rows (x + i * xs, i < M) at once and writes out[8 i + r]: M = 1 is
// decode; prefill tiles its rows by 4, so each weight vector, once loaded and unpacked, feeds M
// vpdpbusd (an int8 GEMM on the x8 layout; AVX-512VL gives the 32 registers the tiles need).
#define REASON_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

template <DType t, int M>
REASON_VNNI static void dot_x8_vnni(const uint8_t* w, const uint8_t* x, size_t xs, int64_t nb, float* out) {
  constexpr bool q8 = t == DType::Q8_0x8, five = t == DType::Q5_0x8 || t == DType::Q5_1x8;
  constexpr bool with_min = t == DType::Q4_1x8 || t == DType::Q5_1x8;
  constexpr int offset = t == DType::Q4_0x8 ? 8 : t == DType::Q5_0x8 ? 16 : 0;
  constexpr size_t bb = 8 * (q8 ? 34 : t == DType::Q4_0x8 ? 18 : t == DType::Q4_1x8 ? 20 : t == DType::Q5_0x8 ? 22 : 24);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += bb) {
    for (size_t l = 0; l < bb; l += 64) _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch + l), _MM_HINT_T0);
    const ActQ8* xb[M];
    for (int i = 0; i < M; ++i) xb[i] = act_row<ActQ8>(x, xs, i) + b;
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    const uint8_t* p = w + 16;
    if constexpr (with_min) {
      const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      for (int i = 0; i < M; ++i) acc[i] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xb[i]->s), acc[i]);
      p += 16;
    }
    __m256i sumi[M];
    for (int i = 0; i < M; ++i) sumi[i] = _mm256_setzero_si256();
    if constexpr (q8) {  // (q + 128) . x - 128 sum x: q + 128 is q with its top bit flipped
      const __m256i flip = _mm256_set1_epi8(char(0x80));
      for (int c = 0; c < 8; ++c) {
        const __m256i q = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c)), flip);
        for (int i = 0; i < M; ++i) sumi[i] = _mm256_dpbusd_epi32(sumi[i], q, bcast4(xb[i]->qs + 4 * c));
      }
      for (int i = 0; i < M; ++i) sumi[i] = _mm256_sub_epi32(sumi[i], _mm256_set1_epi32(128 * xb[i]->sum));
    } else {
      __m256i qh = _mm256_setzero_si256();
      if constexpr (five) {
        qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        p += 32;
      }
      for (int c = 0; c < 4; ++c) {
        const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
        __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        if constexpr (five) {
          lo = _mm256_or_si256(lo, fifth_bits(qh, c, 0));
          hi = _mm256_or_si256(hi, fifth_bits(qh, c, 1));
        }
        for (int i = 0; i < M; ++i) {
          sumi[i] = _mm256_dpbusd_epi32(sumi[i], lo, bcast4(xb[i]->qs + 4 * c));
          sumi[i] = _mm256_dpbusd_epi32(sumi[i], hi, bcast4(xb[i]->qs + 16 + 4 * c));
        }
      }
      if constexpr (offset != 0)
        for (int i = 0; i < M; ++i) sumi[i] = _mm256_sub_epi32(sumi[i], _mm256_set1_epi32(offset * xb[i]->sum));
    }
    for (int i = 0; i < M; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xb[i]->d)), _mm256_cvtepi32_ps(sumi[i]), acc[i]);
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

template <bool five, int M>
REASON_VNNI static void dot_k45x8_vnni(const uint8_t* w, const uint8_t* x, size_t xs, int64_t nb, float* out) {
  constexpr size_t bb = 8 * (five ? 180 : 148);
  const __m256i m4 = _mm256_set1_epi8(0x0F), low16 = _mm256_set1_epi32(0xFFFF);
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += bb) {
    for (size_t l = 0; l < bb; l += 64) _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch + l), _MM_HINT_T0);
    const ActQ8K* xb[M];
    for (int i = 0; i < M; ++i) xb[i] = act_row<ActQ8K>(x, xs, i) + b;
    __m256i sumi[M], mins[M];
    for (int i = 0; i < M; ++i) sumi[i] = mins[i] = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
      const uint8_t* q = w + 160 + 256 * g;
      __m256i lo32[M], hi32[M];
      for (int i = 0; i < M; ++i) lo32[i] = hi32[i] = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * c));
        __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        if constexpr (five) {
          const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 1184 + 32 * c));
          lo = _mm256_or_si256(lo, bit_to_0x10(h, 2 * g));
          hi = _mm256_or_si256(hi, bit_to_0x10(h, 2 * g + 1));
        }
        for (int i = 0; i < M; ++i) {
          lo32[i] = _mm256_dpbusd_epi32(lo32[i], lo, bcast4(xb[i]->qs + 64 * g + 4 * c));
          hi32[i] = _mm256_dpbusd_epi32(hi32[i], hi, bcast4(xb[i]->qs + 64 * g + 32 + 4 * c));
        }
      }
      // lane r: scale 2g | scale 2g + 1 << 16 (6-bit, so the int16 halves are the values)
      const __m256i sc = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 32 + 16 * g)));
      const __m256i sc_lo = _mm256_and_si256(sc, low16), sc_hi = _mm256_srli_epi32(sc, 16);
      const __m256i mn = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 96 + 16 * g)));
      for (int i = 0; i < M; ++i) {
        sumi[i] = _mm256_add_epi32(sumi[i], _mm256_mullo_epi32(lo32[i], sc_lo));
        sumi[i] = _mm256_add_epi32(sumi[i], _mm256_mullo_epi32(hi32[i], sc_hi));
        const int16_t* bs = xb[i]->bsums;
        const int32_t s0 = bs[4 * g] + bs[4 * g + 1], s1 = bs[4 * g + 2] + bs[4 * g + 3];
        mins[i] = _mm256_add_epi32(mins[i], _mm256_madd_epi16(mn, _mm256_set1_epi32(int32_t(uint32_t(uint16_t(s0)) | (uint32_t(uint16_t(s1)) << 16)))));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16)));
    for (int i = 0; i < M; ++i) {
      const __m256 dx = _mm256_set1_ps(xb[i]->d);
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(sumi[i]), acc[i]);
      acc[i] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dx), _mm256_cvtepi32_ps(mins[i]), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

template <int M>
REASON_VNNI static void dot_q6kx8_vnni(const uint8_t* w, const uint8_t* x, size_t xs, int64_t nb, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  __m256 acc[M];
  for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += 8 * 210) {
    for (size_t l = 0; l < 8 * 210; l += 64) _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch + l), _MM_HINT_T0);
    const ActQ8K* xb[M];
    for (int i = 0; i < M; ++i) xb[i] = act_row<ActQ8K>(x, xs, i) + b;
    __m256i sumi[M], offset[M];
    for (int i = 0; i < M; ++i) sumi[i] = offset[i] = _mm256_setzero_si256();
    for (int n = 0; n < 2; ++n) {
      __m256i sc[4][2];  // int32 scale of sub-block 8n + 2t + s of each row
      for (int t = 0; t < 4; ++t) {
        const int k = 4 * n + t;
        const __m256i pair = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16 + 16 * k)));
        for (int i = 0; i < M; ++i) {
          const int16_t* bs = xb[i]->bsums;
          offset[i] = _mm256_add_epi32(offset[i], _mm256_madd_epi16(pair, _mm256_set1_epi32(int32_t(
                                                                         uint32_t(uint16_t(bs[2 * k])) | (uint32_t(uint16_t(bs[2 * k + 1])) << 16)))));
        }
        sc[t][0] = _mm256_srai_epi32(_mm256_slli_epi32(pair, 16), 16);
        sc[t][1] = _mm256_srai_epi32(pair, 16);
      }
      const uint8_t* q = w + 144 + 768 * n;
      for (int s = 0; s < 2; ++s) {
        __m256i p[M][4];
        for (int i = 0; i < M; ++i)
          for (int t = 0; t < 4; ++t) p[i][t] = _mm256_setzero_si256();
        for (int c = 4 * s; c < 4 * s + 4; ++c) {
          const uint8_t* ch = q + 96 * c;
          const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch));
          const __m256i bq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch + 32));
          const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch + 64));
          const __m256i qv[4] = {
              _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30)),
              _mm256_or_si256(_mm256_and_si256(bq, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4), _mm256_and_si256(h, m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bq, 4), m4), _mm256_and_si256(_mm256_srli_epi16(h, 2), m30))};
          for (int i = 0; i < M; ++i) {
            const int8_t* xn = xb[i]->qs + 128 * n + 4 * c;
            for (int t = 0; t < 4; ++t) p[i][t] = _mm256_dpbusd_epi32(p[i][t], qv[t], bcast4(xn + 32 * t));
          }
        }
        for (int i = 0; i < M; ++i)
          for (int t = 0; t < 4; ++t) sumi[i] = _mm256_add_epi32(sumi[i], _mm256_mullo_epi32(p[i][t], sc[t][s]));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    for (int i = 0; i < M; ++i) {
      sumi[i] = _mm256_sub_epi32(sumi[i], _mm256_slli_epi32(offset[i], 5));
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb[i]->d)), _mm256_cvtepi32_ps(sumi[i]), acc[i]);
    }
  }
  for (int i = 0; i < M; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

// One x8 group times M activation rows with the VNNI kernels.
template <int M>
REASON_VNNI static void dot_x8_tile_vnni(DType t, const uint8_t* w, const uint8_t* x, size_t xs, int64_t nb, float* o) {
  switch (t) {
    case DType::Q4_Kx8: dot_k45x8_vnni<false, M>(w, x, xs, nb, o); break;
    case DType::Q5_Kx8: dot_k45x8_vnni<true, M>(w, x, xs, nb, o); break;
    case DType::Q6_Kx8: dot_q6kx8_vnni<M>(w, x, xs, nb, o); break;
    case DType::Q8_0x8: dot_x8_vnni<DType::Q8_0x8, M>(w, x, xs, nb, o); break;
    case DType::Q4_0x8: dot_x8_vnni<DType::Q4_0x8, M>(w, x, xs, nb, o); break;
    case DType::Q4_1x8: dot_x8_vnni<DType::Q4_1x8, M>(w, x, xs, nb, o); break;
    case DType::Q5_0x8: dot_x8_vnni<DType::Q5_0x8, M>(w, x, xs, nb, o); break;
    default: dot_x8_vnni<DType::Q5_1x8, M>(w, x, xs, nb, o); break;
  }
}

// Rows i0 <= i < i1 of activations times one x8 group: tiles of 4 rows, then the rest.
REASON_VNNI static void dot_x8_rows_vnni(DType t, const uint8_t* w, const uint8_t* x, size_t xs, int64_t i0, int64_t i1,
                                         int64_t nb, float* o /* [i1 - i0][8] */) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) dot_x8_tile_vnni<4>(t, w, x + size_t(i) * xs, xs, nb, o + 8 * (i - i0));
  switch (i1 - i) {
    case 3: dot_x8_tile_vnni<3>(t, w, x + size_t(i) * xs, xs, nb, o + 8 * (i - i0)); break;
    case 2: dot_x8_tile_vnni<2>(t, w, x + size_t(i) * xs, xs, nb, o + 8 * (i - i0)); break;
    case 1: dot_x8_tile_vnni<1>(t, w, x + size_t(i) * xs, xs, nb, o + 8 * (i - i0)); break;
    default: break;
  }
}
#endif  // __AVX512F__
#endif  // __AVX2__ && __FMA__

// One weight row (nb blocks) dotted with one quantised activation row.
static inline float dot_row(DType t, const uint8_t* w, const uint8_t* xq, int64_t nb) {
  const ActQ8* x8 = reinterpret_cast<const ActQ8*>(xq);
  const ActQ8K* xk = reinterpret_cast<const ActQ8K*>(xq);
#if defined(__AVX2__) && defined(__FMA__)
  switch (t) {
    case DType::Q8_0: return dot_q8_0_avx2(w, x8, nb);
    case DType::Q4_0: return dot_q4_0_avx2(w, x8, nb);
    case DType::Q4_1: return dot_q4_1_avx2(w, x8, nb);
    case DType::Q4_K: return dot_k4_k5_avx2(w, xk, nb, false);
    case DType::Q5_K: return dot_k4_k5_avx2(w, xk, nb, true);
    case DType::Q6_K: return dot_q6_k_avx2(w, xk, nb);
    case DType::Q5_0: return dot_q5_0_avx2(w, x8, nb);
    case DType::Q5_1: return dot_q5_1_avx2(w, x8, nb);
    default: return 0.0f;
  }
#else
  switch (t) {
    case DType::Q8_0: return dot_q8_0_scalar(w, x8, nb);
    case DType::Q4_0: return dot_q4_0_scalar(w, x8, nb);
    case DType::Q4_1: return dot_q4_1_scalar(w, x8, nb);
    case DType::Q4_K: return dot_k4_k5_scalar(w, xk, nb, false);
    case DType::Q5_K: return dot_k4_k5_scalar(w, xk, nb, true);
    case DType::Q6_K: return dot_q6_k_scalar(w, xk, nb);
    case DType::Q5_0: return dot_q5_scalar(w, x8, nb, false);
    case DType::Q5_1: return dot_q5_scalar(w, x8, nb, true);
    default: return 0.0f;
  }
#endif
}

#include "../quant_x8.inc"

// out[r] = row r of an x8 group . x: each row's blocks unpacked, then the block format's kernel.
[[maybe_unused]] static void dot_x8_generic(DType t, const uint8_t* w, const uint8_t* xq, int64_t nb, float* out) {
  const DType base = x8_base_format(t);
  const size_t xb = size_t(x8_group_block_bytes(base));
  const bool k_quant = base == DType::Q4_K || base == DType::Q5_K || base == DType::Q6_K;
  const size_t act = k_quant ? sizeof(ActQ8K) : sizeof(ActQ8);
  for (int r = 0; r < 8; ++r) out[r] = 0.0f;
  uint8_t block[256];  // one block of the base format (Q6_K's 210 bytes at most)
  for (int64_t b = 0; b < nb; ++b)
    for (int r = 0; r < 8; ++r) {
      x8_row_block(base, w + size_t(b) * xb, r, block);
      out[r] += dot_row(base, block, xq + size_t(b) * act, 1);
    }
}

}  // namespace

void quant_rows(const QuantRowsArgs& a, int64_t j0, int64_t j1) {
  const int64_t nb = a.blocks;
  if (x8_base_format(a.wt) != a.wt) {
#if defined(__AVX512F__)
    const bool vnni = int8_vnni();
#endif
    // Blocks of up to 64 activation rows (they stay in cache while the groups of 8 weight rows
    // pass); decode (m <= 8) is one block.
    constexpr int64_t kRows = 64;
    float o[8 * kRows];
    for (int64_t i0 = 0; i0 < a.m; i0 += kRows) {
      const int64_t i1 = a.m - i0 < kRows ? a.m : i0 + kRows;
      for (int64_t g = j0 / 8; g < j1 / 8; ++g) {
        const uint8_t* w = a.w + size_t(g) * 8 * a.w_row_bytes;
#if defined(__AVX512F__)
        if (vnni)
          dot_x8_rows_vnni(a.wt, w, a.xq, a.xq_row_bytes, i0, i1, nb, o);
        else
#endif
#if defined(__AVX2__) && defined(__FMA__)
          dot_x8_rows_avx2(a.wt, w, a.xq, a.xq_row_bytes, i0, i1, nb, o);
#else
          for (int64_t i = i0; i < i1; ++i) dot_x8_generic(a.wt, w, a.xq + size_t(i) * a.xq_row_bytes, nb, o + 8 * (i - i0));
#endif
        for (int64_t i = i0; i < i1; ++i)
          for (int r = 0; r < 8; ++r) {
            const int64_t j = 8 * g + r;
            const float v = o[8 * (i - i0) + r];
            const float s = a.bias ? v + a.bias[j] : v;
            float* out = a.y + i * a.ldy + j;
            *out = a.beta != 0.0f ? a.beta * *out + s : s;
          }
      }
    }
    return;
  }
  for (int64_t j = j0; j < j1; ++j) {
    const uint8_t* w = a.w + size_t(j) * a.w_row_bytes;
    for (size_t l = 0; l < a.w_row_bytes; l += 64) __builtin_prefetch(w + 4096 + l);  // as the x8 kernels
    for (int64_t i = 0; i < a.m; ++i) {
      float s = dot_row(a.wt, w, a.xq + size_t(i) * a.xq_row_bytes, nb);
      if (a.bias) s += a.bias[j];
      float* out = a.y + i * a.ldy + j;
      *out = a.beta != 0.0f ? a.beta * *out + s : s;
    }
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
