// Training steps on a policy model, one optimizer step per call: SFT (masked next-token loss)
// and GRPO (DeepSeekMath eq. 3 with the variants people use), with gradient accumulation over
// micro-batches whose loss normaliser is computed over the whole batch first, so that any split
// into micro-batches gives the same gradient as one big batch (to f32 rounding).
//
// The trainer updates the policy's weights IN PLACE (they are the f32 master weights): the next
// generation with the same Model uses the new policy with no reload. A failed step (non-finite
// loss or gradient) throws and leaves the weights and optimizer state as they were.
// Threads: a Trainer is used by one thread at a time, and nothing may generate with its policy
// while a step runs.
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "model/model.h"
#include "train/gradient_reducer.h"
#include "train/logprob_pass.h"
#include "train/optimizer.h"

namespace reason {

namespace detail {
struct GrpoPlan;  // grpo_step.cpp
struct GrpoSums;
}  // namespace detail

struct TrainerConfig {
  AdamWConfig optim;
  LrSchedule schedule;
  // Parameters whose name starts with one of these prefixes are frozen (not updated).
  std::vector<std::string> frozen_prefixes;
  // DeepSeek-V3 auxiliary-loss-free balancing speed gamma (0: off): after every SFT/GRPO step
  // the selection biases move by gamma against the expert load the step's batch produced.
  float bias_update_speed = 0.0f;
  // Sequence-wise auxiliary balance loss weight alpha (DeepSeek-V3 eq. 17-20; 0: off). Added to
  // the SFT/GRPO loss of MoE models, averaged over the batch's sequences.
  float aux_loss_alpha = 0.0f;
  // Activation recomputation: keep only each layer's input and recompute the layer during
  // backward (less memory, one more forward of the layers); identical results.
  bool recompute_activations = false;
  // Data parallelism: every rank of `comm` builds a Trainer on the same weights and calls the same
  // steps, each with its own share of the batch (GRPO: whole groups). Normalisers, advantages with
  // batch scaling, the top-entropy threshold and the metrics are computed over the whole batch and
  // the gradients summed over the ranks before the update, so N ranks give the update one process
  // gives with the whole batch (to f32 rounding). Null or one rank: this process alone.
  std::shared_ptr<Communicator> comm;
  int64_t allreduce_bucket_bytes = int64_t(25) << 20;  // gradient buckets (PyTorch DDP's 25 MiB)
  // ZeRO-1: each rank keeps the AdamW state of its share of the parameters only, updates those and
  // broadcasts them (zero1_owners in data_parallel.h). The optimizer state is then split across the
  // ranks: Trainer::optimizer().state() holds this rank's share.
  bool zero1 = false;
};

// One SFT example: `mask[t]` = 1 when token t is a completion token to be predicted (the loss
// covers logp(tokens[t] | tokens[<t]) for t >= 1 with mask[t] = 1; prompt tokens have mask 0).
// Packing: several samples may share one example; `segment_starts` lists the token index where
// each sample after the first begins. Samples never attend to each other and their positions
// restart at 0 (as padding-free packing with reset position ids), so a packed example trains
// exactly like its samples given separately; no token predicts across a boundary.
struct SftExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  std::vector<int64_t> segment_starts = {};
};

enum class GrpoAggregation {
  SequenceMean,  // "grpo": mean over each completion's tokens, then mean over completions (the paper)
  TokenMean,     // "dapo"/"bnpo": mean over all completion tokens of the batch
  Constant,      // "dr_grpo": sum over tokens / (completions x max_completion_length)
};

enum class KlEstimator { K1, K2, K3 };

// Which importance ratio the clipped objective uses (TRL's importance_sampling_level).
enum class ImportanceLevel {
  Token,          // r_t = pi(y_t) / pi_old(y_t) (GRPO, PPO)
  Sequence,       // GSPO: s_i = exp(mean over the completion's tokens of log(pi / pi_old)), one per completion
  SequenceToken,  // GSPO-token: s_i,t = sg[s_i] * pi(y_t) / sg[pi(y_t)]: s_i's value, a per-token gradient
};

// How advantages are scaled (TRL's scale_rewards): r - mean of the group, divided by the std of
// the group, of the whole batch, or not at all (Dr. GRPO).
enum class RewardScaling { Group, Batch, None };

// Correction for a sampler whose logprobs differ from the trainer's (another engine, quantised or
// bf16 rollouts): each token's policy-gradient term is multiplied by w = pi_old / pi_sampler, per
// token or per completion (the product over its tokens), either truncated to [clip_min, clip_max]
// (TIS) or set to 0 outside it (MIS): TRL's vllm_importance_sampling_mode.
enum class RolloutCorrection { None, TokenTruncate, TokenMask, SequenceTruncate, SequenceMask };

struct GrpoConfig {
  int64_t group_size = 0;        // G completions per prompt, consecutive in the batch
  float epsilon = 0.2f;          // lower clip: ratio >= 1 - epsilon
  float epsilon_high = 0.2f;     // upper clip: ratio <= 1 + epsilon_high (DAPO's clip-higher: 0.28)
  float beta = 0.0f;             // KL coefficient; 0 skips the reference entirely
  KlEstimator kl = KlEstimator::K3;
  float k3_clamp = 10.0f;        // |log ratio| bound inside k3, as verl does (0: none)
  // TRL >= 1.x default (use_bias_correction_kl): the KL term is multiplied by the importance
  // ratio pi/pi_old (with its gradient), correcting for sampling from the old policy.
  bool kl_ratio_correction = false;
  GrpoAggregation aggregation = GrpoAggregation::SequenceMean;
  RewardScaling reward_scaling = RewardScaling::Group;  // advantages (r - group mean) / (std + 1e-4)
  bool mask_truncated = false;   // completions without EOS get no loss (DAPO's overlong filtering)
  int64_t max_completion_length = 0;  // Constant aggregation's normaliser
  float temperature = 1.0f;      // logprobs on softmax(logits / T), the distribution sampling used
  ImportanceLevel importance_level = ImportanceLevel::Token;
  RolloutCorrection rollout_correction = RolloutCorrection::None;  // needs GrpoSample::sampling_logprobs
  float rollout_clip_min = 0.0f;  // C_min (0: no lower bound)
  float rollout_clip_max = 3.0f;  // C_max (infinity: no upper bound)
  // Only the top rho of the batch's live tokens by entropy carry the policy-gradient term
  // ("Beyond the 80/20 rule"; TRL's top_entropy_quantile): a token is kept when its entropy is >=
  // the (1 - rho) quantile (linear interpolation, as torch.quantile). 1 keeps every token.
  float top_entropy_quantile = 1.0f;
  // Entropy bonus: loss -= coef * mean entropy of softmax(logits / T) over the tokens the policy
  // term acts on. Adaptive control (Skywork-OR1, TRL's use_adaptive_entropy): the trainer keeps the
  // coefficient, starting at entropy_coef; after each applied step it moves by entropy_coef_delta
  // up (entropy <= entropy_target) or down, within [min, max], and a step applies it only while the
  // previous step's entropy was <= the target.
  float entropy_coef = 0.0f;
  bool adaptive_entropy = false;
  float entropy_coef_min = 0.0f, entropy_coef_max = 1.0f, entropy_coef_delta = 0.005f, entropy_target = 0.2f;
};

struct GrpoSample {
  std::vector<int32_t> prompt;
  std::vector<int32_t> completion;
  float reward = 0.0f;
  // Per completion token: the old policy's logprobs, the ratio's denominator. Empty: the current
  // policy's (ratio 1, TRL's on-policy case); the pipeline fills them from the sampler, whose
  // logprobs are the full softmax(logits / T), before top-k/top-p/min-p and penalties, equal to
  // the trainer's within 1e-5.
  std::vector<float> old_logprobs;
  std::vector<float> ref_logprobs;  // per completion token; required when beta > 0
  // Per completion token: the sampler's logprobs when another engine (or other weights) sampled;
  // required by rollout_correction. NaN: unknown (the token's correction is 1).
  std::vector<float> sampling_logprobs;
  // Per completion token, 1 = the model's own token (loss), 0 = inserted text such as a tool's
  // output (no loss, no entropy, not counted). Empty: all 1.
  std::vector<uint8_t> mask;
  bool truncated = false;
};

enum class DistillLoss {
  ForwardKL,  // KL(teacher || student): mean-seeking, the classic distillation loss
  ReverseKL,  // KL(student || teacher): mode-seeking (MiniLLM)
  JSD,        // generalised Jensen-Shannon with mixture (1-beta) student + beta teacher (TRL's GKD)
};

struct DistillConfig {
  DistillLoss loss = DistillLoss::ForwardKL;
  float beta = 0.5f;         // JSD interpolation (0: forward KL, 1: reverse KL, as TRL)
  float temperature = 1.0f;  // both distributions are softmax(logits / T)
};

struct StepMetrics {
  float loss = 0.0f;
  float grad_norm = 0.0f;
  float lr = 0.0f;
  int64_t tokens = 0;  // tokens that carried loss
  // GRPO only
  float kl = 0.0f, clip_low = 0.0f, clip_high = 0.0f, entropy = 0.0f;
  float reward_mean = 0.0f, reward_std = 0.0f, tied_group_share = 0.0f;
  float correct_length = 0.0f, incorrect_length = 0.0f;  // mean completion length, reward > 0 vs not
  int64_t policy_tokens = 0;  // GRPO: tokens the policy term acted on (the entropy mask's kept ones)
  float entropy_coef = 0.0f;  // the entropy bonus coefficient after the step (adaptive: the next step's)
  // Rollout correction: the weights (over live tokens, or over completions at sequence level) and
  // |pi_old - pi_sampler| in log space over live tokens.
  float is_ratio_min = 0.0f, is_ratio_mean = 0.0f, is_ratio_max = 0.0f;
  float sampling_logp_diff_mean = 0.0f, sampling_logp_diff_max = 0.0f;
  // Data parallelism: this step's gradient all-reduce (bytes per rank, buckets; 0 alone):
  // allreduce_seconds is what the step waited for it (the part not hidden behind the backward),
  // allreduce_busy_seconds the time its host collectives ran, overlapped or not.
  double allreduce_seconds = 0.0, allreduce_busy_seconds = 0.0;
  int64_t allreduce_bytes = 0, allreduce_buckets = 0;
};

// The adaptive entropy controller's state (GrpoConfig::adaptive_entropy), saved with checkpoints.
struct EntropyControl {
  float coef = 0.0f;
  double last_entropy = INFINITY;  // the last applied step's entropy (infinity: none yet)
  bool started = false;            // coef initialised from the config
};

class Trainer {
 public:
  // The policy must be loaded in f32 (its weights are the master weights).
  Trainer(std::shared_ptr<const Model> policy, TrainerConfig cfg);

  // SFT: loss = mean over every masked token of every example in every micro-batch of
  // -log p(token | prefix); one optimizer step.
  StepMetrics sft_step(std::span<const std::vector<SftExample>> micro_batches);

  // GRPO advantages of a batch whose groups are consecutive runs of cfg.group_size samples. With a
  // communicator of several ranks, batch reward scaling uses the std over every rank's batch.
  static std::vector<float> advantages(std::span<const GrpoSample> batch, const GrpoConfig& cfg,
                                       Communicator* comm = nullptr);

  // GRPO: loss and gradient of the batch split into micro-batches of `micro_batch` samples
  // (0: one), then one optimizer step. With apply = false only loss, metrics and gradients are
  // computed (gradients() holds them) and the weights stay unchanged.
  StepMetrics grpo_step(std::span<const GrpoSample> batch, const GrpoConfig& cfg, int64_t micro_batch = 0,
                        bool apply = true);

  // Logit distillation from `teacher` (same vocabulary) on the masked tokens of `batch` (mask as
  // for SFT): loss = mean over masked tokens of the divergence between the two next-token
  // distributions at cfg.temperature. Sequence-level distillation is sft_step on teacher samples.
  StepMetrics distill_step(const Model& teacher, std::span<const std::vector<SftExample>> micro_batches,
                           const DistillConfig& cfg, bool apply = true);

  // dL/dlogprob of every completion token of the last GRPO step, per sample (0 where masked).
  const std::vector<std::vector<float>>& last_token_grads() const { return last_dlogp_; }
  // Per completion token of the last GRPO step: current logprob, importance ratio, KL term.
  const std::vector<std::vector<float>>& last_token_logprobs() const { return last_logp_; }

  // DeepSeek-V3's auxiliary-loss-free load balancing: after a step, each MoE layer's selection
  // bias (e_score_correction_bias) moves by `gamma` towards balance: b_e -= gamma for experts that
  // received more than the layer's mean load, b_e += gamma for those below it (sign update of
  // the paper, section 2.1.2). `load` is tokens per expert, [n_layers * n_experts] by layer.
  // Layers without a selection bias are skipped. Mutates the policy like a step does.
  void balance_experts(std::span<const int64_t> load, float gamma);

  // The adaptive entropy controller (read it to save, set it when resuming).
  const EntropyControl& entropy_control() const { return entropy_; }
  void set_entropy_control(const EntropyControl& e) { entropy_ = e; }

  // Gradients of the last step (before clipping).
  const Gradients& gradients() const { return grads_; }
  const Model& policy() const { return *policy_; }
  AdamW& optimizer() { return opt_; }
  int64_t step_count() const { return opt_.steps(); }
  // The data-parallel job this trainer is part of (one rank when cfg.comm was null).
  Communicator& communicator() const { return *comm_; }
  // ZeRO-1: the rank that owns each parameter's optimizer state (empty without ZeRO-1), by
  // parameter name.
  std::vector<std::pair<std::string, int>> zero1_assignment() const;
  // ZeRO-1 checkpoints: gather_optimizer_state gives every rank the whole AdamW state (each
  // owner broadcasts its share; for a checkpoint that rank 0 writes), shard_optimizer_state drops
  // the state of the parameters other ranks own again (also after loading a whole checkpoint).
  // Nothing happens without ZeRO-1. Every rank calls them at the same point.
  void gather_optimizer_state();
  void shard_optimizer_state();

 private:
  bool distributed() const { return comm_->size() > 1; }
  // Data parallelism: overlap_backward makes `pass` (the step's last backward) start each bucket's
  // all-reduce as its layers finish; reduce_gradients then completes the sums (the whole all-reduce
  // on a rank that ran no backward) and times it into last_reduce_. Nothing on one rank. Between
  // the two the trainer's thread makes no collective call (the reducer's thread does).
  void overlap_backward(LogprobPass& pass);
  void reduce_gradients();
  // Zeroes the gradients for a step (and makes the reducer there, a point every rank reaches: its
  // device collective is made collectively).
  void zero_gradients();
  StepMetrics last_reduce_;  // only the allreduce_* fields
  StepMetrics apply_step(StepMetrics m);
  // LoRA dropout: the policy's mask seed for micro-batch `micro` of this step (a function of the
  // optimizer step, so a resumed run draws the same masks); DropoutOff clears it when a step ends.
  void dropout_for(size_t micro) const;
  struct DropoutOff {
    const Model& m;
    ~DropoutOff() { m.set_lora_dropout_seed(0); }
  };
  void grpo_backward(LogprobPass& pass, const detail::GrpoPlan& P, size_t b0, size_t b1, const std::vector<float>& lp,
                     detail::GrpoSums& S);
  StepMetrics grpo_metrics(const detail::GrpoPlan& P, const detail::GrpoSums& S) const;
  void count_routes(const LogprobPass& pass);
  std::vector<int64_t> load_;
  std::shared_ptr<const Model> policy_;
  TrainerConfig cfg_;
  AdamW opt_;
  Gradients grads_;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::string> frozen_;
  std::vector<std::vector<float>> last_dlogp_, last_logp_;
  EntropyControl entropy_;
  std::shared_ptr<Communicator> comm_;
  std::vector<std::string> trained_;  // parameters that get gradients and updates, in params_ order
  std::vector<int> owners_;           // ZeRO-1: owner rank per params_ entry (empty: off)
  // NCCL between the ranks when the policy is on a GPU (made at the first collective; null on the CPU).
  kernels::DeviceCollective* device_collective();
  std::unique_ptr<kernels::DeviceCollective> device_comm_;
  bool device_comm_made_ = false;
  // The bucketed gradient all-reduce (made at the first distributed step; declared last so that it
  // goes before the gradients and the device collective it uses).
  GradientReducer& reducer();
  std::unique_ptr<GradientReducer> reducer_;
};

}  // namespace reason
