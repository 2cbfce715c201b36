// ggml's block formats to f32, written from the layouts and dequantize_row_* loops of
// ggml-quants.c (llama.cpp): no Debian 12 package provides ggml, and this is the reference
// arithmetic, order of operations included, so results equal llama.cpp's and gguf-py's
// (tests/unit/test_gguf.cpp compares with gguf-py's dequantize on every type).
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"
#include "reason/kernels/dtype.h"

namespace reason {

namespace {

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return kernels::f16_to_f32(h);
}

// Q4_0: d (f16), 16 bytes of 4-bit quants; x = (q - 8) d, low nibbles first.
void q4_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(int(qs[j] & 0x0F) - 8) * d;
    y[j + 16] = float(int(qs[j] >> 4) - 8) * d;
  }
}

// Q4_1: d, m (f16), 16 bytes; x = q d + m.
void q4_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(qs[j] & 0x0F) * d + m;
    y[j + 16] = float(qs[j] >> 4) * d + m;
  }
}

// Q5_0: d, 32 high bits (qh), 16 bytes; x = (q - 16) d.
void q5_0(const uint8_t* b, float* y) {
  const float d = half(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const uint8_t h0 = uint8_t(((qh >> j) << 4) & 0x10), h1 = uint8_t((qh >> (j + 12)) & 0x10);
    y[j] = float(int((qs[j] & 0x0F) | h0) - 16) * d;
    y[j + 16] = float(int((qs[j] >> 4) | h1) - 16) * d;
  }
}

// Q5_1: d, m, qh, 16 bytes; x = q d + m.
void q5_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const uint8_t h0 = uint8_t(((qh >> j) << 4) & 0x10), h1 = uint8_t((qh >> (j + 12)) & 0x10);
    y[j] = float((qs[j] & 0x0F) | h0) * d + m;
    y[j + 16] = float((qs[j] >> 4) | h1) * d + m;
  }
}

// Q8_0: d, 32 int8; x = q d.
void q8_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = float(qs[j]) * d;
}

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block (get_scale_min_k4).
void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = uint8_t((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Scale and min of sub-blocks is and is + 1 (the two nibbles of a 32-byte run), as d * sc, dmin * m.
struct SubScales {
  float d1, m1, d2, m2;
};
SubScales sub_scales(const uint8_t* scales, int is, float d, float dmin) {
  uint8_t sc, m;
  scale_min_k4(is, scales, &sc, &m);
  const float d1 = d * sc, m1 = dmin * m;
  scale_min_k4(is + 1, scales, &sc, &m);
  return {d1, m1, d * sc, dmin * m};
}

// Q4_K: d, dmin (f16), 12 bytes of scales/mins, 128 bytes of 4-bit quants; 8 sub-blocks of 32.
void q4_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  int is = 0;
  for (int j = 0; j < 256; j += 64) {
    const SubScales s = sub_scales(scales, is, d, dmin);
    for (int l = 0; l < 32; ++l) *y++ = s.d1 * float(q[l] & 0x0F) - s.m1;
    for (int l = 0; l < 32; ++l) *y++ = s.d2 * float(q[l] >> 4) - s.m2;
    q += 32;
    is += 2;
  }
}

// Q5_K: d, dmin, 12 bytes of scales/mins, 32 bytes of high bits, 128 bytes of low nibbles.
void q5_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < 256; j += 64) {
    const SubScales s = sub_scales(scales, is, d, dmin);
    for (int l = 0; l < 32; ++l) *y++ = s.d1 * float((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - s.m1;
    for (int l = 0; l < 32; ++l) *y++ = s.d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - s.m2;
    ql += 32;
    is += 2;
    u1 = uint8_t(u1 << 2);
    u2 = uint8_t(u2 << 2);
  }
}

// Q6_K: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, d (f16).
void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half(b + 208);
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

void ggml_dequantize(uint32_t type, const uint8_t* data, int64_t first, int64_t n, float* out) {
  const GgmlTypeInfo* ti = ggml_type_info(type);
  if (!ti) fail(ErrorCode::Unsupported, "ggml type {} cannot be dequantised", type);
  if (first < 0 || n < 0 || first % ti->block_elems || n % ti->block_elems)
    fail(ErrorCode::InvalidArgument, "ggml_dequantize: elements [{}, {}) are not whole {} blocks", first, first + n, ti->name);
  const uint8_t* b = data + (first / ti->block_elems) * int64_t(ti->block_bytes);
  const int64_t blocks = n / ti->block_elems;
  void (*block)(const uint8_t*, float*) = nullptr;
  switch (GgmlType(type)) {
    case GgmlType::F32: std::memcpy(out, b, size_t(n) * 4); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = half(b + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        out[i] = kernels::bf16_to_f32(h);
      }
      return;
    case GgmlType::Q4_0: block = q4_0; break;
    case GgmlType::Q4_1: block = q4_1; break;
    case GgmlType::Q5_0: block = q5_0; break;
    case GgmlType::Q5_1: block = q5_1; break;
    case GgmlType::Q8_0: block = q8_0; break;
    case GgmlType::Q4_K: block = q4_k; break;
    case GgmlType::Q5_K: block = q5_k; break;
    case GgmlType::Q6_K: block = q6_k; break;
  }
  for (int64_t k = 0; k < blocks; ++k) block(b + k * ti->block_bytes, out + k * ti->block_elems);
}

}  // namespace reason
