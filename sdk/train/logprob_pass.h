// The differentiable core of every training step: a forward pass that returns the logprob of
// each next token of a batch of sequences (at a temperature), keeping the activations, and a
// backward pass that turns dL/dlogprob per token into gradients of every weight.
// Every loss (SFT cross-entropy, GRPO, distillation) is a function of these logprobs, so the
// steps only differ in how they compute dL/dlogprob (llm.c style: the layers' forward and
// backward side by side in sdk/model/layers/, the forward being the one inference runs;
// activations kept per step, no general autograd).
//
// Scope: every architecture the engine runs, in f32: dense decoders (Llama, Qwen2; GQA, q/k/v
// bias, llama3 RoPE), Qwen3's per-head q/k RMSNorm, Mixture-of-Experts FFNs (Mixtral, Qwen2-MoE
// with its sigmoid shared-expert gate, Qwen3-MoE, DeepSeek-V3 sigmoid + group routing with shared
// experts) and DeepSeek-V3 Multi-head Latent Attention (the expanded path, YaRN RoPE on the
// interleaved rope dims). MoE routing: the top-k choice is treated as a constant (no gradient
// through the discrete selection, nor to the selection-only e_score_correction_bias); the
// gradient flows through the chosen experts' weights exactly as the forward formula computes
// them (softmax probabilities or sigmoid scores, the renormalisation, routed_scaling_factor).
// DeepSeek's multi-token-prediction modules are not run (they are buffers, not trained). The
// [tokens x vocab] logits are kept for the backward only up to kKeepLogitsBytes; above that the
// log-softmax runs in chunks of rows and the matrix is never held.
// Threads: a LogprobPass belongs to one thread; the model must not be updated between
// forward() and backward().
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/model.h"

namespace reason {

// Gradient accumulators by parameter name (f32, the parameter's shape), in the memory of the
// model's backend.
struct Gradients {
  std::map<std::string, Tensor> by_name;
  // Zeroed accumulators for every parameter of `m` (of its LoRA adapter only when it has one:
  // the base is frozen), on m.backend().
  static Gradients zeros_like(const Model& m);
  Tensor& at(const std::string& name);
  // Sets every accumulator to 0 (on its backend).
  void zero();
};

// Appends prompt + completion to seqs as one sequence and its need flags (LogprobPass::forward) to
// need: the prompt's targets carry no loss, the completion's do. Throws InvalidArgument for an
// empty prompt (the first completion token would have no row to predict it).
void append_completion_sequence(std::vector<std::vector<int32_t>>& seqs, std::vector<uint8_t>& need,
                                std::span<const int32_t> prompt, std::span<const int32_t> completion);

class LogprobPass {
 public:
  // Rows of the chunked LM head / log-softmax when the logits are not kept: as many as fit
  // kKeepLogitsBytes (large matmuls), at least kVocabChunkRows.
  static constexpr int64_t kVocabChunkRows = 64;
  int64_t chunk_rows(int64_t vocab) const {
    return std::max<int64_t>(kVocabChunkRows, logits_budget_ / (int64_t(sizeof(float)) * std::max<int64_t>(1, vocab)));
  }
  // The budget for kept logits and for a chunk (default kKeepLogitsBytes). Set before forward().
  void set_logits_budget(int64_t bytes) { logits_budget_ = std::max<int64_t>(0, bytes); }
  // The forward keeps the [targets x vocab] logits for the backward when they take at most this
  // many bytes (one LM-head matmul each way, none repeated, as PyTorch keeps them); above it the
  // backward computes them again chunk by chunk and memory stays O(chunk x vocab).
  static constexpr int64_t kKeepLogitsBytes = int64_t(256) << 20;

  // Runs the model over each sequence (causal attention within a sequence only) and returns,
  // for each sequence s and t < len(s) - 1, log softmax(logits(t) / temperature)[tokens[t + 1]],
  // concatenated over sequences (the "targets"). Throws for a model not loaded in f32, sequences
  // shorter than 2 tokens or out-of-range ids.
  // `need` (optional, one value per target in that order): targets with 0 carry no loss, and the
  // LM head and log-softmax skip their rows (prompt tokens of GRPO, masked SFT tokens: PyTorch's
  // logits_to_keep). Their logprob and entropy are returned as 0, the backward requires their
  // dL/dlogprob to be 0, and distillation their row weight.
  std::vector<float> forward(const Model& model, std::span<const std::vector<int32_t>> seqs, float temperature,
                             std::span<const uint8_t> need = {});

  // Optional sequence-wise auxiliary balance loss of MoE layers (DeepSeek-V3 eq. 17-20):
  //   L_bal = alpha * sum_i f_i P_i per sequence and MoE layer, averaged over sequences, with
  //   f_i = E / (K T) * #tokens of the sequence routed to expert i (constant) and
  //   P_i = mean over the sequence's tokens of the normalised affinity s_i / sum_j s_j
  //   (sigmoid scores; softmax probabilities for softmax routers).
  // Set before forward(); aux_loss() is its value for the last forward, and backward() adds its
  // gradient (scaled by aux_weight, e.g. the share of the batch in this micro-batch).
  void set_aux_loss(float alpha, float aux_weight = 1.0f) {
    aux_alpha_ = alpha;
    aux_weight_ = aux_weight;
  }
  double aux_loss() const { return aux_loss_; }

  // Activation recomputation: keep only each layer's input during forward() and run the layer
  // again in backward() (one extra forward of the layers, activation memory of one layer).
  // Results are identical. Set before forward().
  void set_recompute(bool on) { recompute_ = on; }

  // Called after each decoder layer's backward has added its gradients (layers in descending
  // order, on the calling thread; a backend may still be computing them, in order on its stream):
  // data parallelism starts the all-reduce of finished gradients from it (GradientReducer).
  // Set before backward().
  void set_layer_hook(std::function<void(int64_t layer)> hook) { layer_hook_ = std::move(hook); }

  // Entropy of softmax(logits / T) at each target position of the last forward (same order).
  const std::vector<float>& entropies() const { return entropy_; }

  // Accumulates into `grads` the gradient of L given dL/dlogprob for every target position
  // of the last forward() (same order and length).
  void backward(std::span<const float> dlogp, Gradients& grads);

  // Full-distribution losses written by the caller (host code). Called with target index i (each
  // computed target; its index among all targets), the
  // row's log softmax(logits / T) over the vocabulary, and a zeroed buffer to fill with
  // dL/dlogprob over the vocabulary (a row at a time on the host).
  using RowGrad = std::function<void(int64_t i, const float* logp, float* dlogp)>;
  void backward_rows(const RowGrad& row_grad, Gradients& grads);
  // Logit distillation against `teacher` (a forward over the same sequences at the same
  // temperature), computed by the backend (Backend::distill_rows), chunk by chunk: row i's loss,
  // with weight row_weight[i] (0: no loss, no gradient), goes to (*row_loss)[i] (resized to
  // n_targets()), its gradient into grads. Throws InvalidArgument when the passes do not match.
  struct Distill {
    const LogprobPass* teacher = nullptr;
    kernels::DistillKind kind = kernels::DistillKind::ForwardKL;
    double beta = 0.5;  // JSD only
    std::span<const float> row_weight;
    std::vector<double>* row_loss = nullptr;
  };
  void backward_distill(const Distill& d, Gradients& grads);
  // The raw logits (before the temperature) of computed targets [i0, i0 + n) of the last forward
  // (the needed ones, in order; all targets without `need`) into out [n x vocab] (caller-sized,
  // in the model backend's memory).
  void row_logits(int64_t i0, int64_t n, float* out) const;
  // Targets of the last forward (needed or not).
  int64_t n_targets() const { return n_all_targets_; }

  // The experts the last forward() routed each token to: routes()[layer] holds top_k expert ids
  // per token row (sequences concatenated, in order), empty for dense layers. Ids of a token are
  // in descending order of selection score, as ForwardScratch::route_trace records them.
  const std::vector<std::vector<int32_t>>& routes() const { return routes_; }

 private:
  const Model* model_ = nullptr;
  float temperature_ = 1.0f;
  // Built on the host, used by the backend's ops from its memory (*_dev).
  std::vector<int32_t> tokens_;     // all sequences concatenated [T]
  std::vector<int64_t> seq_start_;  // start row of each sequence, plus T at the end
  std::vector<int32_t> target_row_; // for each computed target: the row whose logits predict it
  std::vector<int64_t> head_pos_;   // for each computed target: its index among all targets (empty: all computed)
  int64_t n_all_targets_ = 0;
  std::vector<float> to_all(std::vector<float> computed) const;        // computed-target order -> all targets
  template <class T>
  std::vector<T> to_computed(std::span<const T> all, const char* what) const;  // all targets -> computed
  DeviceArray<int32_t> tokens_dev_, pos_dev_, target_row_dev_, target_id_dev_;
  DeviceArray<int64_t> seq_start_dev_;
  float aux_alpha_ = 0.0f, aux_weight_ = 1.0f;
  DeviceArray<float> logits_;  // the forward's logits [targets, vocab] when kept (logits_kept_)
  bool logits_kept_ = false;
  int64_t logits_budget_ = kKeepLogitsBytes;
  DeviceArray<float> lse_;  // log-sum-exp of each target row's logits / T (forward), reused by backward and distillation
  bool recompute_ = false;
  std::function<void(int64_t)> layer_hook_;
  LayerCtx layer_ctx() const;
  void layer_forward(int64_t l, DeviceArray<float>& x, bool record);
  double aux_loss_ = 0.0;
  std::vector<LayerActs> acts_;
  DeviceArray<float> x_final_, rstd_f_, h_final_;
  std::vector<float> entropy_;  // downloaded after the forward
  std::vector<std::vector<int32_t>> routes_;
  void host_row_grads(const RowGrad& row_grad, int64_t c0, int64_t m, DeviceArray<float>& logits, float inv_t) const;
  void backward_impl(const RowGrad* row_grad, const Distill* distill, std::span<const float> dlogp, Gradients& grads);
};

}  // namespace reason
