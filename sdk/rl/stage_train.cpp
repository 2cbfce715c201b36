// The pipeline's training stages on fixed data: SFT, and distillation (sequence-level = SFT of
// the student on teacher completions; logit-level = divergence to the teacher's distributions).
#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "infer/generator.h"
#include "rl/pipeline_stage.h"
#include "rl/progress.h"
#include "rl/rollout.h"
#include "train/trainer_config.h"

namespace reason::pipeline_detail {

namespace fs = std::filesystem;

namespace {

using StepFn = std::function<StepMetrics(Trainer&, std::span<const std::vector<SftExample>>)>;

struct LoopSpec {
  std::string model;
  const Dataset* data = nullptr;  // tokenized with the trained model's tokenizer
  int64_t max_length = 1024;
  int64_t steps = 0, epochs = 0;  // steps, or passes over the data
  int64_t batch = 16, micro = 0;
  TrainerConfig tc;
  std::optional<LoraSpec> lora;
  StepFn step;
};

int64_t steps_for(int64_t steps, int64_t epochs, size_t n, int64_t batch) {
  if (steps > 0) return steps;
  return std::max<int64_t>(1, (epochs * int64_t(n) + batch - 1) / batch);
}

StageResult run_loop(const StageEnv& env, LoopSpec spec) {
  TrainingRun run = open_training(env, spec.model, spec.tc, spec.lora);
  const std::vector<SftExample> examples = make_sft_examples(*spec.data, *run.model->require_tokenizer(),
                                                             env.prompt_format, eos_id(*run.model), spec.max_length);
  spec.steps = steps_for(spec.steps, spec.epochs, examples.size(), spec.batch);
  MetricsLog log((fs::path(env.dir) / "metrics.jsonl").string(), run.done_steps, env.comm.get());
  ProgressBar bar(env.name, spec.steps, env.opts->log, env.opts->progress);
  bar.start(run.done_steps);
  DataOrder order(examples.size(), env.seed);
  const int64_t B = spec.batch, mb = spec.micro > 0 ? spec.micro : B;
  // This rank's examples of each step (all of them in a single process), in micro-batches of mb.
  const auto [first, last] = rank_share(*env.comm, size_t(B));
  for (int64_t step = run.done_steps + 1; step <= spec.steps; ++step) {
    std::vector<std::vector<SftExample>> mbs;
    for (int64_t i = int64_t(first); i < int64_t(last); ++i) {
      if ((i - int64_t(first)) % mb == 0) mbs.emplace_back();
      mbs.back().push_back(examples[order.at((step - 1) * B + i)]);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const StepMetrics m = spec.step(*run.trainer, mbs);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t tokens = 0;
    for (const auto& v : mbs)
      for (const auto& e : v) tokens += int64_t(e.tokens.size());
    env.comm->allreduce_sum(std::span<int64_t>(&tokens, 1));
    log.append({{"step", step}, {"loss", m.loss}, {"grad_norm", m.grad_norm}, {"lr", m.lr}, {"tokens", tokens},
                {"loss_tokens", m.tokens}, {"tokens_per_s", double(tokens) / dt}, {"seconds", dt}});
    bar.update(step, {{"loss", m.loss}, {"lr", m.lr}}, tokens);
    if (env.opts->on_step) env.opts->on_step(env.name, step);
    if (step % env.checkpoint_every == 0 && step < spec.steps) save_training_checkpoint(env, run, step);
  }
  bar.finish();
  StageResult res;
  res.models[spec.model] = finish_training(env, run, spec.steps);
  write_stage_plots(env, log.rows(),
                    {{"loss", "loss"}, {"lr", "learning rate"}, {"grad_norm", "gradient norm"}});
  const auto& rows = log.rows();
  res.summary = {{"steps", spec.steps}, {"examples", examples.size()}};
  if (!rows.empty()) {
    res.summary["first_loss"] = rows.front()["loss"];
    res.summary["final_loss"] = rows.back()["loss"];
  }
  return res;
}

}  // namespace

StageResult run_sft_stage(const StageEnv& env) {
  const auto& s = env.stage->sft();
  LoopSpec spec;
  spec.model = s.model();
  spec.data = &env.dataset(s.dataset());
  if (s.max_length() > 0) spec.max_length = s.max_length();
  spec.batch = s.batch_size() > 0 ? s.batch_size() : 16;
  spec.micro = s.micro_batch();
  spec.steps = s.steps();
  spec.epochs = s.epochs();
  spec.tc.optim = adamw_from_proto(s.optimizer(), env.where);
  spec.tc.schedule = schedule_from_proto(s.schedule(), env.where);
  if (s.has_lora()) spec.lora = lora_from_proto(s.lora(), env.where);
  spec.step = [](Trainer& t, std::span<const std::vector<SftExample>> mbs) { return t.sft_step(mbs); };
  return run_loop(env, std::move(spec));
}

StageResult run_distill_stage(const StageEnv& env) {
  const auto& s = env.stage->distill();
  Dataset data = env.dataset(s.dataset());
  bool has_completions = true;
  for (const auto& r : data.records) has_completions = has_completions && (!r.completion.empty() || !r.text.empty());
  // The teacher is needed to write completions or to give its distributions (LOGIT); sequence-level
  // distillation on existing completions never loads it.
  std::shared_ptr<const Model> teacher;
  if (!has_completions || s.mode() == proto::DistillStage::LOGIT) teacher = Model::load(env.model_dir(s.teacher()), env.load_options(s.teacher()));
  // Sequence-level distillation from prompts only: the teacher writes the completions now.
  if (!has_completions) {
    const Tokenizer& tok = *teacher->require_tokenizer();
    std::vector<RolloutPrompt> prompts;
    for (size_t i = 0; i < data.records.size(); ++i)
      prompts.push_back({encode_prompt(env.prompt_format, tok, data.records[i].prompt), data.records[i].prompt,
                         data.records[i].answer, "", mix_seed(env.seed, i)});
    RolloutOptions ro;
    ro.group_size = 1;
    ro.sampling = sampling_params(s.sampling(), 0.6f, 0.95f);
    // Each rank writes its share of the completions (the seeds are the prompts'); all get all.
    const auto [first, last] = rank_share(*env.comm, prompts.size());
    std::vector<std::string> mine;
    for (const Rollout& r : sample_rollouts(*teacher, std::span(prompts).subspan(first, last - first), ro)) mine.push_back(r.text);
    const std::vector<std::string> texts = allgather_strings(*env.comm, mine);
    for (size_t i = 0; i < texts.size(); ++i) data.records[i].completion = texts[i];
  }
  LoopSpec spec;
  spec.model = s.student();
  spec.data = &data;
  if (s.max_length() > 0) spec.max_length = s.max_length();
  spec.batch = s.batch_size() > 0 ? s.batch_size() : 16;
  spec.steps = s.steps();
  spec.epochs = s.epochs();
  spec.tc.optim = adamw_from_proto(s.optimizer(), env.where);
  spec.tc.schedule = schedule_from_proto(s.schedule(), env.where);
  if (s.has_lora()) spec.lora = lora_from_proto(s.lora(), env.where);
  if (s.mode() == proto::DistillStage::LOGIT) {
    const DistillConfig dc = distill_from_proto(s.distill(), env.where);
    std::shared_ptr<const Model> t = std::move(teacher);
    spec.step = [t, dc](Trainer& tr, std::span<const std::vector<SftExample>> mbs) { return tr.distill_step(*t, mbs, dc); };
  } else {
    teacher.reset();
    spec.step = [](Trainer& t, std::span<const std::vector<SftExample>> mbs) { return t.sft_step(mbs); };
  }
  return run_loop(env, std::move(spec));
}

}  // namespace reason::pipeline_detail
