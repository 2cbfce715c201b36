// The thin C++ layer that SWIG wraps for Java, C# and Go (bindings/reason.i). It calls only the C
// ABI (reason.h) and gives every language the same small surface:
//   - calls return a Status (code 0 = ok, else a reason_status and the library's message) or a
//     Result struct holding a Status and the value, so no error is lost between two calls and
//     no thread-local state is needed (goroutines move between threads);
//   - handles (Model, Tokenizer, Trainer, Stream) own their C handle and free it in close() and
//     in the destructor; the language layer calls close() deterministically (AutoCloseable,
//     IDisposable, Close()) and keeps the destructor as a safety net;
//   - three director classes let host-language objects be callbacks: TokenHandler (streaming,
//     can stop generation), RewardFunction (scores a completion; GRPO rollouts, pipelines) and
//     ToolFunction (a tool that a pipeline's GRPO completions call: multi-turn rollouts).
//
// Threads: a Model and a Tokenizer may be used from many threads at once (as in the C ABI). A
// Trainer and a Stream are used by one thread at a time. TokenHandler::on_token runs on the
// thread that called generate(); RewardFunction::score runs on the calling thread in
// compute_rewards() and on reward worker threads (several at once) in run_pipeline(), so a
// RewardFunction used with pipelines must be thread-safe. ToolFunction::call runs on a thread of
// its own per call, several at once, and may outlive run_pipeline() when its deadline passed
// (the language layer keeps the director alive until such a call returns).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "reason.h"
#include "reason_version.h"

namespace reason_binding {

struct Status {
  int code = 0;          // reason_status; 0 = REASON_OK
  std::string message;   // reason_last_error() of the failed call ("" when ok)
  bool ok() const { return code == 0; }
};

// Library identity (the native library actually loaded, not the headers compiled against).
std::string version();
int version_major();
int version_minor();
int version_patch();
// The major version these bindings were built for: a language layer refuses a native library
// whose version_major() differs.
int binding_version_major();
std::string status_name(int code);
void set_num_threads(int n);
// reason_set_thread_num_threads / reason_get_num_threads: the calling thread's own compute
// threads (0: the process's), and the count that applies to the calling thread.
void set_thread_num_threads(int n);
int num_threads();
// reason_mpi_finalize: ends the MPI world the library started under mpirun (nothing otherwise).
// For runtimes whose exit skips C atexit handlers (Go's os.Exit); call it last.
void mpi_finalize();

struct SamplingOptions {
  float temperature = 1.0f;  // 0 = greedy
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  int32_t max_new_tokens = 256;
  int64_t seed = 0;          // request i of a batch uses seed + i
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> stop_strings;
  bool ignore_eos = false;
  // DeepSeek-R1's settings: temperature 0.6, top-p 0.95.
  static SamplingOptions r1();
};

struct Completion {
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
  std::string text;
  int finish_reason = 0;     // 0 length, 1 stop, 2 stopped by the handler
};

struct IdsResult { Status status; std::vector<int32_t> ids; };
struct TextResult { Status status; std::string text; };
struct FloatsResult { Status status; std::vector<float> values; };
struct CompletionsResult { Status status; std::vector<Completion> completions; };
struct SamplingResult { Status status; SamplingOptions options; };

// Director: return false from on_token to stop that request. Runs on the generating thread.
class TokenHandler {
 public:
  virtual ~TokenHandler() = default;
  virtual bool on_token(int64_t request, int32_t token_id, float logprob, const std::string& text) = 0;
};

// Director: the reward of one completion. Throwing (an exception in the host language) or
// returning NaN marks the completion as failed (scored 0, counted).
class RewardFunction {
 public:
  virtual ~RewardFunction() = default;
  virtual float score(const std::string& prompt, const std::string& completion, const std::string& answer) = 0;
};

// What a tool answers: `text` is appended for the model to read (bytes that are not UTF-8 reach
// it as U+FFFD); failed = true shows it as "error: tool 'NAME' failed: TEXT".
struct ToolReply {
  std::string text;
  bool failed = false;
};

// Director: a tool that completions of a GRPO stage with `tools { callbacks: "NAME" }` call.
// arguments_json is the call's "arguments" as JSON text ("" when absent; the raw text of the
// call for a `raw: true` tool). The tool fills `reply` (empty on entry; borrowed for the call,
// so no host-language object needs freeing). Throwing (an exception in the host language) fails
// the call. Called from several threads at once: must be thread-safe.
class ToolFunction {
 public:
  virtual ~ToolFunction() = default;
  virtual void call(const std::string& arguments_json, ToolReply& reply) = 0;
};

class Tokenizer {
 public:
  Tokenizer() = default;
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  Status load(const std::string& path);  // directory or tokenizer.json
  IdsResult encode(const std::string& text, bool add_special_tokens = false) const;
  TextResult decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  // One user message (plus optional system) with the generation prompt, in the model's template.
  TextResult chat_prompt(const std::string& user, const std::string& system = "") const;
  int32_t vocab_size() const;
  bool is_open() const { return tok_ != nullptr; }
  void close();
  // Internal: wraps a tokenizer borrowed from a model (not freed by close()).
  void borrow(const reason_tokenizer* t);
  const reason_tokenizer* raw() const { return tok_; }

 private:
  const reason_tokenizer* tok_ = nullptr;
  bool owned_ = false;
};

struct ModelInfo {
  std::string architecture;
  int64_t vocab_size = 0, hidden_size = 0, num_layers = 0, num_params = 0, num_experts = 0;
  std::string device;    // "cpu" or "cuda"
  std::string kv_dtype;  // the KV cache's storage: "f32" or "bf16"
  // ggml's name of the first quantised weight's block type ("Q4_K", "Q6_K", "Q8_0", ...), or ""
  // when no weight is quantised (reason_model_quantized_weights).
  std::string quantized_weights;
  int64_t adapter_modules = 0;  // linear layers carrying a LoRA adapter (0: none)
};

class Model {
 public:
  Model() = default;
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  // dtype: "f32" or "bf16" (compute dtype; training needs f32).
  Status load(const std::string& dir, const std::string& dtype = "f32");
  // device: "cpu" or "cuda" (reason_model_load_on); kv_dtype: "auto" (the compute dtype), "f32"
  // or "bf16".
  Status load_on(const std::string& dir, const std::string& dtype, const std::string& device,
                 const std::string& kv_dtype);
  // load_on with the weights held as `quantize` says (reason_model_load_quantized): "none" (what
  // load_on does: every weight in the compute dtype), "stored" (a GGUF file's quantised tensors
  // used as stored), "q8_0" or "q4_k" (llama.cpp's Q8_0 / Q4_K_M choices, at load). A quantised
  // model runs inference only.
  Status load_quantized(const std::string& dir, const std::string& dtype, const std::string& device,
                        const std::string& kv_dtype, const std::string& quantize);
  // load_quantized with a LoRA adapter run with the base, unmerged (reason_model_load_adapter):
  // adapter_dir is a PEFT adapter directory ("" = none). A trainer on the model trains the adapter
  // only (the base is frozen; a quantised base trains as QLoRA) and saves it in PEFT's format.
  Status load_adapter(const std::string& dir, const std::string& adapter_dir, const std::string& dtype,
                      const std::string& device, const std::string& kv_dtype, const std::string& quantize);
  // Writes the model's adapter (PEFT format) into dir (reason_model_save_adapter).
  Status save_adapter(const std::string& dir) const;
  ModelInfo info() const;
  // The model's tokenizer into `out` (borrowed: valid while this model is open).
  Status tokenizer(Tokenizer& out) const;
  // Completions of text prompts (encoded with the model's tokenizer); handler may be null.
  CompletionsResult generate(const std::vector<std::string>& prompts, const SamplingOptions& opts,
                             TokenHandler* handler = nullptr) const;
  // Completions of token-id prompts.
  CompletionsResult generate_ids(const std::vector<std::vector<int32_t>>& prompts, const SamplingOptions& opts,
                                 TokenHandler* handler = nullptr) const;
  // Teacher-forced logprobs: values[t] = log p(ids[t+1] | ids[..t]).
  FloatsResult score(const std::vector<int32_t>& ids) const;
  // `base` with the sampling defaults the model ships with applied (generation_config.json or a
  // GGUF's general.sampling.*; reason_sampling_options_from_model): fields the model sets replace
  // base's, the others stay.
  SamplingResult sampling_defaults(const SamplingOptions& base) const;
  bool is_open() const { return m_ != nullptr; }
  void close();
  reason_model* raw() const { return m_; }

 private:
  reason_model* m_ = nullptr;
};

struct StreamEvent {
  bool done = false;
  int32_t token_id = -1;
  float logprob = 0;
  std::string text;
  int finish_reason = 0;
};
struct StreamEventResult { Status status; StreamEvent event; };

// Pull-style streaming of one completion (reason_stream_*): start, then next() until done.
class Stream {
 public:
  Stream() = default;
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Status start(const Model& model, const std::string& prompt, const SamplingOptions& opts);
  StreamEventResult next();
  bool is_open() const { return s_ != nullptr; }
  void close();  // stops generation if still running

 private:
  reason_stream* s_ = nullptr;
};

struct StepMetrics {
  int64_t step = 0;
  float loss = 0, grad_norm = 0, lr = 0;
  int64_t tokens = 0;
  float kl = 0, clip_low = 0, clip_high = 0, entropy = 0, reward_mean = 0, reward_std = 0;
};
struct MetricsResult { Status status; StepMetrics metrics; };

struct GrpoSample {
  std::vector<int32_t> prompt, completion;
  float reward = 0;
  std::vector<float> old_logprobs;  // from sampling; empty: computed by the engine
  bool truncated = false;
};

class Trainer {
 public:
  Trainer() = default;
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
  // config: a TrainerConfig in protobuf text format (sdk/proto/reason.proto). reference may be
  // null (needed only when grpo.beta > 0). Both models must outlive the trainer.
  Status create(Model& policy, const Model* reference, const std::string& config);
  // One SFT step: tokens[i] with masks[i] (1 = a completion token that carries loss).
  MetricsResult sft_step(const std::vector<std::vector<int32_t>>& tokens, const std::vector<std::vector<uint8_t>>& masks);
  MetricsResult grpo_step(const std::vector<GrpoSample>& batch);
  Status save(const std::string& dir);
  Status load_state(const std::string& dir);
  bool is_open() const { return t_ != nullptr; }
  void close();

 private:
  reason_trainer* t_ = nullptr;
};

struct RewardsResult {
  Status status;
  std::vector<float> rewards;
  int64_t failed = 0;  // completions whose reward threw or was not finite (scored 0)
};

// Scores completions (decoded with `tok`) with `fn` on the calling thread.
RewardsResult compute_rewards(const Tokenizer& tok, const std::vector<std::vector<int32_t>>& completions,
                              const std::vector<std::string>& answers, RewardFunction& fn);

// The built-in rule-based rewards: kind 1 math accuracy (arg = gold answer), 2 format (arg "open"
// accepts a completion that starts inside the think block), 3 language consistency (arg = code).
FloatsResult builtin_reward(int kind, const std::string& completion, const std::string& arg);

// Runs (or resumes) a pipeline config into out_dir; reward_names[i] is served by rewards[i]
// (called from reward worker threads: must be thread-safe), tool_names[i] by tools[i] (called on
// tool threads; a call past the stage's tools.deadline_ms is abandoned and may still run after
// this returns). Both borrowed for the call. text = summary JSON.
TextResult run_pipeline(const std::string& config_path, const std::string& out_dir, bool progress,
                        const std::vector<std::string>& reward_names, const std::vector<RewardFunction*>& rewards,
                        const std::vector<std::string>& tool_names, const std::vector<ToolFunction*>& tools);

}  // namespace reason_binding
