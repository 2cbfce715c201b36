// Matmul with block-quantised weights (quant.h), used as stored, never expanded to f32 whole:
//   m <= kSmallM (decode): each activation row is quantised to int8 blocks (ActQ8 / ActQ8K) once,
//     then every weight row is dotted with them by the ISA path's integer kernels (quant_dot.cpp),
//     threads taking chunks of weight rows;
//   larger m (prefill): weight panels are dequantised to f32 (a few MB, reused by all m rows) and
//     multiplied by oneDNN's f32 GEMM with the f32 activations (matmul_onednn.cpp).
// So decode rounds the activations to 8 bits per block (as llama.cpp does) and prefill does not: the
// two differ by that rounding, well inside the weights' own quantisation error.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "cpu_ops.h"
#include "isa_ops.h"
#include "reason/kernels/quant.h"

namespace reason::kernels::cpu {

namespace {

// Round half to even (the FPU's default mode), as ggml's nearest_int.
inline int nearest(float v) { return int(std::nearbyint(v)); }

// ggml's quantize_row_q8_0 / q8_1 (the activations of Q8_0, Q4_x and Q5_x dot products).
void quantize_act_q8(const float* x, int64_t k, ActQ8* out) {
  for (int64_t b = 0; b < k / 32; ++b, x += 32) {
    float amax = 0.0f;
    for (int l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(x[l]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int l = 0; l < 32; ++l) {
      out[b].qs[l] = int8_t(std::clamp(nearest(x[l] * id), -127, 127));
      sum += out[b].qs[l];
    }
    // Stored as f16, as ggml's block_q8_0 / block_q8_1 hold them (q from the unrounded scale).
    out[b].d = f16_to_f32(f32_to_f16(d));
    out[b].s = f16_to_f32(f32_to_f16(d * float(sum)));
    out[b].sum = sum;
  }
}

// ggml's quantize_row_q8_K_ref: the scale from the signed value of largest magnitude.
void quantize_act_q8k(const float* x, int64_t k, ActQ8K* out) {
  for (int64_t b = 0; b < k / 256; ++b, x += 256) {
    float max = 0.0f, amax = 0.0f;
    for (int l = 0; l < 256; ++l)
      if (std::fabs(x[l]) > amax) {
        amax = std::fabs(x[l]);
        max = x[l];
      }
    ActQ8K& o = out[b];
    if (amax == 0.0f) {
      o = ActQ8K{};
      continue;
    }
    const float iscale = -127.0f / max;
    for (int l = 0; l < 256; ++l) o.qs[l] = int8_t(std::clamp(nearest(iscale * x[l]), -127, 127));
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += o.qs[16 * j + l];
      o.bsums[j] = int16_t(s);
    }
    o.d = 1.0f / iscale;
  }
}

bool k_quant(DType t) { return dtype_block_elems(t) == 256; }

}  // namespace

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
  if (a.m > kSmallM) return matmul_dequantized(a, ldx, ldy);

  // Activation rows, quantised once (the weights are the stream; these stay in cache).
  const int64_t blocks = a.k / block;
  const size_t row_bytes = size_t(blocks) * (k_quant(a.w_dtype) ? sizeof(ActQ8K) : sizeof(ActQ8));
  uint8_t* xq = static_cast<uint8_t*>(thread_scratch(row_bytes * size_t(a.m), 0));
  for (int64_t i = 0; i < a.m; ++i) {
    if (k_quant(a.w_dtype))
      quantize_act_q8k(a.x + i * ldx, a.k, reinterpret_cast<ActQ8K*>(xq + size_t(i) * row_bytes));
    else
      quantize_act_q8(a.x + i * ldx, a.k, reinterpret_cast<ActQ8*>(xq + size_t(i) * row_bytes));
  }
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
  const IsaOps& ops = isa_ops();
  const int64_t chunk = 16;  // a multiple of the x8 layouts' 8 rows
  const int64_t nchunks = (a.n + chunk - 1) / chunk;
  // Dynamic chunks: a thread that loses its core to another process leaves its share to the others
  // instead of holding up the whole matmul.
#pragma omp parallel for num_threads(cpu_threads()) schedule(dynamic, 2)
  for (int64_t c = 0; c < nchunks; ++c) ops.quant_rows(q, c * chunk, std::min(a.n, (c + 1) * chunk));
}

}  // namespace reason::kernels::cpu
