// What one pass of the decoder layers runs over (LayerCtx) and what a layer's forward writes
// (LayerActs). Shared by inference and training, which run the same layer forward:
// - inference (Model::forward): rows are chunks that continue KV-cache slots; keys and values go
//   to the cache; one LayerActs is reused layer after layer;
// - training (LogprobPass): rows are whole sequences; attention runs over the layer's own keys
//   and values (FlashAttention-2, keeping the row log-sum-exp); one LayerActs per layer is kept
//   for the backward, which sits beside each forward (sdk/model/layers/*.cpp).
// Every activation is a DeviceArray in the model's backend memory: the host never reads one
// except through an explicit download (MoE's expert offsets, which size the expert matmuls; the
// routing a caller asked to trace; training's balance loss).
// Threads: a LayerCtx and its LayerActs belong to one pass on one thread.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/device_array.h"
#include "infer/kv_cache.h"
#include "model/config.h"
#include "model/forward_profile.h"
#include "model/rope.h"
#include "reason/kernels/backend.h"

namespace reason {

// Which MLA attention computation runs: the expanded one (per-head keys and values rebuilt from
// the cached latents; used for prompts and training) or the absorbed one (W_UK folded into the
// query and W_UV into the output, attending over the latents directly; used for decode).
// Both give the same result to rounding.
enum class MlaPath { Auto, Expanded, Absorbed };

// A run of consecutive positions [pos0, pos0 + n) of the sequence in cache slot `slot`.
struct SeqChunk {
  int slot = 0;
  const int32_t* tokens = nullptr;
  int64_t n = 0;
  bool all_logits = false;  // logits for every position (scoring) or only the last (generation)
};

// One SwiGLU MLP's activations over its rows.
using DevF = DeviceArray<float>;
using DevI = DeviceArray<int32_t>;

struct MlpActs {
  DevF gate, up, act, y;  // act = silu(gate) * up; y = the MLP's output
};

// Buffers of the MLA attention that only inference uses (absorbed / expanded over the cache).
struct MlaCacheScratch {
  DevF qp, op, hist, kvb, kx, vx, qx, ox;  // hist: the cached latents as f32 (expanded path)
};

// A decoder layer's activations over the pass's rows (T).
struct LayerActs {
  // Training only (LayerCtx::keep_inputs): the layer's input and the residual after attention.
  DevF x_in, x_mid;
  int64_t window = 0;  // the layer's sliding window (0: full attention), for the backward
  DevF rstd1, h1, rstd2, h2;  // the two RMSNorms: row factors [T] and outputs [T, d]
  // Attention inputs: GQA q [T, H*hd] / k, v [T, kv*hd] after q/k norm and RoPE; MLA q and (in
  // training) the expanded keys [T, H*(nope+rope)] (rope dims de-interleaved, roped), values
  // [T, H*v]. att: attention output [T, H*v]; lse [T, H]: its row log-sum-exp (training only).
  DevF q, k, v, att, lse;
  DevF q_raw, k_raw, q_rstd, k_rstd;  // Qwen3 q/k norm: projections before the norm
  // MLA: q LoRA (before / after its norm), latent (before / after kv_a_layernorm), roped shared key.
  DevF qa_raw, qa_rstd, qa_n, lat_raw, lat_rstd, lat, kr;
  MlpActs mlp;  // dense FFN
  // MoE FFN: router logits [T, E], chosen experts and weights [T, K]; the routing slots
  // (token * K + slot) grouped by expert (Backend::moe_group_rows: expert e's are positions
  // expert_off[e] .. expert_off[e + 1] - 1 of expert_slot / expert_tok / expert_w; expert_off_host:
  // the offsets downloaded, which size each expert's matmuls); per expert its activations; the
  // shared expert and its gate logit [T].
  DevF router_logits, route_w;
  DevI route_idx;
  DevI expert_off, expert_slot, expert_tok;
  std::vector<int32_t> expert_off_host;
  DevF expert_w;
  std::vector<MlpActs> experts;
  MlpActs shared;
  DevF shared_gate_logit;
  // The FFN block's output [T, d]; o_proj's output [T, d]. Training frees both (and a dense MLP's
  // y) once added to the residual: no backward reads them.
  DevF ffn_out, tmp;
  MlaCacheScratch mla_cache;
};

struct LayerCtx {
  kernels::Backend* be = nullptr;  // the model's backend: every op on activations runs on it
  const ModelConfig* cfg = nullptr;
  const RopeTable* rope = nullptr;
  int64_t rows = 0;             // T: rows of every sequence or chunk, concatenated
  const int32_t* pos = nullptr; // [T] position of each row within its sequence (backend memory)
  const float* inv_freq = nullptr;  // the RoPE table's frequencies (backend memory)
  // Training: sequence s is rows [seq_start[s], seq_start[s + 1]) (host; seq_start_dev: the same
  // in backend memory, for attention); no cache.
  const std::vector<int64_t>* seq_start = nullptr;
  const int64_t* seq_start_dev = nullptr;
  // Inference: the chunks (in row order), their slots' lengths before this pass, and the cache.
  KVCache* cache = nullptr;
  std::span<const SeqChunk> chunks;
  const std::vector<int64_t>* pos0 = nullptr;
  MlaPath mla_path = MlaPath::Auto;
  bool keep_inputs = false;     // training: keep x_in and x_mid for the backward
  OpLaps* laps = nullptr;       // inference profile, or null

  void lap(ForwardOp op, double weight_bytes = 0) const {
    if (laps) (*laps)(op, weight_bytes);
  }
};

}  // namespace reason
