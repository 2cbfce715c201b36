// Training checkpoints: the model as a Hugging Face directory (config.json, model.safetensors
// with the original tensor names and dtypes, tokenizer files) plus the optimizer state and step.
//
// Writes are atomic: everything goes to "<dir>.tmp.<pid>/", each file is fsynced, a DONE marker
// is written last, and the directory is swapped into place with one rename (RENAME_EXCHANGE
// when <dir> already exists), so a crash at any point leaves either the previous checkpoint or
// the new one, complete. A directory without DONE is not a complete checkpoint.
// Threads: call from the trainer's thread, with no step or generation running on the model.
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "train/optimizer.h"
#include "train/trainer.h"

namespace reason {

struct SaveOptions {
  // Called after each stage ("config", "model", "optimizer", "state", "marker"); a test can throw
  // from it to simulate a crash mid-save.
  std::function<void(const std::string& stage)> on_stage;
  // Write the model as a plain Hugging Face directory: no trainer_state.json and no DONE marker
  // (`reason convert`); `opt` must then be null. Still atomic.
  bool model_only = false;
};

// Saves `model` (its source directory supplies config.json and the tokenizer files) and, when
// `opt` is non-null, the optimizer state; `state` (e.g. data position, RNG) is stored in
// trainer_state.json with the optimizer step. FP8 weights are written as bf16 (dequantised) and
// quantization_config is dropped from config.json. A model with a LoRA adapter is saved as its
// adapter (adapter_config.json + adapter_model.safetensors in PEFT's format, naming the base; no
// config.json and no base weights, so a quantised base is fine): Model::load of the directory
// gives base + adapter.
void save_checkpoint(const std::string& dir, const Model& model, const AdamW* opt, const nlohmann::json& state = {},
                     const SaveOptions& opts = {});

// True when `dir` holds a complete checkpoint (its DONE marker exists).
bool checkpoint_complete(const std::string& dir);

// Restores the optimizer state and step saved with the checkpoint into `opt`; returns the
// user state of trainer_state.json. The model itself is loaded with Model::load(dir).
// Throws Format/Io naming the file for a missing or incomplete checkpoint or mismatched shapes.
nlohmann::json load_optimizer_state(const std::string& dir, const Model& model, AdamW& opt);

// The trainer's own state beyond the optimizer (the adaptive entropy controller) as a JSON object
// for trainer_state.json's user state, and back (absent keys: the initial state).
nlohmann::json trainer_extra_state(const Trainer& trainer);
void restore_trainer_extra_state(Trainer& trainer, const nlohmann::json& state);

}  // namespace reason
