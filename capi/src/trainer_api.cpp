// C ABI: trainer create/free, SFT / GRPO / distillation steps, logprobs, checkpoints, rewards.
#include <optional>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "capi_internal.h"
#include "handles.h"
#include "rl/rewards.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "train/trainer_config.h"

using reason::capi::guard;

struct reason_trainer {
  std::shared_ptr<const reason::Model> policy;
  std::shared_ptr<const reason::Model> reference;
  std::shared_ptr<reason::capi::ModelLock> policy_lock, reference_lock;  // the models' handles' locks
  reason::TrainerSettings settings;
  std::unique_ptr<reason::Trainer> trainer;
};

namespace {

void fill_metrics(reason_step_metrics* out, const reason::StepMetrics& m, int64_t step) {
  if (!out) return;
  reason_step_metrics r{};
  r.struct_size = sizeof(r);
  r.step = step;
  r.loss = m.loss;
  r.grad_norm = m.grad_norm;
  r.lr = m.lr;
  r.tokens = m.tokens;
  r.kl = m.kl;
  r.clip_low = m.clip_low;
  r.clip_high = m.clip_high;
  r.entropy = m.entropy;
  r.reward_mean = m.reward_mean;
  r.reward_std = m.reward_std;
  r.tied_group_share = m.tied_group_share;
  r.correct_length = m.correct_length;
  r.incorrect_length = m.incorrect_length;
  r.policy_tokens = m.policy_tokens;
  r.entropy_coef = m.entropy_coef;
  r.is_ratio_min = m.is_ratio_min;
  r.is_ratio_mean = m.is_ratio_mean;
  r.is_ratio_max = m.is_ratio_max;
  r.sampling_logp_diff_mean = m.sampling_logp_diff_mean;
  r.sampling_logp_diff_max = m.sampling_logp_diff_max;
  const uint32_t size = out->struct_size;
  std::memcpy(out, &r, size < sizeof(r) ? size : sizeof(r));
  out->struct_size = size;
}

std::vector<reason::SftExample> sft_examples(const int32_t* const* tokens, const size_t* lens, const uint8_t* const* masks,
                                             size_t n) {
  if (n && (!tokens || !lens || !masks)) reason::fail(reason::ErrorCode::InvalidArgument, "tokens, lens or masks is NULL");
  std::vector<reason::SftExample> ex(n);
  for (size_t i = 0; i < n; ++i) {
    if (!tokens[i] || !masks[i]) reason::fail(reason::ErrorCode::InvalidArgument, "sequence {} has NULL tokens or mask", i);
    ex[i].tokens.assign(tokens[i], tokens[i] + lens[i]);
    ex[i].mask.assign(masks[i], masks[i] + lens[i]);
  }
  return ex;
}

std::vector<float> completion_logprobs(const reason::Model& m, const int32_t* prompt, size_t pl, const int32_t* comp,
                                       size_t cl, float temperature) {
  if (!prompt || !comp || pl == 0 || cl == 0) reason::fail(reason::ErrorCode::InvalidArgument, "empty prompt or completion");
  std::vector<std::vector<int32_t>> seq(1);
  seq[0].assign(prompt, prompt + pl);
  seq[0].insert(seq[0].end(), comp, comp + cl);
  reason::LogprobPass pass;
  auto lp = pass.forward(m, seq, temperature);
  return std::vector<float>(lp.end() - long(cl), lp.end());
}

// The samples' common fields into GrpoSamples (reference logprobs from the trainer's reference
// model where the caller gave none and beta > 0).
template <class Sample>
reason::GrpoSample grpo_sample(const reason_trainer* tr, const Sample& s, size_t i) {
  const reason::GrpoConfig& gc = tr->settings.grpo;
  if (!s.prompt || !s.completion || !s.prompt_len || !s.completion_len)
    reason::fail(reason::ErrorCode::InvalidArgument, "sample {} has an empty prompt or completion", i);
  reason::GrpoSample g;
  g.prompt.assign(s.prompt, s.prompt + s.prompt_len);
  g.completion.assign(s.completion, s.completion + s.completion_len);
  g.reward = s.reward;
  g.truncated = s.truncated != 0;
  if (s.old_logprobs) g.old_logprobs.assign(s.old_logprobs, s.old_logprobs + s.completion_len);
  if (gc.beta > 0.0f) {
    if (s.ref_logprobs) {
      g.ref_logprobs.assign(s.ref_logprobs, s.ref_logprobs + s.completion_len);
    } else {
      if (!tr->reference)
        reason::fail(reason::ErrorCode::InvalidArgument,
                     "sample {}: grpo.beta > 0 needs ref_logprobs or a reference model at trainer creation", i);
      g.ref_logprobs =
          completion_logprobs(*tr->reference, s.prompt, s.prompt_len, s.completion, s.completion_len, gc.temperature);
    }
  }
  return g;
}

// What a training step holds: the policy's weights exclusively, the reference (or teacher) shared.
struct StepLocks {
  StepLocks(reason_trainer* tr, const char* what, reason::capi::ModelLock* other)
      : write(*tr->policy_lock, what), read(other && other != tr->policy_lock.get() ? other : nullptr) {
    if (read) reading.emplace(*read);
  }
  reason::capi::ModelLock::Write write;
  reason::capi::ModelLock* read;
  std::optional<reason::capi::ModelLock::Read> reading;
};

void run_grpo_step(reason_step_metrics* out, reason_trainer* tr, const std::vector<reason::GrpoSample>& batch) {
  if (tr->settings.grpo.group_size < 2)
    reason::fail(reason::ErrorCode::InvalidArgument, "grpo.group_size is not set in the trainer config (needs >= 2)");
  auto m = tr->trainer->grpo_step(batch, tr->settings.grpo, tr->settings.micro_batch);
  fill_metrics(out, m, tr->trainer->step_count());
}

}  // namespace

extern "C" {

REASON_API reason_status reason_trainer_create(reason_trainer** out, reason_model* policy, const reason_model* reference,
                                               const char* config, size_t config_len, int config_is_binary) {
  REASON_CHECK_ARG(out, "reason_trainer_create", "out is NULL");
  REASON_CHECK_ARG(policy && policy->model, "reason_trainer_create", "policy model is NULL");
  return guard("reason_trainer_create", [&] {
    auto t = std::make_unique<reason_trainer>();
    t->policy = policy->model;
    t->policy_lock = policy->lock;
    if (reference) {
      t->reference = reference->model;
      t->reference_lock = reference->lock;
    }
    std::string_view cfg;
    if (config) cfg = std::string_view(config, config_len ? config_len : (config_is_binary ? 0 : std::strlen(config)));
    t->settings = reason::parse_trainer_config(cfg, config_is_binary != 0);
    t->trainer = std::make_unique<reason::Trainer>(t->policy, t->settings.trainer);
    *out = t.release();
  });
}

REASON_API void reason_trainer_free(reason_trainer* trainer) { delete trainer; }

REASON_API reason_status reason_trainer_sft_step(reason_step_metrics* out, reason_trainer* tr, const int32_t* const* tokens,
                                                 const size_t* lens, const uint8_t* const* masks, size_t n) {
  REASON_CHECK_ARG(tr, "reason_trainer_sft_step", "trainer is NULL");
  return guard("reason_trainer_sft_step", [&] {
    StepLocks locks(tr, "reason_trainer_sft_step", nullptr);
    auto ex = sft_examples(tokens, lens, masks, n);
    std::vector<std::vector<reason::SftExample>> mbs;
    const size_t mb = tr->settings.micro_batch > 0 ? size_t(tr->settings.micro_batch) : std::max<size_t>(1, n);
    for (size_t i = 0; i < n; i += mb) mbs.emplace_back(ex.begin() + long(i), ex.begin() + long(std::min(n, i + mb)));
    auto m = tr->trainer->sft_step(mbs);
    fill_metrics(out, m, tr->trainer->step_count());
  });
}


REASON_API reason_status reason_trainer_grpo_step(reason_step_metrics* out, reason_trainer* tr,
                                                  const reason_grpo_sample* samples, size_t n) {
  REASON_CHECK_ARG(tr, "reason_trainer_grpo_step", "trainer is NULL");
  REASON_CHECK_ARG(samples || n == 0, "reason_trainer_grpo_step", "samples is NULL");
  return guard("reason_trainer_grpo_step", [&] {
    StepLocks locks(tr, "reason_trainer_grpo_step", tr->reference_lock.get());
    std::vector<reason::GrpoSample> batch;
    for (size_t i = 0; i < n; ++i) batch.push_back(grpo_sample(tr, samples[i], i));
    run_grpo_step(out, tr, batch);
  });
}

REASON_API reason_status reason_trainer_grpo_step_ex(reason_step_metrics* out, reason_trainer* tr,
                                                     const reason_grpo_sample_ex* samples, size_t n) {
  REASON_CHECK_ARG(tr, "reason_trainer_grpo_step_ex", "trainer is NULL");
  REASON_CHECK_ARG(samples || n == 0, "reason_trainer_grpo_step_ex", "samples is NULL");
  return guard("reason_trainer_grpo_step_ex", [&] {
    StepLocks locks(tr, "reason_trainer_grpo_step_ex", tr->reference_lock.get());
    const size_t stride = n ? samples[0].struct_size : 0;
    const size_t base = offsetof(reason_grpo_sample_ex, sampling_logprobs);
    if (n && (stride < base || stride > 4096))
      reason::fail(reason::ErrorCode::InvalidArgument,
                   "samples[0].struct_size {} is not a reason_grpo_sample_ex size (at least {}, at most 4096)", stride, base);
    // members wholly inside the caller's struct; the others stay absent (a size that cuts one in
    // two leaves it absent too)
    const size_t copied = std::min(stride, sizeof(reason_grpo_sample_ex));
    auto present = [&](size_t offset, size_t size) { return offset + size <= copied; };
    const bool has_sampling = present(offsetof(reason_grpo_sample_ex, sampling_logprobs), sizeof(const float*));
    const bool has_mask = present(offsetof(reason_grpo_sample_ex, loss_mask), sizeof(const uint8_t*));
    std::vector<reason::GrpoSample> batch;
    for (size_t i = 0; i < n; ++i) {
      reason_grpo_sample_ex s = REASON_GRPO_SAMPLE_EX_INIT;
      const char* src = reinterpret_cast<const char*>(samples) + i * stride;
      std::memcpy(&s, src, base);
      if (has_sampling)
        std::memcpy(&s.sampling_logprobs, src + offsetof(reason_grpo_sample_ex, sampling_logprobs), sizeof(s.sampling_logprobs));
      if (has_mask) std::memcpy(&s.loss_mask, src + offsetof(reason_grpo_sample_ex, loss_mask), sizeof(s.loss_mask));
      reason::GrpoSample g = grpo_sample(tr, s, i);
      if (s.sampling_logprobs) g.sampling_logprobs.assign(s.sampling_logprobs, s.sampling_logprobs + s.completion_len);
      if (s.loss_mask) g.mask.assign(s.loss_mask, s.loss_mask + s.completion_len);
      batch.push_back(std::move(g));
    }
    run_grpo_step(out, tr, batch);
  });
}

REASON_API reason_status reason_trainer_distill_step(reason_step_metrics* out, reason_trainer* tr,
                                                     const reason_model* teacher, const int32_t* const* tokens,
                                                     const size_t* lens, const uint8_t* const* masks, size_t n) {
  REASON_CHECK_ARG(tr, "reason_trainer_distill_step", "trainer is NULL");
  REASON_CHECK_ARG(teacher && teacher->model, "reason_trainer_distill_step", "teacher is NULL");
  return guard("reason_trainer_distill_step", [&] {
    StepLocks locks(tr, "reason_trainer_distill_step", teacher->lock.get());
    auto ex = sft_examples(tokens, lens, masks, n);
    std::vector<std::vector<reason::SftExample>> mbs{ex};
    auto m = tr->trainer->distill_step(*teacher->model, mbs, tr->settings.distill);
    fill_metrics(out, m, tr->trainer->step_count());
  });
}

REASON_API reason_status reason_trainer_completion_logprobs(float* out, reason_trainer* tr, int use_reference,
                                                            const int32_t* prompt, size_t prompt_len,
                                                            const int32_t* completion, size_t completion_len) {
  REASON_CHECK_ARG(out, "reason_trainer_completion_logprobs", "out is NULL");
  REASON_CHECK_ARG(tr, "reason_trainer_completion_logprobs", "trainer is NULL");
  REASON_CHECK_ARG(!use_reference || tr->reference, "reason_trainer_completion_logprobs", "the trainer has no reference model");
  return guard("reason_trainer_completion_logprobs", [&] {
    const reason::Model& m = use_reference ? *tr->reference : *tr->policy;
    reason::capi::ModelLock::Read read(use_reference ? *tr->reference_lock : *tr->policy_lock);
    auto lp = completion_logprobs(m, prompt, prompt_len, completion, completion_len, tr->settings.grpo.temperature);
    std::memcpy(out, lp.data(), lp.size() * sizeof(float));
  });
}

REASON_API reason_status reason_trainer_save(reason_trainer* tr, const char* dir) {
  REASON_CHECK_ARG(tr, "reason_trainer_save", "trainer is NULL");
  REASON_CHECK_ARG(dir, "reason_trainer_save", "dir is NULL");
  return guard("reason_trainer_save", [&] {
    // Data-parallel: rank 0 writes (with ZeRO-1 the whole AdamW state, gathered from every rank).
    reason::capi::ModelLock::Read read(*tr->policy_lock);
    reason::Trainer& t = *tr->trainer;
    t.gather_optimizer_state();
    reason::on_rank0(t.communicator(), [&] {
      reason::save_checkpoint(dir, *tr->policy, &t.optimizer(), reason::trainer_extra_state(t));
    });
    t.shard_optimizer_state();
  });
}

REASON_API reason_status reason_trainer_load_state(reason_trainer* tr, const char* dir) {
  REASON_CHECK_ARG(tr, "reason_trainer_load_state", "trainer is NULL");
  REASON_CHECK_ARG(dir, "reason_trainer_load_state", "dir is NULL");
  return guard("reason_trainer_load_state", [&] {
    reason::capi::ModelLock::Write write(*tr->policy_lock, "reason_trainer_load_state");
    const auto state = reason::load_optimizer_state(dir, *tr->policy, tr->trainer->optimizer());
    tr->trainer->shard_optimizer_state();  // ZeRO-1: keep this rank's share
    reason::restore_trainer_extra_state(*tr->trainer, state);
  });
}

REASON_API reason_status reason_builtin_reward(float* out, reason_reward_kind kind, const char* completion,
                                               const char* arg) {
  REASON_CHECK_ARG(out, "reason_builtin_reward", "out is NULL");
  REASON_CHECK_ARG(completion, "reason_builtin_reward", "completion is NULL");
  return guard("reason_builtin_reward", [&] {
    const std::string a = arg ? arg : "";
    switch (kind) {
      case REASON_REWARD_MATH_ACCURACY: *out = reason::math_accuracy_reward(completion, a); break;
      case REASON_REWARD_FORMAT: {
        reason::FormatOptions fo;
        fo.require_open_tag = a != "open";
        *out = reason::format_reward(completion, fo);
        break;
      }
      case REASON_REWARD_LANGUAGE: *out = reason::language_consistency_reward(completion, a.empty() ? "en" : a); break;
      default: reason::fail(reason::ErrorCode::InvalidArgument, "unknown reward kind {}", int(kind));
    }
  });
}

REASON_API reason_status reason_compute_rewards(float* out, size_t* n_failed, const reason_tokenizer* tok,
                                                const int32_t* const* completions, const size_t* lens,
                                                const char* const* answers, size_t n, reason_reward_fn fn,
                                                void* user_data) {
  REASON_CHECK_ARG(out, "reason_compute_rewards", "out is NULL");
  REASON_CHECK_ARG(tok && tok->tok, "reason_compute_rewards", "tokenizer is NULL");
  REASON_CHECK_ARG(fn, "reason_compute_rewards", "reward function is NULL");
  REASON_CHECK_ARG(n == 0 || (completions && lens), "reason_compute_rewards", "completions or lens is NULL");
  return guard("reason_compute_rewards", [&] {
    size_t failed = 0;
    for (size_t i = 0; i < n; ++i) {
      const std::string text = tok->tok->decode(std::span<const int32_t>(completions[i], lens[i]), true);
      const char* ans = answers && answers[i] ? answers[i] : "";
      float r = fn(user_data, i, text.c_str(), ans);
      if (!std::isfinite(r)) {
        r = 0.0f;
        ++failed;
      }
      out[i] = r;
    }
    if (n_failed) *n_failed = failed;
  });
}

}  // extern "C"
