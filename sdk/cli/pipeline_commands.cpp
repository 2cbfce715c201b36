#include "pipeline_commands.h"

#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_write.h"
#include "model/model.h"
#include "rl/dataset.h"
#include "rl/evaluate.h"
#include "rl/pipeline.h"
#include "rl/prompt_format.h"
#include "tokenizer/tokenizer.h"

namespace reason::cli {

struct PipelineCommands::State {
  CLI::App* pipeline = nullptr;
  CLI::App* run = nullptr;
  CLI::App* check = nullptr;
  CLI::App* eval = nullptr;
  std::string config, out, device = "cpu";
  bool no_progress = false;
  // eval
  std::string model, adapter, data, template_text = "{prompt}", json_out, prompt_field = "prompt", answer_field = "answer";
  bool chat = false, no_greedy = false;
  int samples = 4, max_new_tokens = 256;
  float temperature = 0.6f, top_p = 0.95f;
  int64_t max_prompts = 0;
  uint64_t seed = 0;
};

PipelineCommands::PipelineCommands(CLI::App& app) : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.pipeline = app.add_subcommand("pipeline", "run a training pipeline (SFT, GRPO, rejection sampling, distill, eval)");
  s.pipeline->require_subcommand(1);
  s.run = s.pipeline->add_subcommand("run", "run CONFIG's stages in order into --out; rerun to resume");
  s.run->add_option("config", s.config, "pipeline config (protobuf text format, see examples/pipelines/)")->required();
  s.run->add_option("--out", s.out, "output directory (checkpoints, metrics.jsonl, plots, summary.json)")->required();
  s.run->add_flag("--no-progress", s.no_progress, "no progress bars");
  s.run->add_option("--device", s.device, "where every model of the pipeline runs: cpu or cuda")->capture_default_str();
  s.check = s.pipeline->add_subcommand("check", "validate CONFIG and the files it names, run nothing");
  s.check->add_option("config", s.config, "pipeline config")->required();

  s.eval = app.add_subcommand("eval", "pass@1 over K samples (T 0.6, top-p 0.95), cons@K and greedy accuracy");
  s.eval->add_option("--model", s.model, "model directory")->required();
  s.eval->add_option("--data", s.data, "JSONL with prompt and answer fields")->required();
  s.eval->add_option("--samples", s.samples, "K samples per problem")->capture_default_str();
  s.eval->add_option("--template", s.template_text, "prompt template; {prompt} is replaced")->capture_default_str();
  s.eval->add_flag("--chat", s.chat, "format prompts with the tokenizer's chat template instead");
  s.eval->add_option("--temperature", s.temperature, "sampling temperature")->capture_default_str();
  s.eval->add_option("--top-p", s.top_p, "nucleus sampling")->capture_default_str();
  s.eval->add_option("--max-new-tokens", s.max_new_tokens, "per sample")->capture_default_str();
  s.eval->add_option("--max-prompts", s.max_prompts, "evaluate the first N problems only (0: all)");
  s.eval->add_option("--seed", s.seed, "sampling seed")->capture_default_str();
  s.eval->add_flag("--no-greedy", s.no_greedy, "skip greedy decoding");
  s.eval->add_option("--device", s.device, "where the model runs: cpu or cuda")->capture_default_str();
  s.eval->add_option("--adapter", s.adapter, "a LoRA adapter directory (PEFT format) run with the model, unmerged");
  s.eval->add_option("--prompt-field", s.prompt_field, "JSON field of the prompt")->capture_default_str();
  s.eval->add_option("--answer-field", s.answer_field, "JSON field of the gold answer")->capture_default_str();
  s.eval->add_option("--json", s.json_out, "also write the results (with every sample) to this file");
}

PipelineCommands::~PipelineCommands() = default;

bool PipelineCommands::run() {
  State& s = *s_;
  if (*s.run) {
    PipelineOptions po;
    po.out_dir = s.out;
    po.progress = !s.no_progress;
    po.load.device = parse_device(s.device);
    run_pipeline(s.config, po);
    std::fprintf(stderr, "results: %s/summary.json, plots: %s/plots.svg and %s/stages/*/plots.svg\n", s.out.c_str(),
                 s.out.c_str(), s.out.c_str());
    return true;
  }
  if (*s.check) {
    std::cout << check_pipeline(s.config).dump(2) << "\n";
    return true;
  }
  if (!*s.eval) return false;
  LoadOptions lo;
  lo.device = parse_device(s.device);
  lo.adapter = s.adapter;
  auto m = Model::load(s.model, lo);
  auto tok = m->require_tokenizer();
  DatasetFields f;
  f.prompt = s.prompt_field;
  f.answer = s.answer_field;
  Dataset d = load_jsonl_dataset(s.data, s.data, f, DatasetUse::PromptsAndAnswers);
  PromptFormat pf;
  pf.template_text = s.template_text;
  pf.chat = s.chat;
  const size_t n = s.max_prompts > 0 ? std::min<size_t>(d.records.size(), size_t(s.max_prompts)) : d.records.size();
  std::vector<EvalItem> items(n);
  for (size_t i = 0; i < n; ++i) items[i] = EvalItem{encode_prompt(pf, *tok, d.records[i].prompt), d.records[i].answer};
  EvalOptions eo = r1_eval_options();
  eo.samples = s.samples;
  eo.sampling.temperature = s.temperature;
  eo.sampling.top_p = s.top_p;
  eo.sampling.max_new_tokens = s.max_new_tokens;
  eo.sampling.validate();
  eo.greedy = !s.no_greedy;
  eo.seed = s.seed;
  EvalReport r = evaluate(*m, items, eo);
  std::cout << s.data << " (" << n << " problems, K = " << s.samples << ", T = " << s.temperature
            << ", top-p = " << s.top_p << "):\n"
            << eval_table(r);
  nlohmann::json j = eval_summary_json(r);
  if (!s.json_out.empty()) {
    nlohmann::json full = j;
    full["problems_detail"] = nlohmann::json::array();
    for (size_t i = 0; i < n; ++i)
      full["problems_detail"].push_back({{"prompt", d.records[i].prompt},
                                         {"answer", d.records[i].answer},
                                         {"samples", r.details[i].samples},
                                         {"correct", std::vector<bool>(r.details[i].correct.begin(), r.details[i].correct.end())},
                                         {"majority", r.details[i].majority},
                                         {"greedy", r.details[i].greedy}});
    atomic_write_file(s.json_out, full.dump(1) + "\n");
  }
  std::cout << j.dump() << "\n";
  return true;
}

}  // namespace reason::cli
