// Helpers shared by the pipeline stages (see pipeline_stage.h).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "infer/sampler.h"
#include "io/atomic_write.h"
#include "io/json_file.h"
#include "rl/pipeline_stage.h"
#include "rl/svg_plot.h"
#include "train/checkpoint.h"
#include "train/trainer_config.h"
#include "tokenizer/tokenizer.h"

namespace reason::pipeline_detail {

namespace fs = std::filesystem;

uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

size_t DataOrder::at(int64_t pos) {
  const int64_t epoch = pos / int64_t(n_);
  if (epoch != epoch_) {
    perm_.resize(n_);
    for (size_t i = 0; i < n_; ++i) perm_[i] = i;
    Rng rng(mix_seed(seed_, uint64_t(epoch)));
    for (size_t i = n_; i > 1; --i) std::swap(perm_[i - 1], perm_[rng.next() % i]);
    epoch_ = epoch;
  }
  return perm_[size_t(pos % int64_t(n_))];
}

void MetricsLog::write(const std::function<void()>& fn) {
  if (comm_) on_rank0(*comm_, fn);
  else fn();
}

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step, Communicator* comm) : path_(path), comm_(comm) {
  std::string kept;
  if (std::ifstream in(path); in) {
    std::string line;
    while (read_bounded_line(in, line) == LineRead::Line) {
      if (line.empty()) continue;
      nlohmann::json row;
      try {
        row = parse_json_text(line, path);
      } catch (const Error&) {
        break;  // a line torn by the interruption, and everything after it
      }
      if (!row.is_object() || row.value("step", int64_t(0)) > keep_through_step) break;
      kept += line + "\n";
      rows_.push_back(std::move(row));
    }
  }
  write([&] { atomic_write_file(path_, kept); });
}

void MetricsLog::append(const nlohmann::json& row) {
  rows_.push_back(row);
  write([&] {
    std::ofstream out(path_, std::ios::app | std::ios::binary);
    out << row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    out.flush();
    if (!out) fail(ErrorCode::Io, "cannot append to {}", path_);
  });
}

void write_stage_plots(const StageEnv& env, const std::vector<nlohmann::json>& rows,
                       const std::vector<std::pair<std::string, std::string>>& metrics) {
  const std::string path = (fs::path(env.dir) / "plots.svg").string(), &title = env.name;
  std::vector<Plot> plots;
  for (const auto& [key, label] : metrics) {
    PlotSeries s;
    s.name = label;
    for (const auto& r : rows)
      if (r.contains(key) && r[key].is_number() && r.contains("step")) {
        s.x.push_back(r["step"].get<double>());
        s.y.push_back(r[key].get<double>());
      }
    if (s.x.empty()) continue;
    Plot p;
    p.title = title + ": " + label;
    p.x_label = "step";
    p.y_label = label;
    p.series.push_back(std::move(s));
    plots.push_back(std::move(p));
  }
  on_rank0(*env.comm, [&] { atomic_write_file(path, render_svg_grid(plots, 2)); });
}

TrainingRun open_training(const StageEnv& env, const std::string& model_name, const TrainerConfig& tc,
                          const std::optional<LoraSpec>& lora) {
  TrainingRun run;
  const std::string ckpt = (fs::path(env.dir) / "ckpt").string();
  const bool resume = checkpoint_complete(ckpt);
  const std::string src = resume ? ckpt : env.model_dir(model_name);
  LoadOptions lo = env.load_options(model_name);
  // LoRA on a plain model: new adapters; on an adapter directory (an earlier LoRA stage, or a
  // checkpoint of this one): that adapter trains on.
  if (lora && !adapter_base_model(src)) {
    lo.new_adapter = *lora;
    lo.new_adapter->seed = env.seed;
  }
  run.model = Model::load(src, lo);
  if (!lora && run.model->adapter()) run.model->merge_adapter();  // full training of base + adapter
  TrainerConfig dp = tc;
  dp.comm = env.comm;  // every rank holds the same weights and trains on its share of each batch
  data_parallel_from_proto(env.cfg->data_parallel(), dp, "data_parallel: ");
  run.trainer = std::make_unique<Trainer>(run.model, dp);
  if (resume) {
    auto state = load_optimizer_state(ckpt, *run.model, run.trainer->optimizer());
    run.trainer->shard_optimizer_state();  // ZeRO-1: keep this rank's share
    run.done_steps = state.value("step", int64_t(0));
    restore_trainer_extra_state(*run.trainer, state);
  }
  return run;
}

void save_training_checkpoint(const StageEnv& env, const TrainingRun& run, int64_t step) {
  nlohmann::json state = trainer_extra_state(*run.trainer);
  state["step"] = step;
  run.trainer->gather_optimizer_state();  // ZeRO-1: rank 0 writes every rank's share
  on_rank0(*env.comm, [&] { save_checkpoint((fs::path(env.dir) / "ckpt").string(), *run.model, &run.trainer->optimizer(), state); });
  run.trainer->shard_optimizer_state();
  if (env.opts->on_step) env.opts->on_step(env.name, -step);
}

std::string finish_training(const StageEnv& env, const TrainingRun& run, int64_t steps) {
  const std::string final_dir = (fs::path(env.dir) / "final").string();
  nlohmann::json state = trainer_extra_state(*run.trainer);
  state["step"] = steps;
  run.trainer->gather_optimizer_state();
  on_rank0(*env.comm, [&] {
    save_checkpoint(final_dir, *run.model, &run.trainer->optimizer(), state);
    std::error_code ec;
    fs::remove_all(fs::path(env.dir) / "ckpt", ec);
  });
  return final_dir;
}

int32_t eos_id(const Model& m) {
  if (auto t = m.tokenizer(); t && t->eos_id()) return *t->eos_id();
  if (!m.config().eos_token_ids.empty()) return m.config().eos_token_ids.front();
  fail(ErrorCode::InvalidArgument, "{}: the model has no EOS token (config.json eos_token_id or the tokenizer's)",
       m.dir());
}

std::vector<SftExample> make_sft_examples(const Dataset& d, const Tokenizer& tok, const PromptFormat& pf,
                                          int32_t eos, int64_t max_length) {
  std::vector<SftExample> out;
  out.reserve(d.records.size());
  for (const auto& r : d.records) {
    SftExample ex;
    if (!r.text.empty() || r.completion.empty()) {
      ex.tokens = tok.encode(r.text, /*add_special_tokens=*/false);
      ex.tokens.push_back(eos);
      ex.mask.assign(ex.tokens.size(), 1);
      ex.mask[0] = 0;
    } else {
      ex.tokens = encode_prompt(pf, tok, r.prompt);
      ex.mask.assign(ex.tokens.size(), 0);
      for (int32_t t : tok.encode(r.completion, false)) {
        ex.tokens.push_back(t);
        ex.mask.push_back(1);
      }
      ex.tokens.push_back(eos);
      ex.mask.push_back(1);
    }
    if (max_length > 0 && int64_t(ex.tokens.size()) > max_length) {
      ex.tokens.resize(size_t(max_length));
      ex.mask.resize(size_t(max_length));
    }
    if (ex.tokens.size() < 2) continue;
    out.push_back(std::move(ex));
  }
  if (out.empty()) fail(ErrorCode::InvalidArgument, "dataset '{}' has no example of 2 tokens or more", d.name);
  return out;
}

SamplingParams sampling_params(const proto::SamplingSpec& s, float default_temperature, float default_top_p) {
  SamplingParams p;
  p.temperature = s.has_temperature() ? s.temperature() : default_temperature;
  p.top_p = s.has_top_p() ? s.top_p() : default_top_p;
  p.top_k = s.top_k();
  p.max_new_tokens = s.max_new_tokens() > 0 ? s.max_new_tokens() : 256;
  for (const auto& st : s.stop()) p.stop_strings.push_back(st);
  return p;
}

}  // namespace reason::pipeline_detail
