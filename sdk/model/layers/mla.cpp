// Multi-head Latent Attention (DeepSeek-V2/V3), as transformers' DeepseekV3Attention computes it:
//   q      = q_b(rmsnorm(q_a(h)))            (or q_proj(h))        -> per head [nope | rope]
//   [c|kr] = kv_a_proj_with_mqa(h);  c = rmsnorm(c)                  latent [kv_lora], key rope [rope]
//   RoPE on q's rope part and on kr (shared by all heads); with rope_interleave the rope dims are
//   pairs (x0,x1),(x2,x3)...: transformers' apply_rotary_pos_emb_interleave de-interleaves them to
//   [evens | odds] and rotates half; the backend's interleaved rope applies the same rotation to
//   the pairs in place. q and k keep the same (interleaved) order, so every q . k is the same.
//   k_h = [W_UK_h c | kr],  v_h = W_UV_h c,  scores scaled by ModelConfig::attention_scale().
// The cache keeps only [c | kr] per token and layer (kv_lora_rank + qk_rope_head_dim values).
// Expanded path: rebuild k_h, v_h of every cached position from the latents (kv_b over the
//   history) and run ordinary multi-head attention.
// Absorbed path: q_lat_h = W_UK_h^T q_nope_h, so q_h . k_h = [q_lat_h | q_rot_h] . [c | kr]:
//   one shared "key" row per position (MQA over the latent); the attention-weighted latent
//   o_lat_h then gives o_h = W_UV_h o_lat_h.
#include <algorithm>
#include <vector>

#include "model/layers/attention.h"
#include "model/layers/attention_core.h"
#include "model/layers/rmsnorm.h"
#include "reason/kernels/backend.h"

namespace reason {

namespace {

// Inference: appends the chunks' [latent | roped key] rows to their cache slots, then attends
// each chunk over its slot's history, absorbed or expanded (the header says which when).
void attend_cached(const LayerCtx& ctx, const DecoderLayer& ly, int64_t layer, LayerActs& a) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  MlaCacheScratch& s = a.mla_cache;
  const int64_t H = c.n_heads, nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim, vd = c.v_head_dim;
  const int64_t qk = nope + rope, L = c.kv_lora_rank, R = L + rope;
  {
    int64_t r = 0;
    for (size_t i = 0; i < ctx.chunks.size(); ++i) {
      const kernels::PagedRows dst = ctx.cache->k(ctx.chunks[i].slot, layer);
      const int64_t n = ctx.chunks[i].n, p0 = (*ctx.pos0)[i];
      be.paged_write(dst, p0, 0, a.lat.data() + r * L, L, n, L);  // [latent | roped key] rows
      be.paged_write(dst, p0, L, a.kr.data() + r * rope, rope, n, rope);
      r += n;
    }
  }
  ctx.lap(ForwardOp::KvStore);
  int64_t r = 0;
  for (size_t i = 0; i < ctx.chunks.size(); ++i) {
    const SeqChunk& ch = ctx.chunks[i];
    const int64_t n = ch.n, n_kv = (*ctx.pos0)[i] + n;
    const kernels::PagedRows latents = ctx.cache->k(ch.slot, layer);
    const float* q = a.q.data() + r * H * qk;
    float* o = a.att.data() + r * H * vd;
    // The absorbed matrices are kv_b's own rows: an adapter on kv_b needs the expanded path.
    const bool absorbed = !ly.kv_b.lora.active() &&
                          (ctx.mla_path == MlaPath::Absorbed || (ctx.mla_path == MlaPath::Auto && n == 1));
    kernels::AttnArgs aa;
    kernels::AttnSeq seq;
    aa.seqs = &seq;
    aa.n_seqs = 1;
    aa.n_heads = int(H);
    aa.scale = c.attention_scale();
    if (absorbed) {
      // q' = [W_UK_h^T q_nope_h | q_rot_h] per head, attend over the cached rows, o_h = W_UV_h o_lat_h.
      s.qp.resize(be, size_t(n * H * R));
      s.op.resize(be, size_t(n * H * R));
      for (int64_t hh = 0; hh < H; ++hh) {
        linear_forward_strided(be, ly.w_uk_t[size_t(hh)], q + hh * qk, H * qk, n, s.qp.data() + hh * R, H * R);
        be.copy_2d(s.qp.data() + hh * R + L, H * R, q + hh * qk + nope, H * qk, n, rope);
      }
      seq.q = s.qp.data();
      seq.out = s.op.data();
      seq.n_q = n;
      seq.q_pos0 = (*ctx.pos0)[i];
      seq.k_blocks = seq.v_blocks = latents.blocks;  // one shared "key" and "value" row per position
      seq.n_blocks = latents.n_blocks;
      aa.n_kv_heads = 1;
      aa.head_dim = int(R);
      aa.q_stride = aa.out_stride = H * R;
      aa.kv_stride = R;
      aa.kv_dtype = latents.dtype;
      aa.block_size = latents.block_size;
      be.attention(aa);
      for (int64_t hh = 0; hh < H; ++hh)
        linear_forward_strided(be, ly.w_uv[size_t(hh)], s.op.data() + hh * R, H * R, n, o + hh * vd, H * vd);
    } else {
      // Rebuild per-head keys and values of the whole history; pad q/k/v heads to D values.
      const int64_t D = std::max(qk, vd), kvw = nope + vd;
      s.hist.resize(be, size_t(n_kv * R));  // the history's [latent | roped key] rows as f32
      be.paged_read(s.hist.data(), R, latents, 0, 0, n_kv, R);
      s.kvb.resize(be, size_t(n_kv * H * kvw));
      linear_forward_strided(be, ly.kv_b, s.hist.data(), R, n_kv, s.kvb.data(), H * kvw);
      s.kx.resize(be, size_t(n_kv * H * D));
      s.vx.resize(be, size_t(n_kv * H * D));
      be.fill_zero(s.kx.data(), s.kx.size() * sizeof(float));  // the padding past each head's values
      be.fill_zero(s.vx.data(), s.vx.size() * sizeof(float));
      // per (position, head) row: k = [W_UK c | the position's roped key], v = W_UV c
      be.copy_2d(s.kx.data(), D, s.kvb.data(), kvw, n_kv * H, nope);
      for (int64_t hh = 0; hh < H; ++hh) be.copy_2d(s.kx.data() + hh * D + nope, H * D, s.hist.data() + L, R, n_kv, rope);
      be.copy_2d(s.vx.data(), D, s.kvb.data() + nope, kvw, n_kv * H, vd);
      s.qx.resize(be, size_t(n * H * D));
      be.fill_zero(s.qx.data(), s.qx.size() * sizeof(float));
      s.ox.resize(be, size_t(n * H * D));
      be.copy_2d(s.qx.data(), D, q, qk, n * H, qk);
      seq = kernels::AttnSeq{s.qx.data(), s.ox.data(), s.kx.data(), s.vx.data(), n, (*ctx.pos0)[i], nullptr, nullptr};
      aa.n_kv_heads = int(H);
      aa.head_dim = int(D);
      aa.q_stride = aa.out_stride = aa.kv_stride = H * D;
      be.attention(aa);
      be.copy_2d(o, vd, s.ox.data(), D, n * H, vd);
    }
    r += n;
  }
}

AttnShape mla_shape(const ModelConfig& c) {
  const int64_t H = c.n_heads, qk = c.qk_nope_head_dim + c.qk_rope_head_dim, vd = c.v_head_dim;
  return AttnShape{H, 1, qk, vd, H * qk, H * qk, H * vd, H * vd};
}

// Training: per-head keys [W_UK c | kr] and values W_UV c of the pass's own rows, then causal
// attention within each sequence.
void attend_own_rows(const LayerCtx& ctx, const DecoderLayer& ly, LayerActs& a) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  const int64_t T = ctx.rows, H = c.n_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim, vd = c.v_head_dim;
  const int64_t qk = nope + rd, kvw = nope + vd;
  DevF kvb(be, size_t(T * H * kvw));
  linear_forward(be, ly.kv_b, a.lat.data(), T, kvb.data(), ctx.keep_inputs);
  a.k.resize(be, size_t(T * H * qk));
  a.v.resize(be, size_t(T * H * vd));
  // per (token, head) row of kvb [nope | v]: k = [nope | the token's shared roped key], v
  be.copy_2d(a.k.data(), qk, kvb.data(), kvw, T * H, nope);
  for (int64_t h = 0; h < H; ++h) be.copy_2d(a.k.data() + h * qk + nope, H * qk, a.kr.data(), rd, T, rd);
  be.copy_2d(a.v.data(), vd, kvb.data() + nope, kvw, T * H, vd);
  attention_packed_forward(be, mla_shape(c), ctx, c.attention_scale(), a.q.data(), a.k.data(), a.v.data(),
                           a.att.data(), a.lse);
}

}  // namespace

void mla_forward(const LayerCtx& ctx, const DecoderLayer& ly, int64_t layer, LayerActs& a) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  const RopeTable& rt = *ctx.rope;
  const int64_t T = ctx.rows, H = c.n_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim, vd = c.v_head_dim;
  const int64_t qk = nope + rd, L = c.kv_lora_rank, R = L + rd, ql = c.q_lora_rank;
  // Queries [T, H, qk].
  a.q.resize(be, size_t(T * H * qk));
  if (ql > 0) {
    a.qa_raw.resize(be, size_t(T * ql));
    a.qa_n.resize(be, size_t(T * ql));
    a.qa_rstd.resize(be, size_t(T));
    linear_forward(be, ly.q_a, a.h1.data(), T, a.qa_raw.data(), ctx.keep_inputs);
    rmsnorm_forward(be, a.qa_raw.data(), ly.q_a_norm, a.qa_n.data(), a.qa_rstd.data(), T, ql, c.rms_norm_eps);
    linear_forward(be, ly.q_b, a.qa_n.data(), T, a.q.data(), ctx.keep_inputs);
  } else {
    linear_forward(be, ly.q, a.h1.data(), T, a.q.data(), ctx.keep_inputs);
  }
  // Latent (normed) and the shared rope key.
  DevF ckv(be, size_t(T * R));
  linear_forward(be, ly.kv_a, a.h1.data(), T, ckv.data(), ctx.keep_inputs);
  a.lat_raw.resize(be, size_t(T * L));
  a.lat.resize(be, size_t(T * L));
  a.lat_rstd.resize(be, size_t(T));
  a.kr.resize(be, size_t(T * rd));
  be.copy_2d(a.lat_raw.data(), L, ckv.data(), R, T, L);
  be.copy_2d(a.kr.data(), rd, ckv.data() + L, R, T, rd);
  rmsnorm_forward(be, a.lat_raw.data(), ly.kv_a_norm, a.lat.data(), a.lat_rstd.data(), T, L, c.rms_norm_eps);
  be.rope(a.q.data() + nope, T, int(H), int(qk), int(rd), H * qk, ctx.pos, ctx.inv_freq, rt.attn_factor,
          c.rope_interleave);
  be.rope(a.kr.data(), T, 1, int(rd), int(rd), rd, ctx.pos, ctx.inv_freq, rt.attn_factor, c.rope_interleave);
  a.att.resize(be, size_t(T * H * vd));
  if (ctx.cache)
    attend_cached(ctx, ly, layer, a);
  else
    attend_own_rows(ctx, ly, a);
}

void mla_backward(const LayerCtx& ctx, const DecoderLayer& ly, const LayerActs& a, const float* datt, float* dh1,
                  const ParamGrads& g) {
  kernels::Backend& be = *ctx.be;
  const ModelConfig& c = *ctx.cfg;
  const int64_t T = ctx.rows, H = c.n_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim, vd = c.v_head_dim;
  const int64_t qk = nope + rd, L = c.kv_lora_rank, R = L + rd, ql = c.q_lora_rank, kvw = nope + vd;
  DevF dq(be, size_t(T * H * qk)), dk(be, size_t(T * H * qk)), dv(be, size_t(T * H * vd));
  attention_packed_backward(be, mla_shape(c), ctx, c.attention_scale(), a.q.data(), a.k.data(), a.v.data(),
                            a.att.data(), a.lse, datt, dq.data(), dk.data(), dv.data());
  // Keys and values back to kv_b's output and the shared rope key.
  DevF dkvb(be, size_t(T * H * kvw)), dkr;
  dkr.zeros(be, size_t(T * rd));
  be.copy_2d(dkvb.data(), kvw, dk.data(), qk, T * H, nope);
  be.copy_2d(dkvb.data() + nope, kvw, dv.data(), vd, T * H, vd);
  // the shared rope key's gradient: the sum over heads (in head order)
  be.add_group_sums(dkr.data(), rd, dk.data() + nope, qk, T, H, rd);
  DevF dlat(be, size_t(T * L)), dckv(be, size_t(T * R));
  linear_backward(be, ly.kv_b, a.lat.data(), dkvb.data(), T, dlat.data(), false, g);
  // RoPE, transposed.
  rope_backward(ctx, dq.data() + nope, T, H, qk, rd, H * qk, c.rope_interleave);
  rope_backward(ctx, dkr.data(), T, 1, rd, rd, rd, c.rope_interleave);
  // kv_a_layernorm on the latent; [dc | dkr] back through kv_a_proj_with_mqa.
  DevF dlat_raw;
  dlat_raw.zeros(be, size_t(T * L));
  rmsnorm_backward(be, a.lat_raw.data(), ly.kv_a_norm, a.lat_rstd.data(), dlat.data(), dlat_raw.data(), T, L, g);
  be.copy_2d(dckv.data(), R, dlat_raw.data(), L, T, L);
  be.copy_2d(dckv.data() + L, R, dkr.data(), rd, T, rd);
  linear_backward(be, ly.kv_a, a.h1.data(), dckv.data(), T, dh1, false, g);
  if (ql > 0) {
    DevF dqa_n(be, size_t(T * ql)), dqa;
    dqa.zeros(be, size_t(T * ql));
    linear_backward(be, ly.q_b, a.qa_n.data(), dq.data(), T, dqa_n.data(), false, g);
    rmsnorm_backward(be, a.qa_raw.data(), ly.q_a_norm, a.qa_rstd.data(), dqa_n.data(), dqa.data(), T, ql, g);
    linear_backward(be, ly.q_a, a.h1.data(), dqa.data(), T, dh1, true, g);
  } else {
    linear_backward(be, ly.q, a.h1.data(), dq.data(), T, dh1, true, g);
  }
}

}  // namespace reason
