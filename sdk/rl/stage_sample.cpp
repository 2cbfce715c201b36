// The pipeline's sampling stages: rejection sampling (N samples per prompt, keep those the
// verifier accepts that also pass the format and language checks, written as a dataset) and
// evaluation (pass@1 over K samples, cons@K, greedy accuracy).
#include <filesystem>

#include "core/error.h"
#include "io/atomic_write.h"
#include "rl/evaluate.h"
#include "rl/pipeline_stage.h"
#include "rl/progress.h"
#include "rl/rewards.h"
#include "rl/rollout.h"

namespace reason::pipeline_detail {

namespace fs = std::filesystem;

StageResult run_rejection_sampling_stage(const StageEnv& env) {
  const auto& s = env.stage->rejection_sampling();
  auto model = Model::load(env.model_dir(s.model()), env.load_options(s.model()));
  const Tokenizer& tok = *model->require_tokenizer();
  const Dataset& data = env.dataset(s.dataset());
  const size_t n_prompts = s.max_prompts() > 0 ? std::min<size_t>(data.records.size(), size_t(s.max_prompts()))
                                               : data.records.size();
  RolloutOptions ro;
  ro.group_size = s.samples_per_prompt() > 0 ? s.samples_per_prompt() : 4;
  ro.sampling = sampling_params(s.sampling(), 0.6f, 0.95f);
  FormatOptions fo;
  fo.require_open_tag = s.checks().has_require_open_tag() ? s.checks().require_open_tag() : true;
  const std::string lang = s.checks().target_language().empty() ? "en" : s.checks().target_language();
  const float min_lang = s.has_min_language_consistency() ? s.min_language_consistency() : 0.95f;

  std::vector<nlohmann::json> accepted, all_lines;
  int64_t prompts_with_accept = 0;
  ProgressBar bar(env.name, int64_t(n_prompts), env.opts->log, env.opts->progress);
  bar.start(0);
  const size_t per_batch = 32;
  // Each rank samples a contiguous share of the prompts (the seeds are the prompts'); the lines
  // are gathered in prompt order below.
  const auto [first, last] = rank_share(*env.comm, n_prompts);
  for (size_t b0 = first; b0 < last; b0 += per_batch) {
    const size_t b1 = std::min(last, b0 + per_batch);
    std::vector<RolloutPrompt> prompts;
    for (size_t i = b0; i < b1; ++i)
      prompts.push_back({encode_prompt(env.prompt_format, tok, data.records[i].prompt), data.records[i].prompt,
                         data.records[i].answer, "", mix_seed(env.seed, i)});
    auto rolls = sample_rollouts(*model, prompts, ro);
    int64_t gen_tokens = 0;
    for (size_t i = b0; i < b1; ++i) {
      int kept = 0;
      for (int64_t j = 0; j < ro.group_size; ++j) {
        const Rollout& r = rolls[(i - b0) * size_t(ro.group_size) + size_t(j)];
        gen_tokens += int64_t(r.completion.size());
        const auto& rec = data.records[i];
        const bool correct = rec.answer.empty() || math_accuracy_reward(r.text, rec.answer) > 0.5f;
        const bool formatted = format_reward(r.text, fo) > 0.5f;
        const float language = language_consistency_reward(r.text, lang);
        const bool ok = correct && formatted && language >= min_lang && !r.truncated &&
                        (s.keep_per_prompt() <= 0 || kept < s.keep_per_prompt());
        nlohmann::json line = {{"prompt", rec.prompt}, {"completion", r.text}, {"answer", rec.answer}};
        if (ok) {
          accepted.push_back(line);
          ++kept;
        }
        line["correct"] = correct;
        line["format"] = formatted;
        line["language_consistency"] = language;
        line["truncated"] = r.truncated;
        line["accepted"] = ok;
        all_lines.push_back(std::move(line));
      }
      prompts_with_accept += kept > 0;
    }
    bar.update(int64_t(b1 - first), {{"accepted", double(accepted.size())}}, gen_tokens);
  }
  bar.finish();
  if (env.comm->size() > 1) {
    auto gather = [&](std::vector<nlohmann::json>& lines) {
      std::vector<std::string> mine;
      for (const auto& l : lines) mine.push_back(l.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      lines.clear();
      for (const auto& t : allgather_strings(*env.comm, mine)) lines.push_back(nlohmann::json::parse(t));
    };
    gather(accepted);
    gather(all_lines);
    env.comm->allreduce_sum(std::span<int64_t>(&prompts_with_accept, 1));
  }
  on_rank0(*env.comm, [&] {
    write_jsonl((fs::path(env.dir) / "samples.jsonl").string(), accepted);
    write_jsonl((fs::path(env.dir) / "all_samples.jsonl").string(), all_lines);
  });
  StageResult res;
  res.summary = {{"prompts", n_prompts},
                 {"samples", all_lines.size()},
                 {"accepted", accepted.size()},
                 {"acceptance_rate", double(accepted.size()) / double(std::max<size_t>(1, all_lines.size()))},
                 {"prompts_with_accepted", prompts_with_accept},
                 {"dataset", (fs::path(env.dir) / "samples.jsonl").string()}};
  if (accepted.empty())
    std::fprintf(env.opts->log, "%s: warning: no sample was accepted; a stage that trains on it will fail\n",
                 env.name.c_str());
  return res;
}

StageResult run_eval_stage(const StageEnv& env) {
  const auto& s = env.stage->eval();
  auto model = Model::load(env.model_dir(s.model()), env.load_options(s.model()));
  const Tokenizer& tok = *model->require_tokenizer();
  const Dataset& data = env.dataset(s.dataset());
  const size_t n = s.max_prompts() > 0 ? std::min<size_t>(data.records.size(), size_t(s.max_prompts()))
                                       : data.records.size();
  std::vector<EvalItem> items(n);
  for (size_t i = 0; i < n; ++i)
    items[i] = EvalItem{encode_prompt(env.prompt_format, tok, data.records[i].prompt), data.records[i].answer};
  EvalOptions eo;
  eo.samples = s.samples() > 0 ? s.samples() : 4;
  eo.sampling = sampling_params(s.sampling(), 0.6f, 0.95f);
  eo.greedy = s.has_greedy() ? s.greedy() : true;
  eo.seed = env.seed;
  ProgressBar bar(env.name, int64_t(n), env.opts->log, env.opts->progress);
  bar.start(0);
  eo.on_progress = [&](int64_t done, int64_t) { bar.update(done, {}, 0); };
  eo.comm = env.comm.get();  // each rank samples its share of the problems; all get the report
  EvalReport rep = evaluate(*model, items, eo);
  bar.finish();
  nlohmann::json details = nlohmann::json::array();
  for (size_t i = 0; i < n; ++i) {
    const auto& d = rep.details[i];
    details.push_back({{"prompt", data.records[i].prompt},
                       {"answer", data.records[i].answer},
                       {"samples", d.samples},
                       {"correct", std::vector<bool>(d.correct.begin(), d.correct.end())},
                       {"majority", d.majority},
                       {"majority_correct", d.majority_correct},
                       {"greedy", d.greedy},
                       {"greedy_correct", d.greedy_correct}});
  }
  StageResult res;
  res.summary = eval_summary_json(rep);
  res.summary["model"] = s.model();
  nlohmann::json file = res.summary;
  file["problems_detail"] = details;
  on_rank0(*env.comm, [&] { atomic_write_file((fs::path(env.dir) / "eval.json").string(), file.dump(1) + "\n"); });
  std::fprintf(env.opts->log, "%s (%s on %s):\n%s", env.name.c_str(), s.model().c_str(), s.dataset().c_str(),
               eval_table(rep).c_str());
  return res;
}

}  // namespace reason::pipeline_detail
