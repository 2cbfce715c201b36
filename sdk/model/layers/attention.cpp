// Grouped-query attention (Llama, Qwen2 with q/k/v biases, Qwen3 with per-head q/k RMSNorm):
// q, k, v projections -> (q/k norm) -> RoPE -> causal attention -> a.att (o_proj is the caller's).
#include <cstring>
#include <vector>

#include "model/layers/attention.h"
#include "model/layers/attention_core.h"
#include "model/layers/rmsnorm.h"
#include "reason/kernels/backend.h"

namespace reason {

namespace {

// Appends the chunks' new key/value rows to their cache slots and attends each chunk's queries
// over its slot's whole history.
void attend_cached(const LayerCtx& ctx, int64_t layer, LayerActs& a) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  const int64_t hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, qd = nh * hd, kvd = nkv * hd;
  std::vector<kernels::AttnSeq> seqs(ctx.chunks.size());
  int64_t r = 0;
  for (size_t i = 0; i < ctx.chunks.size(); ++i) {
    const SeqChunk& ch = ctx.chunks[i];
    const int64_t p0 = (*ctx.pos0)[i];
    const kernels::PagedRows kc = ctx.cache->k(ch.slot, layer), vc = ctx.cache->v(ch.slot, layer);
    be.paged_write(kc, p0, 0, a.k.data() + r * kvd, kvd, ch.n, kvd);  // KV append
    be.paged_write(vc, p0, 0, a.v.data() + r * kvd, kvd, ch.n, kvd);
    seqs[i].q = a.q.data() + r * qd;
    seqs[i].out = a.att.data() + r * qd;
    seqs[i].n_q = ch.n;
    seqs[i].q_pos0 = p0;
    seqs[i].k_blocks = kc.blocks;
    seqs[i].v_blocks = vc.blocks;
    seqs[i].n_blocks = kc.n_blocks;
    r += ch.n;
  }
  kernels::AttnArgs aa;
  aa.seqs = seqs.data();
  aa.n_seqs = int(seqs.size());
  aa.n_heads = int(nh);
  aa.n_kv_heads = int(nkv);
  aa.head_dim = int(hd);
  aa.q_stride = qd;
  aa.out_stride = qd;
  aa.kv_stride = kvd;
  aa.kv_dtype = ctx.cache->dtype();
  aa.block_size = ctx.cache->block_size();
  aa.scale = c.attention_scale();
  aa.window = c.window_of(layer);
  ctx.lap(ForwardOp::KvStore);
  be.attention(aa);
}

AttnShape gqa_shape(const ModelConfig& c, int64_t window) {
  const int64_t hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads;
  return AttnShape{nh, nh / nkv, hd, hd, nh * hd, nkv * hd, nkv * hd, nh * hd, window};
}

}  // namespace

void gqa_forward(const LayerCtx& ctx, const DecoderLayer& ly, int64_t layer, LayerActs& a) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  const RopeTable& rope = *ctx.rope;
  const int64_t T = ctx.rows, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, qd = nh * hd, kvd = nkv * hd;
  const bool qk_norm = ly.q_norm.raw() != nullptr;
  a.q.resize(be, size_t(T * qd));
  a.k.resize(be, size_t(T * kvd));
  a.v.resize(be, size_t(T * kvd));
  if (qk_norm) {  // Qwen3: the projections go to q_raw / k_raw, normed per head into q / k
    a.q_raw.resize(be, a.q.size());
    a.k_raw.resize(be, a.k.size());
  }
  linear_forward(be, ly.q, a.h1.data(), T, (qk_norm ? a.q_raw : a.q).data(), ctx.keep_inputs);
  ctx.lap(ForwardOp::QProj, double(ly.q.w.nbytes()));
  linear_forward(be, ly.k, a.h1.data(), T, (qk_norm ? a.k_raw : a.k).data(), ctx.keep_inputs);
  ctx.lap(ForwardOp::KProj, double(ly.k.w.nbytes()));
  linear_forward(be, ly.v, a.h1.data(), T, a.v.data(), ctx.keep_inputs);
  ctx.lap(ForwardOp::VProj, double(ly.v.w.nbytes()));
  if (qk_norm) {
    a.q_rstd.resize(be, size_t(T * nh));
    a.k_rstd.resize(be, size_t(T * nkv));
    rmsnorm_forward(be, a.q_raw.data(), ly.q_norm, a.q.data(), a.q_rstd.data(), T * nh, hd, c.rms_norm_eps);
    rmsnorm_forward(be, a.k_raw.data(), ly.k_norm, a.k.data(), a.k_rstd.data(), T * nkv, hd, c.rms_norm_eps);
    ctx.lap(ForwardOp::QkNorm);
  }
  be.rope(a.q.data(), T, int(nh), int(hd), int(hd), qd, ctx.pos, ctx.inv_freq, rope.attn_factor, false);
  be.rope(a.k.data(), T, int(nkv), int(hd), int(hd), kvd, ctx.pos, ctx.inv_freq, rope.attn_factor, false);
  ctx.lap(ForwardOp::Rope);
  a.att.resize(be, size_t(T * qd));
  a.window = c.window_of(layer);
  if (ctx.cache)
    attend_cached(ctx, layer, a);
  else
    attention_packed_forward(be, gqa_shape(c, a.window), ctx, c.attention_scale(), a.q.data(), a.k.data(), a.v.data(),
                             a.att.data(), a.lse);
  ctx.lap(ForwardOp::Attention);
}

void gqa_backward(const LayerCtx& ctx, const DecoderLayer& ly, const LayerActs& a, const float* datt, float* dh1,
                  const ParamGrads& g) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  const int64_t T = ctx.rows, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, qd = nh * hd, kvd = nkv * hd;
  DevF dq(be, size_t(T * qd)), dk(be, size_t(T * kvd)), dv(be, size_t(T * kvd));
  attention_packed_backward(be, gqa_shape(c, a.window), ctx, c.attention_scale(), a.q.data(), a.k.data(), a.v.data(),
                            a.att.data(), a.lse, datt, dq.data(), dk.data(), dv.data());
  rope_backward(ctx, dq.data(), T, nh, hd, hd, qd, false);
  rope_backward(ctx, dk.data(), T, nkv, hd, hd, kvd, false);
  if (ly.q_norm.raw()) {
    DevF dq_raw, dk_raw;
    dq_raw.zeros(be, dq.size());
    dk_raw.zeros(be, dk.size());
    rmsnorm_backward(be, a.q_raw.data(), ly.q_norm, a.q_rstd.data(), dq.data(), dq_raw.data(), T * nh, hd, g);
    rmsnorm_backward(be, a.k_raw.data(), ly.k_norm, a.k_rstd.data(), dk.data(), dk_raw.data(), T * nkv, hd, g);
    dq = std::move(dq_raw);
    dk = std::move(dk_raw);
  }
  linear_backward(be, ly.q, a.h1.data(), dq.data(), T, dh1, false, g);
  linear_backward(be, ly.k, a.h1.data(), dk.data(), T, dh1, true, g);
  linear_backward(be, ly.v, a.h1.data(), dv.data(), T, dh1, true, g);
}

}  // namespace reason
