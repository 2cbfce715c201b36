// Matmul with block-quantised weights (quant.h), used as stored, never expanded to f32 whole:
//   m <= kSmallM (decode): each activation row is quantised to int8 blocks (ActQ8 / ActQ8K) once,
//     then every weight row is dotted with them by the ISA path's integer kernels (quant_dot.cpp),
//     threads taking chunks of weight rows;
//   larger m (prefill): an x8 matrix on the AVX2 and AVX-512 paths takes the same route, the kernels
//     tiling the activation rows (an int8 GEMM: measured faster than the f32 one below on Zen 4,
//     1.2-1.4x with AVX2's maddubs, 1.8-2x with AVX512-VNNI); other matrices, and every one on the
//     generic path, are dequantised panel by panel to f32 (a few MB, reused by all m rows) and
//     multiplied by oneDNN's f32 GEMM with the f32 activations (matmul_onednn.cpp).
// So the integer route rounds the activations to 8 bits per block (as llama.cpp does) and the f32
// one does not: the two differ by that rounding, well inside the weights' own quantisation error.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "cpu_ops.h"
#include "isa_ops.h"
#include "row_ranges.h"
#include "reason/kernels/quant.h"

namespace reason::kernels::cpu {

namespace {

bool k_quant(DType t) { return dtype_block_elems(t) == 256; }

}  // namespace

float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

void matmul_quant(const MatmulArgs& a) {
  const int64_t block = dtype_block_elems(a.w_dtype);
  if (a.k % block)
    throw BackendError("cpu matmul: a " + std::string(dtype_name(a.w_dtype)) + " weight needs k a multiple of " +
                       std::to_string(block) + ", got " + std::to_string(a.k));
  if (a.n % dtype_row_group(a.w_dtype))
    throw BackendError("cpu matmul: a " + std::string(dtype_name(a.w_dtype)) + " weight needs n a multiple of 8, got " +
                       std::to_string(a.n));
  const int64_t ldx = a.ldx ? a.ldx : a.k;
  const int64_t ldy = a.ldy ? a.ldy : a.n;
  const IsaOps& ops = isa_ops();
  const bool int8_gemm = dtype_row_group(a.w_dtype) == 8 && ops.isa != CpuIsa::Generic;
  if ((a.m > kSmallM && !int8_gemm) || a.exact) return matmul_dequantized(a, ldx, ldy);

  // Activation rows, quantised once (the weights are the stream; these stay in cache).
  const int64_t blocks = a.k / block;
  const size_t row_bytes = size_t(blocks) * (k_quant(a.w_dtype) ? sizeof(ActQ8K) : sizeof(ActQ8));
  uint8_t* xq = static_cast<uint8_t*>(thread_scratch(row_bytes * size_t(a.m), 0));
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (a.m > kSmallM)
  for (int64_t i = 0; i < a.m; ++i) ops.quantize_act(a.x + i * ldx, a.k, k_quant(a.w_dtype), xq + size_t(i) * row_bytes);
  QuantRowsArgs q;
  q.wt = a.w_dtype;
  q.w = static_cast<const uint8_t*>(a.w);
  q.w_row_bytes = dtype_nbytes(a.w_dtype, a.k);
  q.blocks = blocks;
  q.xq = xq;
  q.xq_row_bytes = row_bytes;
  q.m = a.m;
  q.y = a.y;
  q.ldy = ldy;
  q.bias = a.bias;
  q.beta = a.beta;
  // Chunks of weight rows, a multiple of the x8 layouts' 8 rows; larger for prefill, where each
  // chunk reads all m activation rows.
  const int64_t chunk = a.m > kSmallM ? 64 : 16;
  const int64_t nchunks = (a.n + chunk - 1) / chunk;
  // Each thread streams its own contiguous range, then takes what is left of the others' (row_ranges.h).
  if (nchunks == 0) return;
  const int nt = int(std::min<int64_t>(cpu_threads(), nchunks));
  RowRanges work(nchunks, nt);
#pragma omp parallel num_threads(nt)
  for (int64_t c; (c = work.next(omp_get_thread_num())) >= 0;) ops.quant_rows(q, c * chunk, std::min(a.n, (c + 1) * chunk));
}

}  // namespace reason::kernels::cpu
