// A loaded causal language model (weights + config) and its forward pass over a batch of
// sequence chunks with a KV cache.
//
// Ownership: Model::load returns a shared_ptr<const Model>; the model keeps the memory-mapped
// weight files alive for as long as any tensor views them.
// Threads: a Model is immutable after load. forward() is const and may run concurrently from
// many threads as long as each call uses its own KVCache and ForwardScratch.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "infer/kv_cache.h"
#include "model/config.h"
#include "model/forward_profile.h"
#include "model/layers/decoder_layer.h"
#include "model/layers/layer_context.h"
#include "model/lora.h"
#include "model/quant_scheme.h"
#include "model/rope.h"

namespace reason {

class Tokenizer;

// Where a model's weights, KV cache and activations live and its ops run.
enum class Device { Cpu, Cuda };
// "cpu" / "cuda" -> Device; throws InvalidArgument naming the word otherwise.
Device parse_device(const std::string& name);
const char* device_name(Device d);

struct LoadOptions {
  // Cuda: the CUDA backend on device 0; Model::load fails (Unsupported, with the reason) when the
  // library was built without CUDA or no driver/GPU is usable.
  Device device = Device::Cpu;
  // Overrides `device` with a backend the caller owns (must outlive the model): tests run the
  // engine on an instrumented backend this way.
  kernels::Backend* backend = nullptr;
  DType compute_dtype = DType::F32;  // F32 or BF16: matmul weights are converted to this
  // Block-quantised matmul weights (model/quant_scheme.h): AsStored keeps a GGUF file's quantised
  // tensors as they are (zero-copy views of the mapped file); None dequantises them to the compute
  // dtype; Q8_0 / Q4_K_M quantise float weights at load as llama.cpp's files of those types.
  // Norms, biases, routers and MLA's kv_b stay in f32 / the compute dtype. A model with
  // quantised weights runs inference only: trainers refuse it.
  WeightQuant quantize = WeightQuant::AsStored;
  bool load_tokenizer = true;        // load tokenizer.json from the directory when present
  MlaPath mla_path = MlaPath::Auto;  // Auto: expanded for chunks of several tokens, absorbed for one
  // The KV cache's storage: F32 or BF16; unset: the compute dtype (bf16 weights get a bf16 cache,
  // f32 weights an f32 one, so the sampler's logprobs match the trainer's f32 pass).
  std::optional<DType> kv_dtype;
  // Load a config.json with fields the engine does not know (ModelConfig::from_json); also on
  // when REASON_ALLOW_UNKNOWN_CONFIG=1 is in the environment (for C ABI and binding callers).
  bool allow_unknown_config_fields = false;
  // A LoRA adapter run with the base weights, unmerged: a PEFT adapter directory
  // (adapter_config.json + adapter_model.safetensors, as PeftModel.save_pretrained writes).
  // Its tensors must fit the base's modules (names and shapes are checked).
  std::string adapter;
  // Or new adapters for training, on the modules the spec targets: lora_B = 0 and lora_A
  // uniform in +-1/sqrt(in) (PEFT's default init, kaiming-uniform with a = sqrt(5)) from spec.seed.
  std::optional<LoraSpec> new_adapter;
};

// A DeepSeek-V3 multi-token-prediction module: h' = layer(eh_proj([enorm(embed(t+1)); hnorm(h)]))
// then shared_head (norm + LM head) predicts the token after next. Loaded and kept; not run yet.
struct MtpModule {
  Tensor enorm, hnorm;  // f32 [d]
  Linear eh_proj;       // [d, 2d]
  DecoderLayer layer;
  Tensor head_norm;     // f32 [d]
  Tensor head;          // [vocab, d] or undefined (then the main LM head is shared)
};

// Activation buffers reused across forward calls (sized on demand).
// Activations live in the model's backend memory (DeviceArray); logits come back to the host.
struct ForwardScratch {
  DeviceArray<float> x, head_in;  // the residual stream [T, d]; the rows that get logits
  DeviceArray<float> logits;      // the LM head's output [rows, vocab] (forward_device)
  DeviceArray<int32_t> tokens, pos;
  LayerActs acts;                 // one layer's activations, reused layer after layer
  // When non-null, forward() times each op with std::chrono::steady_clock (from the end of the
  // previous op to the end of this one, so the ops add up to the whole call) and adds the times
  // to *profile. Null (the default) costs one branch per op. Not owned, not synchronised: one
  // profile per concurrently running forward(), as for the scratch itself.
  ForwardProfile* profile = nullptr;
  // When non-null, MoE layers add the number of tokens routed to each expert:
  // (*expert_load)[layer * n_experts + e]. Sized by forward() to n_layers * n_experts.
  std::vector<int64_t>* expert_load = nullptr;
  // When non-null, MoE layers record each token's chosen experts and weights:
  // (*route_trace)[layer] = {idx [T * top_k], weight [T * top_k]} of the last forward() call.
  struct RouteTrace {
    std::vector<std::vector<int32_t>> idx;
    std::vector<std::vector<float>> weight;
  };
  RouteTrace* route_trace = nullptr;
  // forward_device only: when set, the LM head runs on blocks of at most logits_chunk_rows (>= 1)
  // output rows and hands each block to logits_sink(first row, rows, f32 [rows x vocab] in the
  // backend's memory) instead of keeping every row (scoring long sequences without the
  // [n x vocab] matrix); `logits` then holds one block at a time. Called on the forward's
  // thread, in row order.
  std::function<void(int64_t row0, int64_t n, const float* logits)> logits_sink;
  int64_t logits_chunk_rows = 64;
};

class Model {
 public:
  // Loads config.json + safetensors weights from a Hugging Face directory, or a GGUF file
  // (model/gguf_model.h: config, tokenizer and generation defaults from its metadata, tensors
  // dequantised at load). Throws reason::Error naming the directory or file and the offending
  // file/tensor/field/key.
  static std::shared_ptr<const Model> load(const std::string& dir, const LoadOptions& opts = {});

  const ModelConfig& config() const { return cfg_; }
  DType compute_dtype() const { return compute_dtype_; }
  // The block-quantised type of the first quantised matmul weight (embedding, LM head, then layer
  // by layer), or nullopt when none is: such a model runs inference only. Found once at load.
  std::optional<DType> quantized_weights() const { return quantized_; }
  // The backend every op of this model's forward (and of training it) runs on. Never null.
  kernels::Backend& backend() const { return *backend_; }
  // The directory or GGUF file the model was loaded from.
  const std::string& dir() const { return dir_; }
  // config.json as loaded: read from the directory, or made from a GGUF file's metadata.
  const nlohmann::json& config_json() const { return config_json_; }
  // Files made from a GGUF file's metadata that a directory would hold (tokenizer.json,
  // tokenizer_config.json, generation_config.json), by file name; empty for a directory.
  const std::map<std::string, std::string>& derived_files() const { return derived_files_; }
  // The tokenizer found in the directory, or null.
  std::shared_ptr<const Tokenizer> tokenizer() const { return tokenizer_; }
  // The tokenizer, or Error(Io) "<dir>: no tokenizer.json in the model directory" when there is none.
  std::shared_ptr<const Tokenizer> require_tokenizer() const;
  int64_t n_params() const { return n_params_; }
  // DeepSeek-V3 multi-token-prediction modules found in the checkpoint (kept, not run yet).
  size_t n_mtp_modules() const { return mtp_.size(); }
  // KV cache bytes per token over all layers (K and V rows, or MLA's latent + roped key, in the
  // cache's dtype).
  size_t kv_bytes_per_token() const;
  DType kv_dtype() const { return kv_dtype_; }

  // Read access for the training passes (sdk/train), which reuse the model's weights.
  const std::vector<DecoderLayer>& layers() const { return layers_; }
  const Tensor& embed() const { return embed_; }
  const Tensor& lm_head() const { return lm_head_; }
  const Tensor& final_norm() const { return final_norm_; }
  const RopeTable& rope() const { return rope_; }
  // rope().inv_freq in the backend's memory (what the rope ops read).
  const float* rope_freq() const { return rope_freq_.data<float>(); }

  // MLA's absorbed path keeps W_UK^T per head, a transposed copy of kv_b's rows (W_UV is a view
  // of kv_b): a trainer that changed kv_b calls this after its update. No-op without MLA. Same
  // thread rules as writing through parameters().
  void refresh_absorbed_weights() const;

  // Every weight by its checkpoint name (tied embeddings appear once, as
  // model.embed_tokens.weight). The tensors share storage with the model: writing through them
  // changes the weights every later forward() sees (that is how a trainer updates the policy the
  // sampler uses). Only a trainer may write, and never while a forward() runs.
  std::vector<std::pair<std::string, Tensor>> parameters() const;
  // The LoRA adapter's settings, or null when the model has none.
  const LoraSpec* adapter() const { return adapter_ ? &*adapter_ : nullptr; }
  // The adapter's tensors by PEFT's saved names (base_model.model.<module>.lora_A.weight /
  // lora_B.weight), sharing storage with the model (a trainer updates them in place).
  std::vector<std::pair<std::string, Tensor>> adapter_parameters() const;
  // Writes the adapter as PEFT does (adapter_config.json + adapter_model.safetensors) into dir,
  // each file atomically. Error(InvalidArgument) when the model has no adapter.
  void save_adapter(const std::string& dir) const;
  // Merges the adapter into the base weights (W += scale * B . A per adapted layer; MLA's
  // absorbed matrices follow) and drops it: the model then computes what it computed with the
  // adapter, as a plain model (save it with save_checkpoint). Needs f32 base weights (load with
  // compute dtype f32 and quantize none): Error(Unsupported) otherwise, before any change.
  // Same thread rules as writing through parameters().
  void merge_adapter() const;
  // The LoRA dropout mask seed of the next training passes (the trainer sets it per step and
  // micro-batch; 0 = no dropout). No-op without an adapter. Same thread rules as a trainer step.
  void set_lora_dropout_seed(uint64_t seed) const {
    if (lora_seed_) lora_seed_->store(seed, std::memory_order_relaxed);
  }
  // Checkpoint tensors that are not trained: DeepSeek's e_score_correction_bias (updated by the
  // aux-loss-free balancing, not by gradients) and the MTP modules' weights.
  std::vector<std::pair<std::string, Tensor>> buffers() const;
  // The dtype a tensor had in the loaded checkpoint (F32 when unknown).
  DType stored_dtype(const std::string& name) const {
    auto it = stored_dtypes_.find(name);
    return it == stored_dtypes_.end() ? DType::F32 : it->second;
  }

  // An empty paged KV cache on the model's backend, in kv_dtype() (or `dtype` when given).
  KVCache make_cache(std::optional<DType> dtype = std::nullopt) const {
    return KVCache(*backend_, cfg_.n_layers, cfg_.kv_k_dim(), cfg_.kv_v_dim(), dtype.value_or(kv_dtype_));
  }

  // Runs the chunks through the model, appending their keys/values to `cache` (each chunk's
  // positions continue its slot's current length), and leaves f32 logits in scratch.logits (the
  // backend's memory), chunk by chunk: n rows for an all_logits chunk, else 1 row (its last
  // position). Returns the number of rows (0 with scratch.logits_sink set: the sink got them).
  // Throws InvalidArgument for a token id outside [0, vocab_size).
  int64_t forward_device(std::span<const SeqChunk> chunks, KVCache& cache, ForwardScratch& scratch) const;
  // forward_device, then the logits downloaded into `logits` (resized to rows x vocab).
  void forward(std::span<const SeqChunk> chunks, KVCache& cache, std::vector<float>& logits,
               ForwardScratch& scratch) const;

 private:
  Model() = default;

  ModelConfig cfg_;
  nlohmann::json config_json_;
  std::map<std::string, std::string> derived_files_;
  std::string dir_;
  DType compute_dtype_ = DType::F32;
  DType kv_dtype_ = DType::F32;
  kernels::Backend* backend_ = nullptr;
  Tensor embed_;    // [vocab, d] compute dtype
  Tensor lm_head_;  // [vocab, d] compute dtype (shares storage with embed_ when tied)
  Tensor final_norm_;
  std::vector<DecoderLayer> layers_;
  std::vector<MtpModule> mtp_;
  // Replaces every weight by a copy in the backend's memory (a backend the host cannot address);
  // tensors that share storage (tied embeddings) stay shared.
  void place_weights_on_backend();
  void add_layer_parameters(std::vector<std::pair<std::string, Tensor>>& out, const std::string& prefix,
                            const DecoderLayer& ly) const;
  MlaPath mla_path_ = MlaPath::Auto;
  RopeTable rope_;
  Tensor rope_freq_;
  int64_t n_params_ = 0;
  std::map<std::string, DType> stored_dtypes_;
  std::optional<DType> quantized_;  // quantized_weights()
  // The first quantised type among parameters() (load sets quantized_ from it).
  std::optional<DType> find_quantized_weights() const;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::optional<LoraSpec> adapter_;
  std::shared_ptr<std::atomic<uint64_t>> lora_seed_;  // every adapter's dropout_seed
  // Every Linear of the decoder layers by module name (the checkpoint name without ".weight").
  std::vector<std::pair<std::string, Linear*>> named_linears() const;
  // Attaches opts.adapter or opts.new_adapter (model_adapter.cpp).
  void attach_adapter(const LoadOptions& opts);
};

}  // namespace reason
