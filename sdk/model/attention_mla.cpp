// Multi-head Latent Attention (DeepSeek-V2/V3), as transformers' DeepseekV3Attention computes it:
//   q      = q_b(rmsnorm(q_a(h)))            (or q_proj(h))        -> per head [nope | rope]
//   [c|kr] = kv_a_proj_with_mqa(h);  c = rmsnorm(c)                  latent [kv_lora], key rope [rope]
//   RoPE on q's rope part and on kr (shared by all heads); with rope_interleave the rope dims are
//   pairs (x0,x1),(x2,x3)..., handled by de-interleaving them first (the layout transformers'
//   apply_rotary_pos_emb_interleave produces), then the usual rotate-half rotation.
//   k_h = [W_UK_h c | kr],  v_h = W_UV_h c,  scores scaled by ModelConfig::attention_scale().
// The cache keeps only [c | kr] per token and layer (kv_lora_rank + qk_rope_head_dim values).
// Expanded path: rebuild k_h, v_h of every cached position from the latents (kv_b over the
//   history) and run ordinary multi-head attention.
// Absorbed path: q_lat_h = W_UK_h^T q_nope_h, so q_h . k_h = [q_lat_h | q_rot_h] . [c | kr]:
//   one shared "key" row per position (MQA over the latent); the attention-weighted latent
//   o_lat_h then gives o_h = W_UV_h o_lat_h.
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "model/model.h"
#include "reason/kernels/backend.h"

namespace reason {

namespace {

// Rope dims stored as interleaved pairs -> [evens | odds] (the rotate-half layout).
void deinterleave(float* x, int64_t r, float* tmp) {
  const int64_t half = r / 2;
  for (int64_t i = 0; i < half; ++i) {
    tmp[i] = x[2 * i];
    tmp[half + i] = x[2 * i + 1];
  }
  std::memcpy(x, tmp, size_t(r) * sizeof(float));
}

}  // namespace

void Model::mla_attention(const DecoderLayer& ly, int64_t layer, std::span<const SeqChunk> chunks,
                          const std::vector<int64_t>& pos0, KVCache& cache, const float* h, const int32_t* pos,
                          float* out, ForwardScratch& fs) const {
  kernels::Backend& be = kernels::cpu_backend();
  const ModelConfig& c = cfg_;
  MlaScratch& s = fs.mla;
  const int64_t T = int64_t(fs.pos.size());
  const int64_t H = c.n_heads, nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim, vd = c.v_head_dim;
  const int64_t qk = nope + rope, L = c.kv_lora_rank, R = L + rope;
  const float scale = c.attention_scale();

  // Queries [T, H, qk].
  s.q.resize(size_t(T * H * qk));
  if (c.q_lora_rank > 0) {
    s.qa.resize(size_t(T * c.q_lora_rank));
    linear_forward(ly.q_a, h, T, s.qa.data());
    be.rmsnorm(s.qa.data(), s.qa.data(), ly.q_a_norm.data<float>(), T, c.q_lora_rank, c.rms_norm_eps);
    linear_forward(ly.q_b, s.qa.data(), T, s.q.data());
  } else {
    linear_forward(ly.q, h, T, s.q.data());
  }
  // Latent and shared rope key [T, R]; normalise the latent part of each row.
  s.ckv.resize(size_t(T * R));
  linear_forward(ly.kv_a, h, T, s.ckv.data());
  for (int64_t t = 0; t < T; ++t)
    be.rmsnorm(&s.ckv[size_t(t * R)], &s.ckv[size_t(t * R)], ly.kv_a_norm.data<float>(), 1, L, c.rms_norm_eps);
  // RoPE on the rope parts.
  if (c.rope_interleave) {
    s.rot.resize(size_t(rope));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t hh = 0; hh < H; ++hh) deinterleave(&s.q[size_t((t * H + hh) * qk + nope)], rope, s.rot.data());
      deinterleave(&s.ckv[size_t(t * R + L)], rope, s.rot.data());
    }
  }
  be.rope(s.q.data() + nope, T, int(H), int(qk), int(rope), H * qk, pos, rope_.inv_freq.data(), rope_.attn_factor);
  be.rope(s.ckv.data() + L, T, 1, int(R), int(rope), R, pos, rope_.inv_freq.data(), rope_.attn_factor);

  // Append [c | kr] rows to the cache.
  {
    int64_t r = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      std::memcpy(cache.k(chunks[i].slot, layer) + pos0[i] * R, &s.ckv[size_t(r * R)], size_t(chunks[i].n * R) * 4);
      r += chunks[i].n;
    }
  }

  int64_t r = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SeqChunk& ch = chunks[i];
    const int64_t n = ch.n, n_kv = pos0[i] + n;
    const float* latents = cache.k(ch.slot, layer);
    const float* q = &s.q[size_t(r * H * qk)];
    float* o = out + r * H * vd;
    const bool absorbed = mla_path_ == MlaPath::Absorbed || (mla_path_ == MlaPath::Auto && n == 1);
    kernels::AttnArgs aa;
    kernels::AttnSeq seq;
    aa.seqs = &seq;
    aa.n_seqs = 1;
    aa.n_heads = int(H);
    aa.scale = scale;
    if (absorbed) {
      // q' = [W_UK_h^T q_nope_h | q_rot_h] per head, attend over the cached rows, o_h = W_UV_h o_lat_h.
      s.qp.resize(size_t(n * H * R));
      s.op.resize(size_t(n * H * R));
      for (int64_t hh = 0; hh < H; ++hh) {
        linear_forward_strided(ly.w_uk_t[size_t(hh)], q + hh * qk, H * qk, n, &s.qp[size_t(hh * R)], H * R);
        for (int64_t t = 0; t < n; ++t)
          std::memcpy(&s.qp[size_t((t * H + hh) * R + L)], q + (t * H + hh) * qk + nope, size_t(rope) * 4);
      }
      seq = kernels::AttnSeq{s.qp.data(), s.op.data(), latents, latents, n, pos0[i]};
      aa.n_kv_heads = 1;
      aa.head_dim = int(R);
      aa.q_stride = aa.out_stride = H * R;
      aa.kv_stride = R;
      be.attention(aa);
      for (int64_t hh = 0; hh < H; ++hh)
        linear_forward_strided(ly.w_uv[size_t(hh)], &s.op[size_t(hh * R)], H * R, n, o + hh * vd, H * vd);
    } else {
      // Rebuild per-head keys and values of the whole history; pad q/k/v heads to D values.
      const int64_t D = std::max(qk, vd), kvw = nope + vd;
      s.kvb.resize(size_t(n_kv * H * kvw));
      linear_forward_strided(ly.kv_b, latents, R, n_kv, s.kvb.data(), H * kvw);
      s.kx.assign(size_t(n_kv * H * D), 0.0f);
      s.vx.assign(size_t(n_kv * H * D), 0.0f);
      for (int64_t p = 0; p < n_kv; ++p)
        for (int64_t hh = 0; hh < H; ++hh) {
          const float* src = &s.kvb[size_t((p * H + hh) * kvw)];
          float* kd = &s.kx[size_t((p * H + hh) * D)];
          std::memcpy(kd, src, size_t(nope) * 4);
          std::memcpy(kd + nope, latents + p * R + L, size_t(rope) * 4);
          std::memcpy(&s.vx[size_t((p * H + hh) * D)], src + nope, size_t(vd) * 4);
        }
      s.qx.assign(size_t(n * H * D), 0.0f);
      s.ox.resize(size_t(n * H * D));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t hh = 0; hh < H; ++hh) std::memcpy(&s.qx[size_t((t * H + hh) * D)], q + (t * H + hh) * qk, size_t(qk) * 4);
      seq = kernels::AttnSeq{s.qx.data(), s.ox.data(), s.kx.data(), s.vx.data(), n, pos0[i]};
      aa.n_kv_heads = int(H);
      aa.head_dim = int(D);
      aa.q_stride = aa.out_stride = aa.kv_stride = H * D;
      be.attention(aa);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t hh = 0; hh < H; ++hh)
          std::memcpy(o + (t * H + hh) * vd, &s.ox[size_t((t * H + hh) * D)], size_t(vd) * 4);
    }
    r += n;
  }
}

}  // namespace reason
