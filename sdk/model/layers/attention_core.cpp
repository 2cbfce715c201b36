#include "model/layers/attention_core.h"

#include "reason/kernels/backend.h"

namespace reason {

namespace {

kernels::FlashAttnArgs flash_args(const AttnShape& sh, const LayerCtx& ctx, float scale, const float* q, const float* k,
                                  const float* v, float* out, float* lse) {
  kernels::FlashAttnArgs f;
  f.q = q, f.k = k, f.v = v, f.o = out, f.lse = lse;
  f.seq_start = ctx.seq_start_dev;
  f.n_seqs = int(ctx.seq_start->size()) - 1;
  f.n_heads = int(sh.heads), f.n_kv_heads = int(sh.heads / sh.group), f.dk = int(sh.dk), f.dv = int(sh.dv);
  f.q_stride = sh.q_ld, f.k_stride = sh.k_ld, f.v_stride = sh.v_ld, f.o_stride = sh.o_ld;
  f.scale = scale;
  f.window = sh.window;
  return f;
}

}  // namespace

void attention_packed_forward(kernels::Backend& be, const AttnShape& sh, const LayerCtx& ctx, float scale, const float* q,
                              const float* k, const float* v, float* out, DevF& lse) {
  lse.resize(be, size_t(ctx.seq_start->back() * sh.heads));
  be.attention_fwd_train(flash_args(sh, ctx, scale, q, k, v, out, lse.data()));
}

void attention_packed_backward(kernels::Backend& be, const AttnShape& sh, const LayerCtx& ctx, float scale, const float* q,
                               const float* k, const float* v, const float* out, const DevF& lse, const float* dout,
                               float* dq, float* dk, float* dv) {
  kernels::FlashAttnBwdArgs b;
  b.fwd = flash_args(sh, ctx, scale, q, k, v, const_cast<float*>(out), const_cast<float*>(lse.data()));
  DevF delta(be, lse.size());
  b.dout = dout, b.dq = dq, b.dk = dk, b.dv = dv, b.delta = delta.data();
  be.attention_bwd(b);
}

void rope_backward(const LayerCtx& ctx, float* dx, int64_t T, int64_t heads, int64_t hd, int64_t rot, int64_t stride,
                   bool interleaved) {
  ctx.be->rope_bwd(dx, T, int(heads), int(hd), int(rot), stride, ctx.pos, ctx.inv_freq, ctx.rope->attn_factor, interleaved);
}

}  // namespace reason
