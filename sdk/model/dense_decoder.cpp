// Forward pass of the dense decoder shared by Llama and Qwen2 (Qwen2 = Llama with q/k/v
// biases): embeddings -> N x [RMSNorm -> GQA attention with RoPE -> residual -> RMSNorm ->
// SwiGLU -> residual] -> RMSNorm -> LM head. All tokens of all chunks go through each matmul
// together (one [T, d] activation matrix), attention runs per sequence against its cache.
// With ForwardScratch::profile set, each op is timed (the lap(Op::...) lines).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "model/model.h"
#include "reason/kernels/backend.h"

namespace reason {

using kernels::AttnArgs;
using kernels::AttnSeq;
using kernels::Backend;
using kernels::MatmulArgs;
using Op = ForwardOp;

namespace {

// Times the ops of one forward() into ForwardScratch::profile when it is set: lap(op) charges
// the time since the previous lap (or since construction) to op. With no profile each lap is
// one branch.
class OpLaps {
 public:
  explicit OpLaps(ForwardProfile* p) : p_(p) {
    if (!p_) return;
    ++p_->forwards;
    t_ = std::chrono::steady_clock::now();
  }
  void operator()(Op op) {
    if (p_) lap(op, 0);
  }
  void operator()(Op op, const Linear& l) {  // a matmul: also counts the weight bytes it read
    if (p_) lap(op, double(l.w.nbytes()));
  }

 private:
  void lap(Op op, double bytes) {
    const auto now = std::chrono::steady_clock::now();
    p_->add(op, std::chrono::duration<double>(now - t_).count(), bytes);
    t_ = now;
  }
  ForwardProfile* p_;
  std::chrono::steady_clock::time_point t_;
};

}  // namespace

void Model::forward(std::span<const SeqChunk> chunks, KVCache& cache, std::vector<float>& logits,
                    ForwardScratch& s) const {
  OpLaps lap(s.profile);
  Backend& be = kernels::cpu_backend();
  const ModelConfig& c = cfg_;
  const int64_t d = c.hidden_size, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads;
  const int64_t qd = nh * hd, kvd = nkv * hd, ffn = c.intermediate_size, V = c.vocab_size;

  // Validate and lay out the tokens.
  int64_t T = 0, n_out = 0;
  std::vector<int64_t> pos0(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SeqChunk& ch = chunks[i];
    if (ch.n <= 0 || !ch.tokens) fail(ErrorCode::InvalidArgument, "forward: chunk {} is empty", i);
    for (int64_t t = 0; t < ch.n; ++t)
      if (ch.tokens[t] < 0 || ch.tokens[t] >= V)
        fail(ErrorCode::InvalidArgument, "token id {} at position {} is outside the vocabulary [0, {})", ch.tokens[t], t, V);
    pos0[i] = cache.length(ch.slot);
    T += ch.n;
    n_out += ch.all_logits ? ch.n : 1;
  }
  s.x.resize(size_t(T * d));
  s.h.resize(size_t(T * d));
  s.q.resize(size_t(T * qd));
  s.k.resize(size_t(T * kvd));
  s.v.resize(size_t(T * kvd));
  s.att.resize(size_t(T * std::max(qd, c.n_heads * c.v_head_dim)));
  s.tmp.resize(size_t(T * d));
  s.gate.resize(size_t(T * ffn));
  s.up.resize(size_t(T * ffn));
  s.pos.resize(size_t(T));
  if (s.expert_load) s.expert_load->resize(size_t(c.n_layers * c.n_experts), 0);

  // Embedding lookup, positions, cache growth.
  {
    int64_t r = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      const SeqChunk& ch = chunks[i];
      for (int64_t t = 0; t < ch.n; ++t, ++r) {
        const size_t row = size_t(ch.tokens[t]) * size_t(d);
        if (embed_.dtype() == DType::F32)
          std::memcpy(&s.x[size_t(r * d)], embed_.data<float>() + row, size_t(d) * 4);
        else
          kernels::convert_to_f32(&s.x[size_t(r * d)], embed_.data<uint16_t>() + row, embed_.dtype(), size_t(d));
        s.pos[size_t(r)] = int32_t(pos0[i] + t);
      }
      cache.resize(ch.slot, pos0[i] + ch.n);
    }
  }
  lap(Op::Embed);

  std::vector<AttnSeq> seqs(chunks.size());
  const float scale = c.attention_scale();
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const DecoderLayer& ly = layers_[size_t(l)];
    be.rmsnorm(s.h.data(), s.x.data(), ly.attn_norm.data<float>(), T, d, c.rms_norm_eps);
    lap(Op::RmsNorm);
    if (c.mla) {
      mla_attention(ly, l, chunks, pos0, cache, s.h.data(), s.pos.data(), s.att.data(), s);
      lap(Op::Attention);
    } else {
      linear_forward(ly.q, s.h.data(), T, s.q.data());
      lap(Op::QProj, ly.q);
      linear_forward(ly.k, s.h.data(), T, s.k.data());
      lap(Op::KProj, ly.k);
      linear_forward(ly.v, s.h.data(), T, s.v.data());
      lap(Op::VProj, ly.v);
      if (ly.q_norm.raw()) {  // Qwen3: RMSNorm over each head's vector, before RoPE
        be.rmsnorm(s.q.data(), s.q.data(), ly.q_norm.data<float>(), T * nh, hd, c.rms_norm_eps);
        be.rmsnorm(s.k.data(), s.k.data(), ly.k_norm.data<float>(), T * nkv, hd, c.rms_norm_eps);
        lap(Op::QkNorm);
      }
      be.rope(s.q.data(), T, int(nh), int(hd), int(hd), qd, s.pos.data(), rope_.inv_freq.data(), rope_.attn_factor);
      be.rope(s.k.data(), T, int(nkv), int(hd), int(hd), kvd, s.pos.data(), rope_.inv_freq.data(), rope_.attn_factor);
      lap(Op::Rope);
      int64_t r = 0;
      for (size_t i = 0; i < chunks.size(); ++i) {
        const SeqChunk& ch = chunks[i];
        float* kc = cache.k(ch.slot, l);
        float* vc = cache.v(ch.slot, l);
        std::memcpy(kc + pos0[i] * kvd, &s.k[size_t(r * kvd)], size_t(ch.n * kvd) * 4);
        std::memcpy(vc + pos0[i] * kvd, &s.v[size_t(r * kvd)], size_t(ch.n * kvd) * 4);
        seqs[i] = AttnSeq{&s.q[size_t(r * qd)], &s.att[size_t(r * qd)], kc, vc, ch.n, pos0[i]};
        r += ch.n;
      }
      AttnArgs aa;
      aa.seqs = seqs.data();
      aa.n_seqs = int(seqs.size());
      aa.n_heads = int(nh);
      aa.n_kv_heads = int(nkv);
      aa.head_dim = int(hd);
      aa.q_stride = qd;
      aa.out_stride = qd;
      aa.kv_stride = kvd;
      aa.scale = scale;
      lap(Op::KvStore);
      be.attention(aa);
      lap(Op::Attention);
    }
    linear_forward(ly.o, s.att.data(), T, s.tmp.data());
    lap(Op::OProj, ly.o);
    be.add_inplace(s.x.data(), s.tmp.data(), T * d);
    lap(Op::ResidualAdd);

    be.rmsnorm(s.h.data(), s.x.data(), ly.mlp_norm.data<float>(), T, d, c.rms_norm_eps);
    lap(Op::RmsNorm);
    if (ly.is_moe) {
      int64_t* load = s.expert_load ? s.expert_load->data() + l * c.n_experts : nullptr;
      moe_forward(ly.moe, s.h.data(), T, d, s.tmp.data(), s.moe, load);
      if (s.route_trace) {
        s.route_trace->idx.resize(size_t(c.n_layers));
        s.route_trace->weight.resize(size_t(c.n_layers));
        s.route_trace->idx[size_t(l)] = s.moe.idx;
        s.route_trace->weight[size_t(l)] = s.moe.weights;
      }
      lap(Op::Moe);
    } else {
      linear_forward(ly.mlp.gate, s.h.data(), T, s.gate.data());
      lap(Op::GateProj, ly.mlp.gate);
      linear_forward(ly.mlp.up, s.h.data(), T, s.up.data());
      lap(Op::UpProj, ly.mlp.up);
      be.silu_mul(s.gate.data(), s.gate.data(), s.up.data(), T * ffn);
      lap(Op::SiluMul);
      linear_forward(ly.mlp.down, s.gate.data(), T, s.tmp.data());
      lap(Op::DownProj, ly.mlp.down);
    }
    be.add_inplace(s.x.data(), s.tmp.data(), T * d);
    lap(Op::ResidualAdd);
  }

  // Final norm and LM head on the rows that need logits only.
  {
    int64_t r = 0, o = 0;
    for (const SeqChunk& ch : chunks) {
      if (ch.all_logits) {
        std::memmove(&s.h[size_t(o * d)], &s.x[size_t(r * d)], size_t(ch.n * d) * 4);
        o += ch.n;
      } else {
        std::memmove(&s.h[size_t(o * d)], &s.x[size_t((r + ch.n - 1) * d)], size_t(d) * 4);
        o += 1;
      }
      r += ch.n;
    }
  }
  be.rmsnorm(s.h.data(), s.h.data(), final_norm_.data<float>(), n_out, d, c.rms_norm_eps);
  lap(Op::FinalNorm);
  Linear head{lm_head_, Tensor()};
  if (s.logits_sink) {
    const int64_t block = std::max<int64_t>(1, s.logits_chunk_rows);
    logits.resize(size_t(std::min(block, n_out) * V));
    for (int64_t r0 = 0; r0 < n_out; r0 += block) {
      const int64_t n = std::min(block, n_out - r0);
      linear_forward(head, &s.h[size_t(r0 * d)], n, logits.data());
      s.logits_sink(r0, n, logits.data());
    }
  } else {
    logits.resize(size_t(n_out * V));
    linear_forward(head, s.h.data(), n_out, logits.data());
  }
  lap(Op::LmHead, head);
}

}  // namespace reason
