// ggml's block-quantised weight formats (DType::Q8_0 ... Q6_K, dtype.h): converting rows to and
// from f32. The byte layouts and the arithmetic are llama.cpp's (ggml-quants.c), so GGUF tensors are
// used as stored and a file this library writes is the file llama-quantize would write:
//   Q8_0  d (f16) | q[32] int8                              x = q d
//   Q4_0  d (f16) | 16 bytes, element j low nibble, j+16 high  x = (q - 8) d
//   Q4_1  d, m (f16) | 16 bytes as Q4_0                       x = q d + m
//   Q5_0  d (f16) | qh (32 bits: bit e is element e's bit 4) | 16 bytes as Q4_0   x = (q - 16) d
//   Q5_1  d, m (f16) | qh | 16 bytes                         x = q d + m
//   Q4_K  d, dmin (f16) | 12 bytes: 8 x (6-bit scale, 6-bit min) | 128 bytes of nibbles
//         (runs of 64: 32 low nibbles then 32 high)           x = d sc_j q - dmin m_j
//   Q5_K  Q4_K's header | 32 bytes of fifth bits | 128 bytes of nibbles
//   Q6_K  128 bytes of low nibbles | 64 bytes of high 2-bit pairs | 16 int8 scales | d (f16)
//                                                           x = d sc_j (q - 32)
// Pure functions, no state: safe from any thread. n is a multiple of dtype_block_elems(t).
#pragma once
#include <cstdint>

#include "reason/kernels/dtype.h"

namespace reason::kernels {

// n elements of the quantised row src to f32 (ggml's dequantize_row_*). Returns false when t is
// not a quantised type or n is not whole blocks.
bool dequantize_row(DType t, const void* src, float* dst, int64_t n);

// n f32 elements to blocks of t with ggml's reference quantisers (quantize_row_*_ref: Q8_0 by the
// block's absolute maximum; Q4_K and Q6_K by the weighted least-squares searches of
// make_qkx2_quants / make_qx_quants), bit for bit what llama-quantize writes without an
// importance matrix. Supported: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K; returns false for other
// types (Q5_K) or partial blocks. Non-finite inputs give unspecified (but memory-safe) blocks: callers check.
bool quantize_row(DType t, const float* src, void* dst, int64_t n);

// Whether quantize_row supports t.
bool can_quantize(DType t);

// The x8 layouts (dtype.h: 8 rows interleaved block by block; kernels/cpu/quant_x8.inc has the
// byte order). x8_layout_of gives the x8 type of block format t (Q8_0 -> Q8_0x8; Q4_0, Q4_1, Q5_0,
// Q5_1, Q4_K likewise) or t itself when it has none. pack_x8 / unpack_x8 convert `rows` rows of k
// elements between the block format and x8 (rows a multiple of 8, k of the block; src and dst do
// not overlap; dtype_nbytes of each side's type); unpack_x8_row writes row r alone in the block
// format (dtype_nbytes(block format, k) bytes). They return false for other types or shapes.
DType x8_layout_of(DType t);
bool pack_x8(DType x8, const void* src, void* dst, int64_t rows, int64_t k);
bool unpack_x8(DType x8, const void* src, void* dst, int64_t rows, int64_t k);
bool unpack_x8_row(DType x8, const void* src, int64_t r, int64_t k, void* dst);

}  // namespace reason::kernels
