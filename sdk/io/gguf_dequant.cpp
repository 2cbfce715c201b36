// ggml's block formats to f32. The formats the engine also computes with (Q8_0, Q4_0, Q4_1, the
// K-quants) are dequantised by kernels/cpu/quant_formats.cpp; Q5_0 and Q5_1, which are only read,
// are here, written from the dequantize_row_* loops of ggml-quants.c (llama.cpp) with its order of
// operations, so results equal llama.cpp's and gguf-py's (tests/unit/test_gguf.cpp compares with
// gguf-py's dequantize on every type).
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"
#include "reason/kernels/dtype.h"
#include "reason/kernels/quant.h"

namespace reason {

namespace {

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return kernels::f16_to_f32(h);
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

}  // namespace

std::optional<kernels::DType> ggml_quant_dtype(uint32_t type) {
  switch (GgmlType(type)) {
    case GgmlType::Q8_0: return kernels::DType::Q8_0;
    case GgmlType::Q4_0: return kernels::DType::Q4_0;
    case GgmlType::Q4_1: return kernels::DType::Q4_1;
    case GgmlType::Q4_K: return kernels::DType::Q4_K;
    case GgmlType::Q5_K: return kernels::DType::Q5_K;
    case GgmlType::Q6_K: return kernels::DType::Q6_K;
    default: return std::nullopt;
  }
}

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
    case GgmlType::Q5_0: block = q5_0; break;
    case GgmlType::Q5_1: block = q5_1; break;
    default:
      if (!kernels::dequantize_row(*ggml_quant_dtype(type), b, out, n))
        fail(ErrorCode::Internal, "ggml_dequantize: {} rows not dequantised", ti->name);
      return;
  }
  for (int64_t k = 0; k < blocks; ++k) block(b + k * ti->block_bytes, out + k * ti->block_elems);
}

}  // namespace reason
