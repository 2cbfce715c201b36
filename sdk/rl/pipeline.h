// The R1 recipe as a pipeline: a protobuf text-format config (sdk/proto/reason.proto, message
// PipelineConfig; documented examples in examples/pipelines/) names models, datasets and an
// ordered list of stages (sft, grpo, rejection_sampling, distill, eval), and run_pipeline runs
// them in order inside an output directory:
//
//   OUT/pipeline.json              the config's hash (a rerun with another config is refused)
//   OUT/data/NAME.jsonl            synthetic datasets, as generated
//   OUT/models/NAME/               models initialised from scratch
//   OUT/stages/NN-NAME/            one directory per stage:
//       metrics.jsonl              one JSON object per step (training) or per batch
//       plots.svg                  the stage's curves (reward, accuracy, KL, response length...)
//       ckpt/                      the latest mid-stage checkpoint (training stages)
//       final/                     the model after the stage (training stages)
//       samples.jsonl              rejection sampling: the accepted completions (a dataset)
//       eval.json                  eval: pass@1, cons@K, greedy accuracy, per-problem samples
//       stage.json                 written last: the stage is complete
//   OUT/summary.json, OUT/plots.svg   every stage's summary; the eval results per eval stage
//
// Resume: running the same config into the same OUT again skips complete stages and restarts
// the interrupted one from its last checkpoint (weights, optimizer state and step). Every random
// choice (initialisation, data order, sampling seeds) is a function of the pipeline seed, the
// stage and the step, so an interrupted and resumed run ends with the same weights and metrics
// as an uninterrupted one (same build, same thread count).
//
// Threads: run_pipeline runs on the calling thread; reward callbacks run on reward workers.
// Several ranks (PipelineOptions::comm): see there.
#pragma once
#include <cstdio>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "model/model.h"
#include "rl/reward_runner.h"
#include "rl/tool_calls.h"

namespace reason {

struct PipelineOptions {
  std::string out_dir;
  // How every model of the pipeline is loaded: its device (or a caller's backend). Training needs
  // f32, so compute_dtype stays F32; weights are quantised only where a model's `quantize` says
  // (run_pipeline sets quantize from it, None by default: a GGUF model's quantised tensors are
  // dequantised, so policy, reference and teacher train and sample on the same exact weights).
  LoadOptions load;
  bool progress = true;   // progress bars on `log`
  FILE* log = stderr;
  // Reward functions that a RewardTerm can name with `callback: "NAME"`. They are called from
  // reward worker threads, possibly concurrently, and must be thread-safe.
  std::map<std::string, RewardFn> rewards;
  // Tools that a GRPO stage's `tools { callbacks: "NAME" }` lets completions call
  // (rl/tool_calls.h): called on a thread of their own per call, under the stage's deadline; they
  // must be thread-safe.
  std::map<std::string, ToolFn> tools;
  // Called after every training step (stage name, 1-based step) and after a checkpoint is written
  // (step < 0: -step was checkpointed); for tests and embedding programs.
  std::function<void(const std::string& stage, int64_t step)> on_step;
  // Data parallelism: every rank of comm runs the same config into the same OUT (a directory all
  // ranks see) and each samples, scores and trains on its share of every batch (GRPO: whole
  // groups), evaluates and rejection-samples its share of the prompts; rank 0 alone writes files
  // (metrics, plots, checkpoints, final models) and the others read them. The result equals a
  // single process's run (to f32 rounding; tests/cli_mpi.sh). Null: default_communicator() (the
  // MPI world under mpirun, else this process alone).
  std::shared_ptr<Communicator> comm;
};

// Parses and checks `config_path` and everything it names (models, tokenizers, dataset files and
// their required fields, stage references, option ranges) without running anything. Throws
// reason::Error(InvalidArgument / Io) naming the config line and field, or the dataset file and
// line. Returns the parsed config as JSON (for `reason pipeline check`).
nlohmann::json check_pipeline(const std::string& config_path, const PipelineOptions& opts = {});

// Checks the config (as check_pipeline) and runs it; returns OUT/summary.json's content.
nlohmann::json run_pipeline(const std::string& config_path, const PipelineOptions& opts);

}  // namespace reason
