// LoRA adapters in PEFT's format: the settings of adapter_config.json the engine uses, which
// modules a config targets, and each module's rank and scale (PEFT's LoraConfig rules).
// The adapter's weights live in the model's Linear layers (model/layers/linear.h, LoraAdapter);
// Model attaches them at load (LoadOptions::adapter / new_adapter) and saves them
// (Model::save_adapter). Pure data and functions: thread-safe.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace reason {

struct LoraSpec {
  int64_t r = 8;          // rank
  float alpha = 8.0f;     // lora_alpha
  float dropout = 0.0f;   // lora_dropout: on the adapter's input in training passes only
  bool use_rslora = false;  // scale alpha / sqrt(r) instead of alpha / r
  // Which Linear modules get an adapter: all_linear ("all-linear": every linear layer but the LM
  // head and MoE routers), else a regex that must match a module's whole name (a string
  // target_modules), else names that equal a module's name or end it after a '.'.
  bool all_linear = false;
  std::string target_regex;
  std::vector<std::string> target_modules;
  // Per-module rank / alpha (PEFT's rank_pattern / alpha_pattern), in the order adapter_config.json
  // lists them: as PEFT's get_pattern_key, the first key of rank_pattern then alpha_pattern whose
  // regex matches the end of a module's name after a '.' (or the whole name) picks both the rank
  // (rank_pattern's value for that key, else r) and the alpha (alpha_pattern's, else lora_alpha).
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, float>> alpha_pattern;
  uint64_t seed = 0;  // lora_A's random init of new adapters

  bool targets(const std::string& module) const;
  // The pattern key that applies to a module, or "" for none.
  std::string pattern_key(const std::string& module) const;
  int64_t rank_of(const std::string& module) const;
  // alpha / r (or alpha / sqrt(r)) of the module, with its rank_of and alpha.
  float scale_of(const std::string& module) const;
};

// The LoraSpec of an adapter_config.json (`where` names the file in errors). Refuses what the
// engine does not run, naming the field: peft_type other than LORA, DoRA, fan_in_fan_out,
// bias other than "none", modules_to_save, layers_to_transform, trainable tokens.
LoraSpec lora_spec_from_json(const nlohmann::ordered_json& j, const std::string& where);

// adapter_config.json for a spec whose adapters sit on `modules` (PEFT writes the expanded
// module list); base = base_model_name_or_path.
nlohmann::ordered_json lora_spec_to_json(const LoraSpec& s, const std::vector<std::string>& modules, const std::string& base);

// When `dir` is a LoRA adapter directory (adapter_config.json and no config.json): its base model,
// base_model_name_or_path (a relative path resolved against dir). Error(Io) when that base does
// not exist (e.g. a hub id: load the base with an adapter instead); nullopt for any other path.
std::optional<std::string> adapter_base_model(const std::string& dir);

// PEFT's saved tensor names of a module's adapter.
std::string peft_lora_a_name(const std::string& module);
std::string peft_lora_b_name(const std::string& module);

}  // namespace reason
