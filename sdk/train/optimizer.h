// AdamW with decoupled weight decay (torch.optim.AdamW's update, f32 state), global gradient-norm
// clipping (torch.nn.utils.clip_grad_norm_), and learning-rate schedules (warmup then constant,
// linear or cosine decay, as transformers' get_*_schedule_with_warmup).
// Threads: an optimizer belongs to one trainer, used by one thread at a time.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "train/logprob_pass.h"

namespace reason {

struct AdamWConfig {
  float lr = 1e-5f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;  // not applied to biases and norm weights (as transformers' Trainer)
  float max_grad_norm = 1.0f; // 0: no clipping
};

struct LrSchedule {
  enum class Kind { Constant, Linear, Cosine };
  Kind kind = Kind::Constant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // decay horizon for Linear/Cosine
  // Learning rate at optimizer step `step` (0-based) for base rate `lr`.
  float at(int64_t step, float lr) const;
};

class AdamW {
 public:
  explicit AdamW(AdamWConfig cfg = {}) : cfg_(cfg) {}

  // One update of `params` (name -> tensor shared with the model, f32) from `grads` at
  // learning rate `lr`; parameters named in `frozen` are left alone. Returns the global gradient
  // norm before clipping (over the trained parameters). If any gradient is NaN or infinite it
  // throws reason::Error(InvalidArgument) naming the parameter and changes nothing.
  // The update runs on `be`, the backend the parameters' model runs on.
  // `elsewhere` (ZeRO-1): trained parameters whose gradients count in the norm and the checks but
  // which another rank updates: this call leaves them, and creates no state for them.
  float step(kernels::Backend& be, const std::vector<std::pair<std::string, Tensor>>& params, Gradients& grads,
             float lr, const std::vector<std::string>& frozen = {}, const std::vector<std::string>* elsewhere = nullptr);

  int64_t steps() const { return t_; }
  const AdamWConfig& config() const { return cfg_; }
  // Optimizer state, for checkpoints: exp_avg and exp_avg_sq by parameter name.
  std::map<std::string, std::pair<Tensor, Tensor>>& state() { return state_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  AdamWConfig cfg_;
  int64_t t_ = 0;
  std::map<std::string, std::pair<Tensor, Tensor>> state_;
};

// True for parameters transformers' Trainer exempts from weight decay (biases, norm weights).
bool no_weight_decay(const std::string& name);

}  // namespace reason
