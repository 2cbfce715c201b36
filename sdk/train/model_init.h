// New models initialised from scratch, written as a Hugging Face directory (config.json,
// model.safetensors in f32, the tokenizer files) that Model::load and transformers both read.
// Initialisation as transformers' _init_weights for Llama/Qwen2: every Linear and the embedding
// ~ N(0, initializer_range), biases 0, RMSNorm weights 1; drawn from a seeded generator, so the
// same options and seed give the same bytes.
#pragma once
#include <cstdint>
#include <string>

namespace reason {

struct ModelInitOptions {
  std::string architecture = "Qwen2ForCausalLM";  // or "LlamaForCausalLM"
  int64_t hidden_size = 0, intermediate_size = 0, num_layers = 0, num_heads = 0;
  int64_t num_kv_heads = 0;                // 0: = num_heads
  int64_t max_position_embeddings = 512;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = true;
  float initializer_range = 0.02f;
  std::string tokenizer_dir;               // holds tokenizer.json (and tokenizer_config.json)
  int64_t vocab_size = 0;                  // 0: tokenizer size rounded up to a multiple of 64
};

// Throws InvalidArgument naming the field for a bad shape or architecture (no file access).
void check_model_init_options(const ModelInitOptions& opts);

// Writes the model into `dir` atomically (a temp directory renamed into place; an existing
// `dir` is replaced). Throws InvalidArgument naming the field for a bad shape (zero sizes,
// heads not dividing hidden_size, kv heads not dividing heads, vocab smaller than the
// tokenizer) and Io for an unreadable tokenizer or an unwritable directory.
void write_initial_model(const std::string& dir, const ModelInitOptions& opts, uint64_t seed);

}  // namespace reason
