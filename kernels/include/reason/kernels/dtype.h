// Element types of tensors and their scalar conversions.
// Pure functions, no state: safe from any thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace reason::kernels {

// Storage types. Compute happens in f32 (or bf16 inputs with f32 accumulation).
enum class DType : uint8_t {
  F32 = 0,
  BF16 = 1,
  F16 = 2,
  F8_E4M3 = 3,  // storage only (DeepSeek-V3 FP8 checkpoints), dequantised before compute
  // ggml's block-quantised formats (llama.cpp's byte layouts, so GGUF tensors are used as stored;
  // quant.h has the formats): matmul weights and embedding tables only, rows of whole blocks.
  Q8_0 = 4,  // blocks of 32: f16 d, 32 x int8                       (34 bytes, 8.5 bits/weight)
  Q4_0 = 5,  // blocks of 32: f16 d, 16 bytes of 4-bit q, x = (q - 8) d (18 bytes)
  Q4_1 = 6,  // blocks of 32: f16 d, f16 m, 16 bytes, x = q d + m       (20 bytes)
  Q4_K = 7,  // super-blocks of 256: 8 sub-blocks with 6-bit scales and mins (144 bytes, 4.5 bits)
  Q5_K = 8,  // super-blocks of 256: Q4_K plus a fifth bit per weight       (176 bytes, 5.5 bits)
  Q6_K = 9,  // super-blocks of 256: 16 sub-blocks of 16 with int8 scales   (210 bytes, 6.6 bits)
  Q5_0 = 10, // blocks of 32: f16 d, 32 fifth bits, 16 bytes, x = (q - 16) d (22 bytes)
  Q5_1 = 11, // blocks of 32: f16 d, f16 m, 32 fifth bits, 16 bytes, x = q d + m (24 bytes)
  // The same blocks, 8 rows interleaved (quant.h's "x8" layouts): the CPU backend's in-memory form
  // of a matrix whose row count is a multiple of 8, so the decode kernel computes 8 rows at once
  // (one int32 lane per row). The bytes of 8 rows equal 8 rows of the base type (but Q4_Kx8's and
  // Q5_Kx8's); a single row is not contiguous, so only whole groups of 8 rows are read or converted
  // (quant.h).
  Q8_0x8 = 12,
  Q4_0x8 = 13,
  Q4_1x8 = 14,
  Q5_0x8 = 15,
  Q5_1x8 = 16,
  Q4_Kx8 = 17,  // scales and mins unpacked to bytes: 148 bytes per row super-block (Q4_K 144)
  Q5_Kx8 = 18,  // the same: 180 bytes per row super-block (Q5_K 176)
  Q6_Kx8 = 19,
};

inline bool dtype_is_quantized(DType t) { return uint8_t(t) >= uint8_t(DType::Q8_0) && uint8_t(t) <= uint8_t(DType::Q6_Kx8); }

// Rows stored interleaved: 8 for the x8 layouts, 1 otherwise.
inline int64_t dtype_row_group(DType t) { return uint8_t(t) >= uint8_t(DType::Q8_0x8) && uint8_t(t) <= uint8_t(DType::Q6_Kx8) ? 8 : 1; }

// The block format of an x8 layout (Q8_0x8 -> Q8_0); any other type itself.
inline DType dtype_block_format(DType t) {
  switch (t) {
    case DType::Q8_0x8: return DType::Q8_0;
    case DType::Q4_0x8: return DType::Q4_0;
    case DType::Q4_1x8: return DType::Q4_1;
    case DType::Q5_0x8: return DType::Q5_0;
    case DType::Q5_1x8: return DType::Q5_1;
    case DType::Q4_Kx8: return DType::Q4_K;
    case DType::Q5_Kx8: return DType::Q5_K;
    case DType::Q6_Kx8: return DType::Q6_K;
    default: return t;
  }
}

// Elements per block: 1 for the scalar types, 32 or 256 for the quantised ones.
inline int64_t dtype_block_elems(DType t) {
  switch (dtype_block_format(t)) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: return 32;
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: return 256;
    default: return 1;
  }
}

// Bytes per block (per element for the scalar types; 0 for an unknown value).
inline size_t dtype_block_bytes(DType t) {
  if (t == DType::Q4_Kx8) return 148;
  if (t == DType::Q5_Kx8) return 180;
  switch (dtype_block_format(t)) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::F8_E4M3: return 1;
    case DType::Q8_0: return 34;
    case DType::Q4_0: return 18;
    case DType::Q4_1: return 20;
    case DType::Q4_K: return 144;
    case DType::Q5_K: return 176;
    case DType::Q6_K: return 210;
    case DType::Q5_0: return 22;
    case DType::Q5_1: return 24;
    default: return 0;
  }
}

// Bytes of one element of a scalar type; 0 for the quantised types, whose sizes are per block
// (dtype_block_bytes): code that indexes elements must not see them.
inline size_t dtype_size(DType t) { return dtype_is_quantized(t) ? 0 : dtype_block_bytes(t); }

// Bytes of n elements (n a multiple of dtype_block_elems(t)).
inline size_t dtype_nbytes(DType t, int64_t n) { return size_t(n / dtype_block_elems(t)) * dtype_block_bytes(t); }

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::F8_E4M3: return "f8_e4m3";
    case DType::Q8_0: return "q8_0";
    case DType::Q4_0: return "q4_0";
    case DType::Q4_1: return "q4_1";
    case DType::Q4_K: return "q4_k";
    case DType::Q5_K: return "q5_k";
    case DType::Q6_K: return "q6_k";
    case DType::Q5_0: return "q5_0";
    case DType::Q5_1: return "q5_1";
    case DType::Q8_0x8: return "q8_0x8";
    case DType::Q4_0x8: return "q4_0x8";
    case DType::Q4_1x8: return "q4_1x8";
    case DType::Q5_0x8: return "q5_0x8";
    case DType::Q5_1x8: return "q5_1x8";
    case DType::Q4_Kx8: return "q4_kx8";
    case DType::Q5_Kx8: return "q5_kx8";
    case DType::Q6_Kx8: return "q6_kx8";
  }
  return "?";
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN stays NaN (as torch does).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) {
        man <<= 1;
        --exp;
      }
      man &= 0x3ffu;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half, round to nearest even.
inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t aexp = (u >> 23) & 0xffu;
  uint32_t man = u & 0x7fffffu;
  if (aexp == 0xff) return uint16_t(sign | 0x7c00u | (man ? 0x200u : 0));
  int32_t e = int32_t(aexp) - 127 + 15;
  if (e >= 31) return uint16_t(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return uint16_t(sign);
    man |= 0x800000u;
    uint32_t shift = uint32_t(14 - e);
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | (uint32_t(e) << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return uint16_t(half);
}

// OCP FP8 E4M3 (fn: no infinities, 0x7f/0xff are NaN), as torch.float8_e4m3fn.
inline float f8e4m3_to_f32(uint8_t v) {
  uint32_t sign = uint32_t(v & 0x80u) << 24;
  uint32_t exp = (v >> 3) & 0xfu;
  uint32_t man = v & 0x7u;
  if (exp == 0xf && man == 0x7) {
    uint32_t u = sign | 0x7fc00000u;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  float f;
  if (exp == 0) {
    f = float(man) * (1.0f / 512.0f);  // 2^-6 * man/8
  } else {
    uint32_t u = ((exp + 127 - 7) << 23) | (man << 20);
    std::memcpy(&f, &u, 4);
  }
  return sign ? -f : f;
}

// Converts n elements of `src` (type t) to f32 (quantised types: n whole blocks, quant.h).
// Returns false for an unknown type or partial blocks.
bool convert_to_f32(float* dst, const void* src, DType t, size_t n);
// Converts n f32 elements to `t` (F32, BF16, F16, or whole blocks of a type quant.h's
// quantize_row supports). Returns false otherwise.
bool convert_from_f32(void* dst, const float* src, DType t, size_t n);

}  // namespace reason::kernels
