// Model::forward, the inference pass: embeddings -> the decoder layers (sdk/model/layers/, the
// same layer forward training runs) -> final RMSNorm -> LM head on the rows that need logits.
// All tokens of all chunks go through each matmul together (one [T, d] activation matrix);
// attention runs per chunk against its cache slot. With ForwardScratch::profile set, each op is
// timed (the ctx.lap / lap(...) calls).
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "model/layers/embedding.h"
#include "model/layers/rmsnorm.h"
#include "model/model.h"

namespace reason {

void Model::forward(std::span<const SeqChunk> chunks, KVCache& cache, std::vector<float>& logits,
                    ForwardScratch& s) const {
  if (s.logits_sink) fail(ErrorCode::InvalidArgument, "forward: logits_sink is for forward_device");
  const int64_t rows = forward_device(chunks, cache, s);
  logits.resize(size_t(rows * cfg_.vocab_size));
  backend_->download(logits.data(), s.logits.data(), logits.size() * sizeof(float));
}

int64_t Model::forward_device(std::span<const SeqChunk> chunks, KVCache& cache, ForwardScratch& s) const {
  OpLaps lap(s.profile);
  kernels::Backend& be = *backend_;
  const ModelConfig& c = cfg_;
  const int64_t d = c.hidden_size, V = c.vocab_size;

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
  s.x.resize(be, size_t(T * d));
  if (s.expert_load) s.expert_load->resize(size_t(c.n_layers * c.n_experts), 0);

  // Tokens and positions to the backend, embedding lookup, cache growth.
  {
    std::vector<int32_t> tok(static_cast<size_t>(T)), pos(static_cast<size_t>(T));
    int64_t r = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      const SeqChunk& ch = chunks[i];
      std::copy(ch.tokens, ch.tokens + ch.n, tok.begin() + r);
      for (int64_t t = 0; t < ch.n; ++t) pos[size_t(r + t)] = int32_t(pos0[i] + t);
      r += ch.n;
      cache.resize(ch.slot, pos0[i] + ch.n);
    }
    s.tokens.upload(be, tok);
    s.pos.upload(be, pos);
  }
  embedding_forward(be, embed_, s.tokens.data(), T, s.x.data());
  lap(ForwardOp::Embed);

  LayerCtx ctx;
  ctx.be = &be;
  ctx.cfg = &c;
  ctx.rope = &rope_;
  ctx.rows = T;
  ctx.pos = s.pos.data();
  ctx.inv_freq = rope_freq_.data<float>();
  ctx.cache = &cache;
  ctx.chunks = chunks;
  ctx.pos0 = &pos0;
  ctx.mla_path = mla_path_;
  ctx.laps = &lap;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const DecoderLayer& ly = layers_[size_t(l)];
    int64_t* load = s.expert_load && ly.is_moe ? s.expert_load->data() + l * c.n_experts : nullptr;
    decoder_layer_forward(ctx, ly, l, s.x, s.acts, load);
    if (ly.is_moe && s.route_trace) {
      s.route_trace->idx.resize(size_t(c.n_layers));
      s.route_trace->weight.resize(size_t(c.n_layers));
      s.route_trace->idx[size_t(l)] = s.acts.route_idx.download();
      s.route_trace->weight[size_t(l)] = s.acts.route_w.download();
    }
  }

  // Final norm and LM head on the rows that need logits only.
  s.head_in.resize(be, size_t(n_out * d));
  {
    int64_t r = 0, o = 0;
    for (const SeqChunk& ch : chunks) {
      const int64_t first = ch.all_logits ? r : r + ch.n - 1, n = ch.all_logits ? ch.n : 1;
      be.copy_2d(s.head_in.data() + o * d, d, s.x.data() + first * d, d, n, d);
      o += n;
      r += ch.n;
    }
  }
  rmsnorm_forward(be, s.head_in.data(), final_norm_, s.head_in.data(), nullptr, n_out, d, c.rms_norm_eps);
  lap(ForwardOp::FinalNorm);
  // The LM head, in blocks of rows when a sink takes them one at a time.
  Linear head{lm_head_, Tensor()};
  const int64_t block = s.logits_sink ? std::max<int64_t>(1, s.logits_chunk_rows) : std::max<int64_t>(1, n_out);
  s.logits.resize(be, size_t(std::min(block, n_out) * V));
  for (int64_t r0 = 0; r0 < n_out; r0 += block) {
    const int64_t n = std::min(block, n_out - r0);
    linear_forward(be, head, s.head_in.data() + r0 * d, n, s.logits.data());
    if (s.logits_sink) s.logits_sink(r0, n, s.logits.data());
  }
  lap(ForwardOp::LmHead, double(head.w.nbytes()));
  return s.logits_sink ? 0 : n_out;
}

}  // namespace reason
