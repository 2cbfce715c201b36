// ggml's block formats (quant.h) to and from f32, written from the layouts, dequantize_row_* and
// quantize_row_*_ref loops of ggml-quants.c (llama.cpp, MIT): no Debian 12 package provides ggml,
// and this is the reference arithmetic, order of operations included, so dequantised values equal
// llama.cpp's and gguf-py's and quantised bytes equal llama-quantize's (tests/unit/test_quant.cpp
// checks both against fixtures those tools wrote).
// Generic code (the Debian baseline, no FMA contraction): the results do not depend on the ISA path.
#include "reason/kernels/quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

namespace reason::kernels {

namespace {

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

#include "quant_blocks.inc"
#include "quant_x8.inc"

// ---- quantisers (quantize_row_*_ref) -------------------------------------------------------

void put_half(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// ggml's nearest_int: round half to even through the float adder (|v| <= 2^22).
int nearest_int(float v) {
  float f = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &f, 4);
  return (i & 0x007fffff) - 0x00400000;
}

void quant_q8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  int8_t* qs = reinterpret_cast<int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) qs[j] = int8_t(std::round(x[j] * id));
}

void quant_q4_0(const float* x, uint8_t* b) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    const uint8_t lo = uint8_t(std::min(15, int(int8_t(x[j] * id + 8.5f))));
    const uint8_t hi = uint8_t(std::min(15, int(int8_t(x[j + 16] * id + 8.5f))));
    qs[j] = uint8_t(lo | (hi << 4));
  }
}

void quant_q4_1(const float* x, uint8_t* b) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  put_half(b + 2, min);
  uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    const uint8_t lo = uint8_t(std::min(15, int(int8_t((x[j] - min) * id + 0.5f))));
    const uint8_t hi = uint8_t(std::min(15, int(int8_t((x[j + 16] - min) * id + 0.5f))));
    qs[j] = uint8_t(lo | (hi << 4));
  }
}

// Q5_0 and Q5_1 (quantize_row_q5_0_ref / q5_1_ref): Q4_0 / Q4_1 with 32 levels; bit 4 of element
// e goes to bit e of qh.
void quant_q5(const float* x, uint8_t* b, bool one) {
  float d, id, min = 0.0f;
  if (one) {
    float max = -FLT_MAX;
    min = FLT_MAX;
    for (int j = 0; j < 32; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    d = (max - min) / 31.0f;
  } else {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    d = max / -16.0f;
  }
  id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  if (one) put_half(b + 2, min);
  uint8_t* qs = b + (one ? 8 : 6);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    uint8_t lo, hi;
    if (one) {
      lo = uint8_t((x[j] - min) * id + 0.5f);
      hi = uint8_t((x[j + 16] - min) * id + 0.5f);
    } else {
      lo = uint8_t(std::min(31, int(int8_t(x[j] * id + 16.5f))));
      hi = uint8_t(std::min(31, int(int8_t(x[j + 16] * id + 16.5f))));
    }
    qs[j] = uint8_t((lo & 0x0F) | ((hi & 0x0F) << 4));
    qh |= uint32_t((lo & 0x10u) >> 4) << j;
    qh |= uint32_t((hi & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(b + (one ? 4 : 2), &qh, 4);
}
void quant_q5_0(const float* x, uint8_t* b) { quant_q5(x, b, false); }
void quant_q5_1(const float* x, uint8_t* b) { quant_q5(x, b, true); }

// make_qkx2_quants: a scale and a min for n values in [0, nmax] minimising the weighted error,
// searched over nstep + 1 candidate scales.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = float(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = uint8_t(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = diff * diff;
    best_mad += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = uint8_t(l);
      const float w = weights[i];
      sum_l += w * float(l);
      sum_l2 += w * float(l) * float(l);
      sum_xl += w * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = diff * diff;
        mad += weights[i] * diff;
      }
      if (mad < best_mad) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

void quant_q4_k(const float* x, uint8_t* b) {
  uint8_t L[256], Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t* sc = b + 4;
  std::memset(sc, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = uint8_t(std::min(63, int(uint8_t(nearest_int(inv_scale * scales[j])))));
    const uint8_t lm = uint8_t(std::min(63, int(uint8_t(nearest_int(inv_min * mins[j])))));
    if (j < 4) {
      sc[j] = ls;
      sc[j + 4] = lm;
    } else {
      sc[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
      sc[j - 4] |= uint8_t((ls >> 4) << 6);
      sc[j] |= uint8_t((lm >> 4) << 6);
    }
  }
  put_half(b, max_scale / 63.f);
  put_half(b + 2, max_min / 63.f);
  const float d0 = half(b), dmin0 = half(b + 2);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    scale_min_k4(j, sc, &s, &m);
    const float d = d0 * s;
    if (d == 0.0f) continue;
    const float dm = dmin0 * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = uint8_t(std::max(0, std::min(15, l)));
    }
  }
  uint8_t* q = b + 16;
  for (int j = 0; j < 256; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

// make_qx_quants with rmse_type 1 and no importance weights: a symmetric scale for n values in
// [-nmax, nmax - 1], refined over 18 candidate scales.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -float(nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = int8_t(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * float(l);
      suml2 += w * float(l) * float(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

void quant_q6_k(const float* x, uint8_t* b) {
  int8_t L[256];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    scales[ib] = scale;
    if (std::fabs(scale) > max_abs_scale) {
      max_abs_scale = std::fabs(scale);
      max_scale = scale;
    }
  }
  std::memset(b, 0, 210);
  if (max_abs_scale < 1e-15f) return;  // d = 0 (all zero)
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  const float iscale = -128.f / max_scale;
  put_half(b + 208, 1 / iscale);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
  const float d0 = half(b + 208);
  for (int j = 0; j < 16; ++j) {
    const float d = d0 * sc[j];
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      int l = nearest_int(x[16 * j + ii] / d);
      l = std::max(-32, std::min(31, l));
      L[16 * j + ii] = int8_t(l + 32);
    }
  }
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  for (int j = 0; j < 256; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = uint8_t(q1 | (q3 << 4));
      ql[l + 32] = uint8_t(q2 | (q4 << 4));
      qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                      ((L[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

using BlockToF32 = void (*)(const uint8_t*, float*);
using F32ToBlock = void (*)(const float*, uint8_t*);

BlockToF32 dequantizer(DType t) {
  switch (t) {
    case DType::Q8_0: return q8_0;
    case DType::Q4_0: return q4_0;
    case DType::Q4_1: return q4_1;
    case DType::Q4_K: return q4_k;
    case DType::Q5_K: return q5_k;
    case DType::Q6_K: return q6_k;
    case DType::Q5_0: return q5_0;
    case DType::Q5_1: return q5_1;
    default: return nullptr;
  }
}

F32ToBlock quantizer(DType t) {
  switch (t) {
    case DType::Q8_0: return quant_q8_0;
    case DType::Q4_0: return quant_q4_0;
    case DType::Q4_1: return quant_q4_1;
    case DType::Q4_K: return quant_q4_k;
    case DType::Q6_K: return quant_q6_k;
    case DType::Q5_0: return quant_q5_0;
    case DType::Q5_1: return quant_q5_1;
    default: return nullptr;
  }
}

}  // namespace

bool dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const BlockToF32 f = dequantizer(t);
  const int64_t be = dtype_block_elems(t);
  if (!f || n < 0 || n % be) return false;
  const uint8_t* b = static_cast<const uint8_t*>(src);
  const size_t bb = dtype_block_bytes(t);
  for (int64_t k = 0; k < n / be; ++k) f(b + size_t(k) * bb, dst + k * be);
  return true;
}

bool quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const F32ToBlock f = quantizer(t);
  const int64_t be = dtype_block_elems(t);
  if (!f || n < 0 || n % be) return false;
  uint8_t* b = static_cast<uint8_t*>(dst);
  const size_t bb = dtype_block_bytes(t);
  for (int64_t k = 0; k < n / be; ++k) f(src + k * be, b + size_t(k) * bb);
  return true;
}

bool can_quantize(DType t) { return quantizer(t) != nullptr; }

DType x8_layout_of(DType t) {
  switch (t) {
    case DType::Q8_0: return DType::Q8_0x8;
    case DType::Q4_0: return DType::Q4_0x8;
    case DType::Q4_1: return DType::Q4_1x8;
    case DType::Q5_0: return DType::Q5_0x8;
    case DType::Q5_1: return DType::Q5_1x8;
    case DType::Q4_K: return DType::Q4_Kx8;
    case DType::Q5_K: return DType::Q5_Kx8;
    case DType::Q6_K: return DType::Q6_Kx8;
    default: return t;
  }
}

namespace {

// Whether x8 is an x8 layout and k whole blocks of it.
bool x8_args(DType x8, int64_t rows, int64_t k) {
  return dtype_row_group(x8) == 8 && rows >= 0 && k >= 0 && k % dtype_block_elems(x8) == 0;
}

// Rows [8g, 8g + 8) between the layouts: `packed` is the group in x8, `base` its 8 rows in the
// block format.
void x8_group(DType x8, uint8_t* packed, uint8_t* base, int64_t k, bool to_x8) {
  const DType t = dtype_block_format(x8);
  const size_t bb = dtype_block_bytes(t), xb = size_t(x8_group_block_bytes(t)), row_bytes = dtype_nbytes(t, k);
  for (int64_t b = 0; b < k / dtype_block_elems(t); ++b) {
    uint8_t* rows[8];
    for (int r = 0; r < 8; ++r) rows[r] = base + size_t(r) * row_bytes + size_t(b) * bb;
    uint8_t* xblock = packed + size_t(b) * xb;
    if (dtype_block_elems(t) == 256) {
      x8_k_block(t, xblock, rows, to_x8);
    } else {
      x8_copy_block(t, xblock, rows, to_x8);
    }
  }
}

bool x8_convert(DType x8, const void* src, void* dst, int64_t rows, int64_t k, bool to_x8) {
  if (!x8_args(x8, rows, k) || rows % 8) return false;
  const size_t packed_group = 8 * dtype_nbytes(x8, k), base_group = 8 * dtype_nbytes(dtype_block_format(x8), k);
  uint8_t* in = const_cast<uint8_t*>(static_cast<const uint8_t*>(src));
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < rows / 8; ++g) {
    if (to_x8)
      x8_group(x8, out + size_t(g) * packed_group, in + size_t(g) * base_group, k, true);
    else
      x8_group(x8, in + size_t(g) * packed_group, out + size_t(g) * base_group, k, false);
  }
  return true;
}

}  // namespace

bool pack_x8(DType x8, const void* src, void* dst, int64_t rows, int64_t k) { return x8_convert(x8, src, dst, rows, k, true); }

bool unpack_x8(DType x8, const void* src, void* dst, int64_t rows, int64_t k) {
  return x8_convert(x8, src, dst, rows, k, false);
}

bool unpack_x8_row(DType x8, const void* src, int64_t r, int64_t k, void* dst) {
  if (!x8_args(x8, r + 1, k) || r < 0) return false;
  const DType t = dtype_block_format(x8);
  const size_t bb = dtype_block_bytes(t), xb = size_t(x8_group_block_bytes(t));
  const uint8_t* group = static_cast<const uint8_t*>(src) + size_t(r / 8) * 8 * dtype_nbytes(x8, k);
  for (int64_t b = 0; b < k / dtype_block_elems(t); ++b)
    x8_row_block(t, group + size_t(b) * xb, int(r % 8), static_cast<uint8_t*>(dst) + size_t(b) * bb);
  return true;
}

}  // namespace reason::kernels
