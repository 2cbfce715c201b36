// The pipeline's GRPO stage: rollouts (G completions per prompt, prompt cache shared, old
// logprobs captured while sampling), rewards (built-ins and registered callbacks under a
// deadline, DAPO overlong shaping), optional DAPO dynamic sampling, reference logprobs when the
// KL term is on, then one Trainer::grpo_step per step.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "rl/pipeline_stage.h"
#include "rl/progress.h"
#include "rl/rewards.h"
#include "rl/rollout.h"
#include "train/trainer_config.h"

namespace reason::pipeline_detail {

namespace fs = std::filesystem;

namespace {

double mean(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

}  // namespace

// The reward functions of a RewardConfig (shared with rejection sampling's checks).
std::vector<NamedReward> make_rewards(const proto::RewardConfig& rc, const PipelineOptions& opts) {
  std::vector<NamedReward> out;
  FormatOptions fo;
  fo.require_open_tag = rc.has_require_open_tag() ? rc.require_open_tag() : true;
  const std::string lang = rc.target_language().empty() ? "en" : rc.target_language();
  auto add_builtin = [&](proto::RewardTerm::Kind k, float w) {
    NamedReward r;
    r.weight = w;
    r.trusted = true;
    switch (k) {
      case proto::RewardTerm::MATH_ACCURACY:
        r.name = "math_accuracy";
        r.fn = [](const RewardInput& in) { return math_accuracy_reward(in.completion, in.answer); };
        break;
      case proto::RewardTerm::FORMAT:
        r.name = "format";
        r.fn = [fo](const RewardInput& in) { return format_reward(in.completion, fo); };
        break;
      default:
        r.name = "language_consistency";
        r.fn = [lang](const RewardInput& in) { return language_consistency_reward(in.completion, lang); };
        break;
    }
    out.push_back(std::move(r));
  };
  if (rc.terms().empty()) {
    add_builtin(proto::RewardTerm::MATH_ACCURACY, 1.0f);
    add_builtin(proto::RewardTerm::FORMAT, 1.0f);
  }
  for (const auto& t : rc.terms()) {
    const float w = t.has_weight() ? t.weight() : 1.0f;
    if (!t.callback().empty()) {
      auto it = opts.rewards.find(t.callback());
      if (it == opts.rewards.end()) fail(ErrorCode::InvalidArgument, "reward callback '{}' is not registered", t.callback());
      out.push_back(NamedReward{t.callback(), w, it->second, false});
    } else {
      add_builtin(t.kind(), w);
    }
  }
  return out;
}

// The stage's tools (ToolConfig) over the program's registered callbacks; none: single-turn.
ToolOptions make_tools(const proto::ToolConfig& tc, const PipelineOptions& opts) {
  ToolOptions t;
  for (const auto& name : tc.callbacks()) {
    auto it = opts.tools.find(name);
    if (it == opts.tools.end()) fail(ErrorCode::InvalidArgument, "tool callback '{}' is not registered", name);
    t.tools[name] = it->second;
  }
  if (tc.max_calls() > 0) t.max_calls = tc.max_calls();
  if (tc.deadline_ms() > 0) t.deadline = std::chrono::milliseconds(tc.deadline_ms());
  if (tc.has_call_open()) t.call_open = tc.call_open();
  if (tc.has_call_close()) t.call_close = tc.call_close();
  if (tc.has_result_open()) t.result_open = tc.result_open();
  if (tc.has_result_close()) t.result_close = tc.result_close();
  if (tc.max_result_bytes() > 0) t.max_result_bytes = size_t(tc.max_result_bytes());
  if (tc.raw() && !t.tools.empty()) t.raw_tool = t.tools.begin()->first;
  return t;
}

StageResult run_grpo_stage(const StageEnv& env) {
  const auto& s = env.stage->grpo();
  TrainerConfig tc;
  tc.optim = adamw_from_proto(s.optimizer(), env.where);
  tc.schedule = schedule_from_proto(s.schedule(), env.where);
  tc.bias_update_speed = s.bias_update_speed();
  const GrpoConfig gc = grpo_from_proto(s.grpo(), true, env.where);
  const int64_t steps = s.steps(), P = s.prompts_per_step() > 0 ? s.prompts_per_step() : 8;
  const int64_t rounds = s.dynamic_sampling() ? (s.max_sampling_rounds() > 0 ? s.max_sampling_rounds() : 4) : 1;

  TrainingRun run = open_training(env, s.model(), tc,
                                  s.has_lora() ? std::optional<LoraSpec>(lora_from_proto(s.lora(), env.where)) : std::nullopt);
  std::shared_ptr<const Model> reference;
  if (gc.beta > 0) reference = Model::load(env.model_dir(s.model()), env.load_options(s.model()));
  const Tokenizer& tok = *run.model->require_tokenizer();

  const Dataset& data = env.dataset(s.dataset());
  std::vector<RolloutPrompt> all(data.records.size());
  for (size_t i = 0; i < all.size(); ++i) {
    const auto& r = data.records[i];
    all[i].ids = encode_prompt(env.prompt_format, tok, r.prompt);
    all[i].text = r.prompt;
    all[i].answer = r.answer;
    all[i].extra_json = r.fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  RolloutOptions ro;
  ro.group_size = gc.group_size;
  ro.sampling = sampling_params(s.sampling(), gc.temperature, 1.0f);
  const ToolOptions tools = make_tools(s.tools(), *env.opts);
  ro.tools = tools.enabled() ? &tools : nullptr;
  const int64_t deadline = s.reward().deadline_ms() > 0 ? s.reward().deadline_ms() : 10000;
  RewardRunner runner(make_rewards(s.reward(), *env.opts), std::chrono::milliseconds(deadline), 2);
  int math_term = -1, format_term = -1;
  for (size_t k = 0; k < runner.rewards().size(); ++k) {
    if (runner.rewards()[k].name == "math_accuracy" && math_term < 0) math_term = int(k);
    if (runner.rewards()[k].name == "format" && format_term < 0) format_term = int(k);
  }
  OverlongShaping ov;
  if (s.reward().has_overlong()) {
    const auto& o = s.reward().overlong();
    ov.max_length = o.max_length() > 0 ? o.max_length() : ro.sampling.max_new_tokens;
    ov.cache = o.cache();
    ov.weight = o.has_weight() ? o.weight() : 1.0f;
  }

  MetricsLog log((fs::path(env.dir) / "metrics.jsonl").string(), run.done_steps, env.comm.get());
  ProgressBar bar(env.name, steps, env.opts->log, env.opts->progress);
  bar.start(run.done_steps);
  DataOrder order(all.size(), env.seed);
  Communicator& comm = *env.comm;
  // This rank's prompts of every sampling round (whole groups: advantages stay group-local).
  const auto [pfirst, plast] = rank_share(comm, size_t(P));
  for (int64_t step = run.done_steps + 1; step <= steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    RolloutStats rs;
    std::vector<RolloutPrompt> batch_prompts;  // this rank's groups of the step's batch
    std::vector<Rollout> batch;
    int64_t dropped = 0, sampled_groups = 0, kept = 0;  // over every rank
    for (int64_t round = 0; round < rounds && kept < P; ++round) {
      std::vector<RolloutPrompt> prompts;
      for (int64_t i = int64_t(pfirst); i < int64_t(plast); ++i) {
        RolloutPrompt p = all[order.at(((step - 1) * rounds + round) * P + i)];
        p.seed = mix_seed(env.seed, uint64_t(((step - 1) * rounds + round) * P + i));
        prompts.push_back(std::move(p));
      }
      auto rolls = sample_rollouts(*run.model, prompts, ro, &rs);
      score_rollouts(rolls, prompts, runner, ov, &rs);
      const size_t G = size_t(gc.group_size);
      // DAPO dynamic sampling decides on the round's groups of every rank, in prompt order, as one
      // process would: which groups are dropped (tied rewards) and which fill the batch's P.
      std::vector<float> tied;
      for (size_t g = 0; g < prompts.size(); ++g) tied.push_back(group_rewards_tied(std::span<const Rollout>(rolls.data() + g * G, G)));
      tied = comm.allgather(tied);
      for (size_t g = 0; g < tied.size(); ++g) {
        ++sampled_groups;
        const bool last_round = round + 1 == rounds;
        if (s.dynamic_sampling() && tied[g] != 0.0f && !(last_round && kept == 0)) {
          ++dropped;
          continue;
        }
        if (kept >= P) break;
        ++kept;
        if (g < pfirst || g >= plast) continue;  // another rank's group
        for (size_t j = 0; j < G; ++j) {
          batch.push_back(rolls[(g - pfirst) * G + j]);
          batch.back().prompt = batch_prompts.size();
        }
        batch_prompts.push_back(prompts[g - pfirst]);
      }
    }
    const double sample_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto samples = to_grpo_samples(batch, batch_prompts, gc.rollout_correction != RolloutCorrection::None);
    if (reference) fill_reference_logprobs(*reference, samples, gc.temperature);
    const auto t1 = std::chrono::steady_clock::now();
    const StepMetrics m = run.trainer->grpo_step(samples, gc, s.micro_batch());
    const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

    // The step's rollouts of every rank, for the metrics.
    // The step's rollouts of every rank, for the metrics: one row per rollout (reward, length,
    // truncated, reward failed, tool calls, tool errors, then each reward term), one allgather.
    const size_t n_terms = runner.rewards().size(), width = 6 + n_terms;
    std::vector<float> table;
    for (const Rollout& r : batch) {
      table.insert(table.end(), {r.reward, float(r.completion.size()), float(r.truncated), float(r.reward_failed),
                                 float(r.tool_calls), float(r.tool_errors)});
      for (size_t k = 0; k < n_terms; ++k) table.push_back(r.reward_terms[k]);
    }
    table = comm.allgather(table);
    auto column = [&](size_t c) {
      std::vector<double> v;
      for (size_t i = c; i < table.size(); i += width) v.push_back(table[i]);
      return v;
    };
    auto sum = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
    const std::vector<double> rewards = column(0), len = column(1);
    const std::vector<double> acc = math_term >= 0 ? column(6 + size_t(math_term)) : std::vector<double>{};
    const std::vector<double> fmt_ok = format_term >= 0 ? column(6 + size_t(format_term)) : std::vector<double>{};
    const double truncated = sum(column(2)), failures = sum(column(3));
    int64_t counts[3] = {0, rs.generated_tokens, rs.prompt_tokens_shared};
    for (const auto& smp : samples) counts[0] += int64_t(smp.prompt.size() + smp.completion.size());
    comm.allreduce_sum(std::span<int64_t>(counts));
    const int64_t tokens = counts[0], generated = counts[1];
    const double n_rolls = double(std::max<size_t>(1, rewards.size()));
    const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json row = {{"step", step},
                          {"reward", mean(rewards)},
                          {"reward_std", m.reward_std},
                          {"accuracy", mean(acc)},
                          {"format", mean(fmt_ok)},
                          {"response_length", mean(len)},
                          {"truncated", truncated / n_rolls},
                          {"kl", m.kl},
                          {"entropy", m.entropy},
                          {"clip_low", m.clip_low},
                          {"clip_high", m.clip_high},
                          {"loss", m.loss},
                          {"grad_norm", m.grad_norm},
                          {"lr", m.lr},
                          {"tied_groups", m.tied_group_share},
                          {"groups", kept},
                          {"dropped_groups", dropped},
                          {"sampled_groups", sampled_groups},
                          {"reward_failures", int64_t(failures)},
                          {"generated_tokens", generated},
                          {"prompt_tokens_shared", counts[2]},
                          {"sample_seconds", sample_s},
                          {"train_seconds", train_s},
                          {"tokens_per_s", double(generated + tokens) / total_s}};
    if (comm.size() > 1) {
      row["ranks"] = comm.size();
      row["allreduce_seconds"] = m.allreduce_seconds;
      row["allreduce_busy_seconds"] = m.allreduce_busy_seconds;
      row["allreduce_bytes"] = m.allreduce_bytes;
      row["allreduce_buckets"] = m.allreduce_buckets;
    }
    if (ro.tools) {  // per completion of the batch trained on
      row["tool_calls"] = mean(column(4));
      row["tool_errors"] = mean(column(5));
    }
    if (gc.entropy_coef != 0.0f || gc.adaptive_entropy) row["entropy_coef"] = m.entropy_coef;
    if (gc.top_entropy_quantile < 1.0f) row["policy_tokens"] = m.policy_tokens;
    if (gc.rollout_correction != RolloutCorrection::None) {
      row["is_ratio_min"] = m.is_ratio_min;
      row["is_ratio_mean"] = m.is_ratio_mean;
      row["is_ratio_max"] = m.is_ratio_max;
      row["sampling_logp_diff_mean"] = m.sampling_logp_diff_mean;
      row["sampling_logp_diff_max"] = m.sampling_logp_diff_max;
    }
    for (size_t k = 0; k < runner.rewards().size(); ++k)
      row["reward/" + runner.rewards()[k].name] = mean(column(6 + k));
    if (failures > 0) {
      std::vector<std::string> first;
      for (const Rollout& r : batch)
        if (r.reward_failed) {
          first.push_back(r.reward_error);
          break;
        }
      const std::vector<std::string> errors = allgather_strings(comm, first);
      if (!errors.empty()) {
        row["reward_error"] = errors.front();
        std::fprintf(env.opts->log, "\n%s: step %lld: %lld reward call(s) failed, e.g. %s\n", env.name.c_str(),
                     (long long)step, (long long)failures, errors.front().c_str());
      }
    }
    log.append(row);
    bar.update(step,
               {{"reward", mean(rewards)}, {"acc", mean(acc)}, {"fmt", mean(fmt_ok)}, {"len", mean(len)}, {"kl", m.kl}},
               generated + tokens);
    if (env.opts->on_step) env.opts->on_step(env.name, step);
    if (step % env.checkpoint_every == 0 && step < steps) save_training_checkpoint(env, run, step);
  }
  bar.finish();
  StageResult res;
  res.models[s.model()] = finish_training(env, run, steps);
  write_stage_plots(env, log.rows(),
                    {{"reward", "mean reward"},
                     {"accuracy", "accuracy"},
                     {"kl", "KL to reference"},
                     {"response_length", "mean response length (tokens)"},
                     {"format", "format reward"},
                     {"entropy", "entropy"}});
  const auto& rows = log.rows();
  res.summary = {{"steps", steps}};
  auto window_mean = [&](const char* key, bool first) {
    std::vector<double> v;
    const size_t n = std::min<size_t>(rows.size(), 5);
    for (size_t i = 0; i < n; ++i) {
      const auto& r = rows[first ? i : rows.size() - 1 - i];
      if (r.contains(key) && r[key].is_number()) v.push_back(r[key].get<double>());
    }
    return mean(v);
  };
  for (const char* k : {"reward", "accuracy", "format", "response_length"}) {
    res.summary[std::string("first5_") + k] = window_mean(k, true);
    res.summary[std::string("last5_") + k] = window_mean(k, false);
  }
  const auto& st = runner.stats();
  res.summary["reward_failures"] = st.failed;
  return res;
}

}  // namespace reason::pipeline_detail
