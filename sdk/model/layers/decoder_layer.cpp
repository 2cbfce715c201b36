#include "model/layers/decoder_layer.h"

#include "model/layers/attention.h"
#include "model/layers/mlp.h"
#include "model/layers/rmsnorm.h"
#include "reason/kernels/backend.h"

namespace reason {

void decoder_layer_forward(const LayerCtx& ctx, const DecoderLayer& ly, int64_t layer, DevF& x,
                           LayerActs& a, int64_t* expert_load) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  const int64_t T = ctx.rows, d = c.hidden_size;
  if (ctx.keep_inputs) a.x_in.copy_from(be, x);
  a.rstd1.resize(be, size_t(T));
  a.h1.resize(be, size_t(T * d));
  rmsnorm_forward(be, x.data(), ly.attn_norm, a.h1.data(), a.rstd1.data(), T, d, c.rms_norm_eps);
  ctx.lap(ForwardOp::RmsNorm);
  if (c.mla) {
    mla_forward(ctx, ly, layer, a);
    ctx.lap(ForwardOp::Attention);
  } else {
    gqa_forward(ctx, ly, layer, a);
  }
  a.tmp.resize(be, size_t(T * d));
  linear_forward(be, ly.o, a.att.data(), T, a.tmp.data(), ctx.keep_inputs);
  ctx.lap(ForwardOp::OProj, double(ly.o.w.nbytes()));
  be.add_inplace(x.data(), a.tmp.data(), T * d);
  ctx.lap(ForwardOp::ResidualAdd);
  if (ctx.keep_inputs) a.tmp.release();  // the backward does not need o_proj's output

  if (ctx.keep_inputs) a.x_mid.copy_from(be, x);
  a.rstd2.resize(be, size_t(T));
  a.h2.resize(be, size_t(T * d));
  rmsnorm_forward(be, x.data(), ly.mlp_norm, a.h2.data(), a.rstd2.data(), T, d, c.rms_norm_eps);
  ctx.lap(ForwardOp::RmsNorm);
  const float* out;
  if (ly.is_moe) {
    a.ffn_out.resize(be, size_t(T * d));
    moe_forward(be, ly.moe, a.h2.data(), T, d, a.ffn_out.data(), a, expert_load, ctx.keep_inputs);
    out = a.ffn_out.data();
    ctx.lap(ForwardOp::Moe);
  } else {
    mlp_forward(be, ly.mlp, a.h2.data(), T, d, a.mlp, ctx.laps, ctx.keep_inputs);
    out = a.mlp.y.data();
  }
  be.add_inplace(x.data(), out, T * d);
  ctx.lap(ForwardOp::ResidualAdd);
  if (ctx.keep_inputs) {  // nor the FFN block's output (the experts' own outputs stay: the router's gradient needs them)
    a.ffn_out.release();
    if (!ly.is_moe) a.mlp.y.release();
  }
}

void decoder_layer_backward(const LayerCtx& ctx, const DecoderLayer& ly, const LayerActs& a, DevF& dx,
                            const ParamGrads& g, AuxLoss aux) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  const int64_t T = ctx.rows, d = c.hidden_size;
  // FFN: x += ffn(rmsnorm(x)); dx keeps the residual path's gradient and gains the norm's.
  DevF dh;
  dh.zeros(be, size_t(T * d));
  if (ly.is_moe)
    moe_backward(be, ly.moe, a.h2.data(), T, d, a, dx.data(), dh.data(), g, *ctx.seq_start, aux.alpha, aux.weight);
  else
    mlp_backward(be, ly.mlp, a.h2.data(), T, a.mlp, dx.data(), dh.data(), false, g);
  rmsnorm_backward(be, a.x_mid.data(), ly.mlp_norm, a.rstd2.data(), dh.data(), dx.data(), T, d, g);
  // Attention: x += o(attn(rmsnorm(x)))
  DevF datt(be, a.att.size());
  linear_backward(be, ly.o, a.att.data(), dx.data(), T, datt.data(), false, g);
  if (c.mla)
    mla_backward(ctx, ly, a, datt.data(), dh.data(), g);
  else
    gqa_backward(ctx, ly, a, datt.data(), dh.data(), g);
  rmsnorm_backward(be, a.x_in.data(), ly.attn_norm, a.rstd1.data(), dh.data(), dx.data(), T, d, g);
}

}  // namespace reason
