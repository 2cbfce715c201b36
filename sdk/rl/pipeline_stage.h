// Internal to the pipeline runner (sdk/rl/pipeline*.cpp, stage_*.cpp): what a stage gets from
// the runner and returns to it, and the helpers the stages share (data order, metrics log,
// training-stage checkpoints). Not part of the public API.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer/sampler.h"
#include "model/model.h"
#include "reason.pb.h"
#include "rl/dataset.h"
#include "rl/pipeline.h"
#include "rl/prompt_format.h"
#include "train/trainer.h"

namespace reason::pipeline_detail {

struct StageEnv {
  const proto::PipelineConfig* cfg = nullptr;
  const proto::Stage* stage = nullptr;
  size_t index = 0;
  std::string name;   // the stage's name
  std::string where;  // "stage 'NAME' (CONFIG:LINE)" for messages
  std::string dir;    // OUT/stages/NN-NAME
  uint64_t seed = 0;  // derived from the pipeline seed and the stage index
  int64_t checkpoint_every = 50;
  PromptFormat prompt_format;
  const PipelineOptions* opts = nullptr;
  std::shared_ptr<Communicator> comm;  // the job's ranks (one when not data-parallel)
  std::function<std::string(const std::string&)> model_dir;          // current directory of a model
  std::function<LoadOptions(const std::string&)> load_options;       // how to load a model (its quantize)
  std::function<const Dataset&(const std::string&)> dataset;         // loaded dataset by name
  std::function<DatasetFields(const std::string&)> fields;           // its field names
};

struct StageResult {
  std::map<std::string, std::string> models;  // models this stage changed -> their new directory
  nlohmann::json summary = nlohmann::json::object();
};

StageResult run_sft_stage(const StageEnv& env);
StageResult run_distill_stage(const StageEnv& env);
StageResult run_grpo_stage(const StageEnv& env);
StageResult run_rejection_sampling_stage(const StageEnv& env);
StageResult run_eval_stage(const StageEnv& env);

// splitmix64-based mixing of seeds and indices.
uint64_t mix_seed(uint64_t a, uint64_t b);

// Position `pos` of the endless data order: epoch pos / n is a seeded permutation of [0, n).
class DataOrder {
 public:
  DataOrder(size_t n, uint64_t seed) : n_(n), seed_(seed) {}
  size_t at(int64_t pos);

 private:
  size_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<size_t> perm_;
};

// metrics.jsonl of a stage: on open, lines of steps after `keep_through_step` (work an
// interrupted run did after its last checkpoint) are dropped; rows are kept in memory for plots.
// With a communicator only rank 0 touches the file (an error there is every rank's: on_rank0);
// every rank keeps the rows. Every rank calls the constructor and append at the same points.
class MetricsLog {
 public:
  MetricsLog(const std::string& path, int64_t keep_through_step, Communicator* comm = nullptr);
  void append(const nlohmann::json& row);
  const std::vector<nlohmann::json>& rows() const { return rows_; }

 private:
  void write(const std::function<void()>& fn);  // fn on rank 0 (or alone)
  std::string path_;
  Communicator* comm_;
  std::vector<nlohmann::json> rows_;
};

// Writes OUT/stages/NN/plots.svg: one chart per metric key found in the rows (x = "step"); on rank
// 0 of env.comm only (every rank calls it).
void write_stage_plots(const StageEnv& env, const std::vector<nlohmann::json>& rows,
                       const std::vector<std::pair<std::string, std::string>>& metrics);


// A training stage's model and trainer, resumed from DIR/ckpt when a complete one exists.
struct TrainingRun {
  std::shared_ptr<const Model> model;
  std::unique_ptr<Trainer> trainer;
  int64_t done_steps = 0;  // steps completed before this process (from the checkpoint)
};
// lora: train a LoRA adapter (new, or the one the model's directory already is) instead of every
// weight; without it a model that is an adapter directory is merged first.
TrainingRun open_training(const StageEnv& env, const std::string& model_name, const TrainerConfig& tc,
                          const std::optional<LoraSpec>& lora = std::nullopt);
// Mid-stage checkpoint after `step` steps (DIR/ckpt, atomic).
void save_training_checkpoint(const StageEnv& env, const TrainingRun& run, int64_t step);
// The stage's final model (DIR/final); removes DIR/ckpt. Returns the final directory.
std::string finish_training(const StageEnv& env, const TrainingRun& run, int64_t steps);

// SFT examples of a dataset for `tok`: "text" lines train on every token, prompt + completion
// lines on the completion; EOS appended; cut to max_length tokens.
std::vector<SftExample> make_sft_examples(const Dataset& d, const Tokenizer& tok, const PromptFormat& pf,
                                          int32_t eos, int64_t max_length);
int32_t eos_id(const Model& m);

// The reward functions of a RewardConfig: built-ins and registered callbacks (default: math
// accuracy + format, weight 1 each). Throws InvalidArgument for an unregistered callback.
std::vector<NamedReward> make_rewards(const proto::RewardConfig& rc, const PipelineOptions& opts);

// Sampling parameters from a SamplingSpec with the given defaults.
SamplingParams sampling_params(const proto::SamplingSpec& s, float default_temperature, float default_top_p);

}  // namespace reason::pipeline_detail
