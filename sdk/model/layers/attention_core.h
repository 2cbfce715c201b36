// The pieces GQA and MLA attention share: causal attention over packed whole sequences in O(rows)
// memory (FlashAttention-2, a backend op) forward and backward, and RoPE's transpose.
#pragma once
#include <cstdint>

#include "model/layers/layer_context.h"
#include "reason/kernels/backend.h"

namespace reason {

// Where each head's vectors live: query head h reads key/value head h / group; token row t of
// head h at base + t * ld + h * (dk for q/k, dv for v/out).
struct AttnShape {
  int64_t heads = 0, group = 1;
  int64_t dk = 0, dv = 0;  // q/k and v values per head
  int64_t q_ld = 0, k_ld = 0, v_ld = 0, o_ld = 0;
  int64_t window = 0;  // > 0: sliding-window attention over the last `window` keys
};

// Causal attention within each sequence of ctx.seq_start (sh.window: sliding; no [T x T] matrix); out is
// overwritten, lse (resized to [T, heads]) keeps each row's log-sum-exp for the backward.
void attention_packed_forward(kernels::Backend& be, const AttnShape& sh, const LayerCtx& ctx, float scale, const float* q,
                              const float* k, const float* v, float* out, DevF& lse);

// dq, dk, dv (laid out as q, k, v; overwritten) from dout (laid out as out), recomputing the
// probabilities tile by tile from the forward's out and lse.
void attention_packed_backward(kernels::Backend& be, const AttnShape& sh, const LayerCtx& ctx, float scale, const float* q,
                               const float* k, const float* v, const float* out, const DevF& lse,
                               const float* dout, float* dq, float* dk, float* dv);

// The transpose of the rotation on the first rot dims of each head (token t head h at
// dx + t * stride + h * hd), i.e. the gradient through the backend's rope (interleaved: MLA's
// rope_interleave pairs).
void rope_backward(const LayerCtx& ctx, float* dx, int64_t T, int64_t heads, int64_t hd, int64_t rot, int64_t stride,
                   bool interleaved);

}  // namespace reason
