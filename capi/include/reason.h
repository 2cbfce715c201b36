/*
 * libreason — the stable C ABI.
 *
 * Conventions (libgit2 / SQLite / ONNX Runtime style):
 *  - Every exported symbol starts with reason_, every macro with REASON_.
 *  - Objects are opaque handles created by reason_X_create/load and released by reason_X_free;
 *    reason_X_free(NULL) is a no-op.
 *  - Every fallible call returns reason_status (REASON_OK == 0). On failure,
 *    reason_last_error() returns a message naming what was wrong (file, tensor, field); it is
 *    thread-local and valid until the next failing call on the same thread.
 *  - Out-parameters come first. They are written only on success.
 *  - Options structs begin with uint32_t struct_size; initialise them with their
 *    REASON_X_OPTIONS_INIT macro or reason_X_options_init() so that old callers keep working
 *    when fields are added at the end.
 *  - Memory the library hands out (strings, arrays, results) is released with the matching
 *    reason_*_free or with reason_free. Pointers given to callbacks are borrowed: valid only
 *    during the callback.
 *  - Threads: a reason_tokenizer is immutable and may be used from any number of threads at
 *    once. A reason_model has many readers or one writer, enforced inside the library for every
 *    language: generation, scoring, streams and the other calls that read it run concurrently;
 *    a trainer step (or reason_trainer_load_state) on it is its one writer: it waits for the
 *    readers in progress, and readers that arrive meanwhile wait for it. A step fails at once
 *    (REASON_ERR_INVALID_ARGUMENT) rather than wait for ever when a stream on the model is open
 *    or when it is called from a callback of a generation on the same model. There is no global
 *    lock. Each call documents its own rules below.
 *  - No C++ exception ever crosses this boundary.
 */
#ifndef REASON_H
#define REASON_H

#include <stddef.h>
#include <stdint.h>

#include "reason_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(REASON_BUILDING_LIBRARY)
#define REASON_API __attribute__((visibility("default")))
#else
#define REASON_API
#endif

/* ---- Status and errors ----------------------------------------------------------------- */

typedef enum reason_status {
  REASON_OK = 0,
  REASON_ERR_INVALID_ARGUMENT = 1, /* null handle, bad option, out-of-range token id */
  REASON_ERR_IO = 2,               /* a file could not be opened, read or written */
  REASON_ERR_FORMAT = 3,           /* a file is malformed: corrupt, truncated or hostile */
  REASON_ERR_UNSUPPORTED = 4,      /* valid but unsupported: unknown architecture, dtype */
  REASON_ERR_OUT_OF_MEMORY = 5,
  REASON_ERR_BACKEND = 6,          /* a compute backend failed */
  REASON_ERR_CANCELLED = 7,        /* stopped by a callback (not used for normal stops) */
  REASON_ERR_INTERNAL = 8
} reason_status;

/* The message of the last failing call on this thread ("" if none). Borrowed: valid until the
 * next failing call on this thread. Never NULL. */
REASON_API const char* reason_last_error(void);

/* A static name for a status code, e.g. "REASON_ERR_FORMAT". Never NULL. */
REASON_API const char* reason_status_name(reason_status status);

/* ---- Version ------------------------------------------------------------------------------ */

/* The library's version string, "MAJOR.MINOR.PATCH". Static storage. Compare with
 * REASON_VERSION_STRING to detect a header/library mismatch. */
REASON_API const char* reason_version(void);
/* Writes the numeric version. Any pointer may be NULL. */
REASON_API void reason_version_numbers(int* major, int* minor, int* patch);

/* Frees memory handed out by the library (strings and arrays documented as "free with
 * reason_free"). NULL is a no-op. */
REASON_API void reason_free(void* ptr);

/* Number of CPU threads compute uses (default: all cores, or $REASON_NUM_THREADS).
 * Process-wide (threads with a count of their own, reason_set_thread_num_threads, keep theirs);
 * takes effect for calls that start after it returns. 0 restores the default. */
REASON_API void reason_set_num_threads(int n);
REASON_API int reason_get_num_threads(void);

/* The library's own messages: stage reports and progress of reason_pipeline_run (progress = 1),
 * and the last words of a data-parallel rank before its job is aborted. By default they go to
 * stderr; a callback set here receives them instead, one message (a line, without its newline) at
 * a time: it is called from whichever library thread logs but never concurrently, must return
 * quickly, and must not call reason_set_log_callback. NULL restores stderr. Process-wide.
 * Added in 0.x. */
typedef enum reason_log_level {
  REASON_LOG_DEBUG = 0,
  REASON_LOG_INFO = 1,
  REASON_LOG_WARNING = 2,
  REASON_LOG_ERROR = 3
} reason_log_level;
typedef void (*reason_log_callback)(void* user_data, reason_log_level level, const char* message);
REASON_API void reason_set_log_callback(reason_log_callback callback, void* user_data);

/* CPU threads for the compute of the calls the CALLING thread makes (a service that runs a
 * pipeline on one thread and serves generations on others gives each its own count); 0 returns
 * the thread to the process-wide count. A stream computes with the count of the thread that
 * started it. A pipeline config's `threads` applies to its run only, on the thread that runs it.
 * reason_get_num_threads() reports the count that applies to the calling thread. Added in 0.x. */
REASON_API void reason_set_thread_num_threads(int n);

/* ---- Tokenizer ---------------------------------------------------------------------------- */

typedef struct reason_tokenizer reason_tokenizer;

/* Loads a Hugging Face tokenizer: `path` is a directory holding tokenizer.json (and optionally
 * tokenizer_config.json for BOS/EOS and the chat format), the path of a tokenizer.json, or a
 * GGUF model file (its tokenizer.ggml.* metadata). On success *out owns a new tokenizer; free it with reason_tokenizer_free. Thread-safe. */
REASON_API reason_status reason_tokenizer_load(reason_tokenizer** out, const char* path);
REASON_API void reason_tokenizer_free(reason_tokenizer* tok);

/* Encodes UTF-8 text (text_len bytes; text need not be NUL-terminated). With
 * add_special_tokens != 0 the tokens the tokenizer's post-processor adds (e.g. DeepSeek's BOS)
 * are added. *out_ids receives an array of *out_n ids: free it with reason_free. */
REASON_API reason_status reason_tokenizer_encode(int32_t** out_ids, size_t* out_n,
                                                 const reason_tokenizer* tok, const char* text,
                                                 size_t text_len, int add_special_tokens);

/* Decodes ids to a NUL-terminated UTF-8 string (free with reason_free). An id outside the
 * vocabulary is REASON_ERR_INVALID_ARGUMENT naming the id and its index. */
REASON_API reason_status reason_tokenizer_decode(char** out_text, const reason_tokenizer* tok,
                                                 const int32_t* ids, size_t n,
                                                 int skip_special_tokens);

/* Vocabulary size (largest id + 1), or -1 if tok is NULL. */
REASON_API int32_t reason_tokenizer_vocab_size(const reason_tokenizer* tok);
/* The end-of-sequence id from tokenizer_config.json, or -1 if none. */
REASON_API int32_t reason_tokenizer_eos_id(const reason_tokenizer* tok);

typedef struct reason_chat_message {
  const char* role;    /* "system", "user" or "assistant" */
  const char* content; /* UTF-8, NUL-terminated */
} reason_chat_message;

typedef enum reason_chat_format {
  REASON_CHAT_AUTO = 0,        /* the tokenizer's own chat template (Jinja, rendered as transformers'
                                  apply_chat_template renders it); without one, detected */
  REASON_CHAT_DEEPSEEK_R1 = 1, /* BOS, <｜User｜>, <｜Assistant｜>, forced "<think>\n" */
  REASON_CHAT_CHATML = 2       /* Qwen: <|im_start|>role\n...<|im_end|>\n */
} reason_chat_format;

/* Formats a conversation as the model's chat template would, returning the prompt text (free
 * with reason_free). REASON_CHAT_AUTO renders the tokenizer's own template (tokenizer_config.json,
 * chat_template.jinja or GGUF metadata) byte-identical to transformers' apply_chat_template; a
 * template's raise_exception is REASON_ERR_INVALID_ARGUMENT with its message. With
 * add_generation_prompt != 0 the assistant prefix is appended (for DeepSeek-R1 it includes
 * "<think>\n", appended where an older R1 template stops at "<｜Assistant｜>"). The named formats
 * are native renderings: earlier assistant turns drop their <think> part. */
REASON_API reason_status reason_tokenizer_apply_chat(char** out_text, const reason_tokenizer* tok,
                                                     const reason_chat_message* messages,
                                                     size_t n_messages, int add_generation_prompt,
                                                     reason_chat_format format);
/* reason_tokenizer_apply_chat over messages laid out message_stride bytes apart (0: sizeof
 * reason_chat_message as this header declares it): reason_chat_message may grow at its end, and
 * programs that pass their own sizeof keep working with every later library. Added in 0.x. */
REASON_API reason_status reason_tokenizer_apply_chat_ex(char** out_text, const reason_tokenizer* tok,
                                                        const reason_chat_message* messages, size_t message_stride,
                                                        size_t n_messages, int add_generation_prompt,
                                                        reason_chat_format format);

/* ---- Model -------------------------------------------------------------------------------- */

typedef struct reason_model reason_model;

typedef enum reason_dtype {
  REASON_DTYPE_AUTO = 0, /* f32 */
  REASON_DTYPE_F32 = 1,
  REASON_DTYPE_BF16 = 2 /* bf16 weights, bf16 matmul inputs, f32 accumulation */
} reason_dtype;

typedef struct reason_model_options {
  uint32_t struct_size;       /* sizeof(reason_model_options) */
  reason_dtype compute_dtype; /* weights are converted to this at load */
  int load_tokenizer;         /* non-zero: also load tokenizer.json from the directory */
} reason_model_options;
/* The KV cache is stored in the compute dtype (bf16 weights: a bf16 cache; reason_model_info
 * says which). The struct keeps its 0.2.0 size: reason_model_options_init() writes sizeof of the
 * library's struct, so a member appended here would overflow an older caller's struct. */

#define REASON_MODEL_OPTIONS_INIT {(uint32_t)sizeof(reason_model_options), REASON_DTYPE_AUTO, 1}
REASON_API void reason_model_options_init(reason_model_options* opts);

/* Loads a Hugging Face model directory (config.json + model.safetensors or sharded
 * model.safetensors.index.json) or a GGUF model file (general.architecture llama, qwen2, qwen3,
 * qwen2moe, qwen3moe or deepseek2; F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K tensors,
 * dequantised at load — reason_model_load_quantized keeps them quantised; tokenizer and chat
 * template from its metadata). opts may be NULL for defaults. Supported architectures:
 * LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM,
 * DeepseekV3ForCausalLM (incl. FP8 block-scaled checkpoints, dequantised at load). Errors name the directory and the file/tensor/field.
 * On success *out owns the model; free with reason_model_free. The model is immutable and may
 * be shared by any number of threads. */
REASON_API reason_status reason_model_load(reason_model** out, const char* dir,
                                           const reason_model_options* opts);
REASON_API void reason_model_free(reason_model* model);

/* Where a model's weights, KV cache and activations live and its ops run. */
typedef enum reason_device {
  REASON_DEVICE_CPU = 0,  /* the CPU backend (oneDNN + vectorised loops) */
  REASON_DEVICE_CUDA = 1  /* the CUDA backend on GPU 0 */
} reason_device;

/* reason_model_load on `device`, with the KV cache stored in kv_dtype (REASON_DTYPE_AUTO: the
 * compute dtype; F32 or BF16). REASON_DEVICE_CUDA is REASON_ERR_UNSUPPORTED, with the reason in
 * the message, when the library was built without CUDA or no driver or GPU is usable; a bad enum
 * value is REASON_ERR_INVALID_ARGUMENT. Ownership and threads as reason_model_load. */
REASON_API reason_status reason_model_load_on(reason_model** out, const char* dir, const reason_model_options* opts,
                                              reason_device device, reason_dtype kv_dtype);

/* How matmul weights are held in memory (reason_model_load_quantized). Quantised weights use llama.cpp's
 * block formats and run through integer kernels on int8-rounded activations for small batches
 * (decode) and through dequantised f32 panels for larger ones (prefill); such a model runs
 * inference only (trainers and checkpoint saving refuse it). Norms, biases, MoE routers and MLA's
 * kv_b are never quantised. */
typedef enum reason_weight_quant {
  REASON_QUANT_STORED = 0, /* a GGUF file's Q8_0/Q4_0/Q4_1/Q4_K/Q5_K/Q6_K tensors used as stored
                              (zero-copy views of the mapped file); everything else in the compute dtype */
  REASON_QUANT_NONE = 1,   /* every weight in the compute dtype (GGUF tensors dequantised): the exact
                              path, and what reason_model_load / reason_model_load_on do */
  REASON_QUANT_Q8_0 = 2,   /* float weights quantised to Q8_0 at load (llama.cpp's Q8_0 files) */
  REASON_QUANT_Q4_K = 3    /* float weights quantised as llama.cpp's Q4_K_M files: Q4_K, and Q6_K for the
                              LM head and for attn_v / ffn_down in the layers llama.cpp picks */
} reason_weight_quant;

/* reason_model_load_on with the weights held as `quantize` says. A bad enum value is
 * REASON_ERR_INVALID_ARGUMENT. Ownership and threads as reason_model_load. */
REASON_API reason_status reason_model_load_quantized(reason_model** out, const char* path,
                                                     const reason_model_options* opts, reason_device device,
                                                     reason_dtype kv_dtype, reason_weight_quant quantize);

/* reason_model_load_quantized with a LoRA adapter run with the base weights, unmerged (added in
 * 0.x): adapter_dir is a PEFT adapter directory (adapter_config.json + adapter_model.safetensors,
 * as PeftModel.save_pretrained writes; DoRA, biases and modules_to_save are refused, naming the
 * field); NULL: none. `path` may itself be an adapter directory (no config.json): its base is
 * adapter_config.json's base_model_name_or_path. A trainer on such a model trains the adapter
 * only (the base is frozen; a quantised base trains as QLoRA) and reason_trainer_save writes the
 * adapter in PEFT's format. Errors name the file and tensor (a module the base lacks, shapes or
 * ranks that differ). Ownership and threads as reason_model_load. */
REASON_API reason_status reason_model_load_adapter(reason_model** out, const char* path, const char* adapter_dir,
                                                   const reason_model_options* opts, reason_device device,
                                                   reason_dtype kv_dtype, reason_weight_quant quantize);
/* The number of linear layers carrying the model's LoRA adapter (0: none). */
REASON_API int64_t reason_model_adapter_modules(const reason_model* model);
/* Writes the model's adapter into directory dir in PEFT's format (each file atomically;
 * PeftModel.from_pretrained opens it). REASON_ERR_INVALID_ARGUMENT when the model has none. Do not
 * call while a trainer step on the model runs. */
REASON_API reason_status reason_model_save_adapter(const reason_model* model, const char* dir);

/* ggml's name of the block type of the model's first quantised weight ("Q4_K", "Q6_K", "Q8_0",
 * "Q4_0", "Q4_1", "Q5_K"), or NULL when no weight is quantised (or model is NULL). A static string. */
REASON_API const char* reason_model_quantized_weights(const reason_model* model);

/* The tokenizer loaded with the model, or NULL if none. Borrowed: owned by the model and
 * valid while the model is. */
REASON_API const reason_tokenizer* reason_model_tokenizer(const reason_model* model);

typedef struct reason_model_info {
  uint32_t struct_size;
  const char* architecture; /* borrowed, valid while the model is */
  int32_t vocab_size;
  int32_t hidden_size;
  int32_t n_layers;
  int32_t n_heads;
  int32_t n_kv_heads;
  int32_t head_dim;
  int32_t max_position_embeddings;
  int64_t n_params;
  uint64_t kv_bytes_per_token; /* KV cache bytes per token over all layers */
  reason_dtype compute_dtype;
  /* Added in 0.2 (read only when struct_size covers them): */
  int32_t n_experts;          /* routed experts per MoE layer; 0 for dense models */
  int32_t n_experts_per_tok;  /* experts chosen per token */
  int32_t n_moe_layers;       /* layers that are MoE (the others are dense) */
  int32_t n_mtp_modules;      /* DeepSeek-V3 multi-token-prediction modules loaded (kept, not run) */
  int32_t mla;                /* non-zero: Multi-head Latent Attention (KV cache holds the latent only) */
  /* Added after 0.2.0 (written only when struct_size covers it): */
  reason_dtype kv_dtype;      /* the KV cache's storage (F32 or BF16); kv_bytes_per_token counts it */
} reason_model_info;
/* (The device is not a member: it would fall in the struct's 0.2.0 tail padding. See
 * reason_model_device.) */

REASON_API reason_status reason_model_get_info(reason_model_info* out, const reason_model* model);

/* Where the model runs (the device it was loaded on); REASON_DEVICE_CPU for a NULL model. */
REASON_API reason_device reason_model_device(const reason_model* model);

/* Runs a prompt through an MoE model and counts, per layer and expert, the tokens routed to it:
 * out_counts[layer * n_experts + e] for layer < n_layers (dense layers count 0). out_counts is
 * caller-owned with room for n_counts >= n_layers * n_experts values (see reason_model_get_info).
 * A dense model is REASON_ERR_INVALID_ARGUMENT. Thread-safe like generation. */
REASON_API reason_status reason_model_expert_load(int64_t* out_counts, size_t n_counts, const reason_model* model,
                                                  const int32_t* ids, size_t n);

/* ---- Generation --------------------------------------------------------------------------- */

typedef struct reason_sampling_options {
  uint32_t struct_size;       /* sizeof(reason_sampling_options) */
  float temperature;          /* 0 = greedy */
  int32_t top_k;              /* 0 = off */
  float top_p;                /* 1 = off */
  float min_p;                /* 0 = off */
  float repetition_penalty;   /* 1 = off (CTRL-style, over prompt and generated tokens) */
  int32_t max_new_tokens;     /* >= 1; a completion also ends when prompt + completion reach the
                                 model's max_position_embeddings (REASON_FINISH_LENGTH) */
  uint64_t seed;              /* per request; request i of a batch uses seed + i */
  const int32_t* stop_token_ids; /* borrowed for the call; EOS is always a stop token */
  size_t n_stop_token_ids;
  const char* const* stop_strings; /* borrowed; generation stops when the text ends with one (also
                                      when it spans several tokens); the text is cut before it.
                                      Each token costs O(longest stop string), not O(text) */
  size_t n_stop_strings;
  int ignore_eos; /* non-zero: do not stop at EOS (benchmarks) */
} reason_sampling_options;

#define REASON_SAMPLING_OPTIONS_INIT \
  {(uint32_t)sizeof(reason_sampling_options), 1.0f, 0, 1.0f, 0.0f, 1.0f, 256, 0, NULL, 0, NULL, 0, 0}
REASON_API void reason_sampling_options_init(reason_sampling_options* opts);
/* DeepSeek-R1's recommended settings: temperature 0.6, top-p 0.95, max_new_tokens 32768. */
REASON_API void reason_sampling_options_r1(reason_sampling_options* opts);
/* Applies the sampling defaults the model ships with to opts (call after
 * reason_sampling_options_init; set explicit values afterwards, they win): generation_config.json
 * in its directory, or a GGUF's general.sampling.* (temperature, top_p, top_k, min_p,
 * repetition_penalty, max_new_tokens; do_sample false means temperature 0, as transformers).
 * Fields the model does not set keep their value. A malformed file is REASON_ERR_FORMAT naming
 * the field, opts unchanged. Thread-safe. */
REASON_API reason_status reason_sampling_options_from_model(reason_sampling_options* opts, const reason_model* model);

typedef enum reason_finish_reason {
  REASON_FINISH_LENGTH = 0, /* max_new_tokens reached, or prompt + completion reached the model's
                               max_position_embeddings (the completion is truncated) */
  REASON_FINISH_STOP = 1,   /* EOS, a stop token or a stop string */
  REASON_FINISH_CALLBACK = 2 /* the stream callback asked to stop */
} reason_finish_reason;

/* Called for each generated token of each request, on the calling thread, in order per
 * request. `text` is the newly completed UTF-8 text of this token (may be "" while a multi-byte
 * character is incomplete); borrowed. Return 0 to continue, non-zero to stop this request. */
typedef int (*reason_token_callback)(void* user_data, size_t request_index, int32_t token_id,
                                     float logprob, const char* text);

/* One finished request. Arrays are owned by the reason_generation that holds them. */
typedef struct reason_completion {
  const int32_t* token_ids; /* generated tokens (stop strings included; EOS excluded) */
  const float* logprobs;    /* logprob of each token under softmax(logits / T) (T = 1 greedy) */
  size_t n_tokens;
  const char* text;         /* decoded text, NUL-terminated ("" without a tokenizer); a NUL byte
                               the model generated ends it as a C string (token_ids are exact) */
  reason_finish_reason finish_reason;
} reason_completion;

typedef struct reason_generation reason_generation;

/* Generates completions for a batch of prompts given as token ids, all sequences decoded
 * together (continuous batching). prompts[i] has prompt_lens[i] ids. The callback may be NULL.
 * Context cap: a sequence never grows past the model's max_position_embeddings (see
 * reason_model_info), so its KV cache holds at most that many positions; a prompt of
 * max_position_embeddings ids or more is REASON_ERR_INVALID_ARGUMENT (checked before any work).
 * On success *out owns the results: read them with reason_generation_get, free with
 * reason_generation_free. Many threads may generate with the same model at once. */
REASON_API reason_status reason_generate(reason_generation** out, const reason_model* model,
                                         const int32_t* const* prompts, const size_t* prompt_lens,
                                         size_t n_prompts, const reason_sampling_options* opts,
                                         reason_token_callback callback, void* user_data);

/* Same, for NUL-terminated UTF-8 prompts encoded with the model's tokenizer (with its special
 * tokens, e.g. BOS). Requires a model loaded with its tokenizer. */
REASON_API reason_status reason_generate_text(reason_generation** out, const reason_model* model,
                                              const char* const* prompts, size_t n_prompts,
                                              const reason_sampling_options* opts,
                                              reason_token_callback callback, void* user_data);

REASON_API size_t reason_generation_count(const reason_generation* gen);
/* Borrowed view of completion i (valid while gen is). NULL if out of range. */
REASON_API const reason_completion* reason_generation_get(const reason_generation* gen, size_t i);
REASON_API void reason_generation_free(reason_generation* gen);

/* ---- Streaming, pull style ------------------------------------------------------------------
 * For languages where iterating is more natural than being called back (Java iterators, Go
 * channels, C# IEnumerable): generation of one completion runs on a library thread and the
 * caller pulls its tokens one by one. A stream is used by one thread at a time; many streams may
 * run on one model at once. */
typedef struct reason_stream reason_stream;

typedef struct reason_stream_event {
  uint32_t struct_size;       /* sizeof(reason_stream_event), set by the caller */
  int done;                   /* 0: a token; 1: the completion has ended (no token) */
  int32_t token_id;           /* the generated token (done = 0) */
  float logprob;              /* its logprob under softmax(logits / T) */
  const char* text;           /* its newly completed UTF-8 text (may be ""), NUL-terminated;
                                 borrowed until the next reason_stream_next / reason_stream_free */
  reason_finish_reason finish_reason;  /* done = 1: why it ended */
  size_t text_len;            /* bytes of text (a model may generate a NUL byte: text_len counts it) */
} reason_stream_event;

/* Starts generating a completion of the NUL-terminated UTF-8 `prompt` (encoded with the model's
 * tokenizer and its special tokens, as reason_generate_text) and returns at once. The model must
 * outlive the stream. Bad options or an empty prompt fail here, before anything runs. */
REASON_API reason_status reason_stream_start(reason_stream** out, const reason_model* model, const char* prompt,
                                             const reason_sampling_options* opts);

/* Waits for the next event. After the end, every call returns the end again (done = 1). If
 * generation failed, returns its error status and message (reason_last_error). */
REASON_API reason_status reason_stream_next(reason_stream* stream, reason_stream_event* event);

/* Stops generation if it is still running (the completion ends with REASON_FINISH_CALLBACK),
 * waits for the library thread and frees the stream. NULL is a no-op. */
REASON_API void reason_stream_free(reason_stream* stream);

/* ---- Scoring ------------------------------------------------------------------------------ */

/* Teacher-forced scoring: out_logprobs[t] = log p(ids[t+1] | ids[0..t]) for t < n-1, computed
 * at temperature 1. out_logprobs must have room for n-1 floats (caller-owned).
 * 2 <= n <= max_position_embeddings, else REASON_ERR_INVALID_ARGUMENT. The log-softmax runs on
 * blocks of 64 positions: the logits held at once are 64 x vocab floats, never n x vocab. */
REASON_API reason_status reason_score(float* out_logprobs, const reason_model* model,
                                      const int32_t* ids, size_t n);

/* ---- Training --------------------------------------------------------------------------- */

/* A trainer updates its policy model's weights IN PLACE: after a step, generation with the same
 * reason_model uses the new policy with no reload or copy. A trainer is used by one thread at a
 * time. A step holds its policy model as the writer (see Threads above: generations and scores
 * of that model in other threads finish first, new ones wait for the step; an open stream on it,
 * or a call from a token callback of a generation on it, fails the step at once). The policy
 * must be loaded in f32 (REASON_DTYPE_AUTO/F32): its weights are the f32 master weights.
 * Training covers every architecture the engine runs (dense, MoE, MLA expanded path). */
typedef struct reason_trainer reason_trainer;

/* Creates a trainer. `config` is a reason.proto TrainerConfig in protobuf text format
 * (config_is_binary = 0; config_len may be 0 for a NUL-terminated string) or binary bytes
 * (config_is_binary != 0); NULL means all defaults. `reference` (may be NULL) is the frozen
 * reference model for GRPO's KL term (needed only when grpo.beta > 0 and the caller does not pass
 * reference logprobs). Both models are borrowed and must outlive the trainer. Errors name the
 * config field or the parser's line and column. */
REASON_API reason_status reason_trainer_create(reason_trainer** out, reason_model* policy, const reason_model* reference,
                                               const char* config, size_t config_len, int config_is_binary);
REASON_API void reason_trainer_free(reason_trainer* trainer);

typedef struct reason_step_metrics {
  uint32_t struct_size; /* sizeof(reason_step_metrics); filled up to this size */
  int64_t step;         /* optimizer steps taken so far */
  float loss;
  float grad_norm; /* global gradient norm before clipping */
  float lr;
  int64_t tokens; /* tokens that carried loss */
  /* GRPO */
  float kl, clip_low, clip_high, entropy;
  float reward_mean, reward_std, tied_group_share;
  float correct_length, incorrect_length; /* mean completion length with reward > 0 / <= 0 */
  /* Added in 0.x (filled when struct_size covers them): the tokens the policy term acted on (with
   * grpo.top_entropy_quantile < 1, those the entropy mask kept), the entropy bonus coefficient
   * after the step (grpo.adaptive_entropy: the next step's), and with grpo.rollout_correction the
   * correction weights' min / mean / max and |old - sampler| logprob difference mean / max. */
  int64_t policy_tokens;
  float entropy_coef;
  float is_ratio_min, is_ratio_mean, is_ratio_max;
  float sampling_logp_diff_mean, sampling_logp_diff_max;
} reason_step_metrics;

/* Every member named, so C++ callers compiling with -Wextra get no missing-initializer warning. */
#define REASON_STEP_METRICS_INIT                                                                           \
  {(uint32_t)sizeof(reason_step_metrics), 0, 0.0f, 0.0f, 0.0f, 0, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, \
   0, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}

/* One SFT step over n sequences: tokens[i] has lens[i] ids and masks[i] has lens[i] bytes,
 * 1 where the token is a completion token to learn (prompt tokens 0). The loss is the mean over
 * all masked tokens. out may be NULL. On error the weights are unchanged. */
REASON_API reason_status reason_trainer_sft_step(reason_step_metrics* out, reason_trainer* trainer,
                                                 const int32_t* const* tokens, const size_t* lens,
                                                 const uint8_t* const* masks, size_t n);

typedef struct reason_grpo_sample {
  const int32_t* prompt;
  size_t prompt_len;
  const int32_t* completion;
  size_t completion_len;
  float reward;
  const float* old_logprobs; /* completion_len values from sampling, or NULL: current policy (ratio 1) */
  const float* ref_logprobs; /* completion_len values, or NULL: computed with the reference model */
  int truncated;             /* non-zero: the completion hit the length limit (no EOS) */
} reason_grpo_sample;

/* One GRPO step (DeepSeekMath eq. 3, settings from the config's grpo message) over n samples:
 * groups of grpo.group_size consecutive samples share a prompt. Logprobs are computed on
 * softmax(logits / grpo.temperature), the distribution sampling used. On error the weights are
 * unchanged. */
REASON_API reason_status reason_trainer_grpo_step(reason_step_metrics* out, reason_trainer* trainer,
                                                  const reason_grpo_sample* samples, size_t n);

/* A GRPO sample with the fields reason_grpo_sample lacks. struct_size first (set it with
 * REASON_GRPO_SAMPLE_EX_INIT): reason_trainer_grpo_step_ex walks the array with samples[0].struct_size
 * as the stride, and members beyond it count as absent, so the struct can grow. */
typedef struct reason_grpo_sample_ex {
  uint32_t struct_size;
  const int32_t* prompt;
  size_t prompt_len;
  const int32_t* completion;
  size_t completion_len;
  float reward;
  const float* old_logprobs;      /* as reason_grpo_sample; NULL: the current policy's */
  const float* ref_logprobs;      /* as reason_grpo_sample */
  int truncated;
  const float* sampling_logprobs; /* completion_len values from the engine that sampled (vLLM, a
                                     quantised copy...), for grpo.rollout_correction; NaN = unknown */
  const uint8_t* loss_mask;       /* completion_len bytes, 0 = not the model's own token (a tool's
                                     output): no loss; NULL: every token */
} reason_grpo_sample_ex;

#define REASON_GRPO_SAMPLE_EX_INIT \
  {(uint32_t)sizeof(reason_grpo_sample_ex), NULL, 0, NULL, 0, 0.0f, NULL, NULL, 0, NULL, NULL}

/* reason_trainer_grpo_step over reason_grpo_sample_ex samples (rollout correction, masked tokens).
 * On error the weights are unchanged. */
REASON_API reason_status reason_trainer_grpo_step_ex(reason_step_metrics* out, reason_trainer* trainer,
                                                     const reason_grpo_sample_ex* samples, size_t n);

/* One logit-distillation step from `teacher` (same vocabulary; borrowed) with the config's
 * distill settings, on sequences given as for reason_trainer_sft_step. */
REASON_API reason_status reason_trainer_distill_step(reason_step_metrics* out, reason_trainer* trainer,
                                                     const reason_model* teacher, const int32_t* const* tokens,
                                                     const size_t* lens, const uint8_t* const* masks, size_t n);

/* Logprobs of a completion's tokens given its prompt, at the GRPO temperature, under the current
 * policy (use_reference = 0) or the reference model: out has completion_len floats. */
REASON_API reason_status reason_trainer_completion_logprobs(float* out, reason_trainer* trainer, int use_reference,
                                                            const int32_t* prompt, size_t prompt_len,
                                                            const int32_t* completion, size_t completion_len);

/* Saves the policy as a Hugging Face directory plus optimizer state and step, atomically (the
 * previous checkpoint at `dir` survives any failure). A policy with a LoRA adapter is saved as
 * its adapter in PEFT's format (plus the optimizer state), naming its base: reason_model_load of
 * `dir` gives base + adapter. A data-parallel trainer (config `data_parallel { }`): every rank
 * calls it with the same dir; rank 0 writes (with ZeRO-1 the state of every rank's share), and an
 * error there is returned on every rank. */
REASON_API reason_status reason_trainer_save(reason_trainer* trainer, const char* dir);
/* Restores optimizer state and step from a checkpoint whose weights the policy was loaded from
 * (reason_model_load(dir)). */
REASON_API reason_status reason_trainer_load_state(reason_trainer* trainer, const char* dir);

/* A reward written in any language: scores completion `index` (decoded text, borrowed) against
 * the reference answer (may be ""). Called on the calling thread. Return a finite value; NaN
 * marks the completion as failed (scored 0 and reported by the caller). */
typedef float (*reason_reward_fn)(void* user_data, size_t index, const char* completion, const char* answer);

typedef enum reason_reward_kind {
  REASON_REWARD_MATH_ACCURACY = 1, /* 1 if the last \boxed{} answer equals `arg` (the gold answer), else 0 */
  REASON_REWARD_FORMAT = 2,        /* 1 if "<think>...</think>" then a non-empty answer; arg "open" also
                                      accepts a completion that starts inside the think block */
  REASON_REWARD_LANGUAGE = 3       /* share of chain-of-thought words in language `arg` ("en", "zh", ...) */
} reason_reward_kind;

/* The built-in rule-based rewards of the DeepSeek-R1 recipe (pure, thread-safe). */
REASON_API reason_status reason_builtin_reward(float* out, reason_reward_kind kind, const char* completion,
                                               const char* arg);

/* Decodes n completions with `tok` and scores each with `fn`: out has n floats. answers may be
 * NULL. A non-finite score becomes 0 and the call returns REASON_OK with *n_failed counting them
 * (n_failed may be NULL). */
REASON_API reason_status reason_compute_rewards(float* out, size_t* n_failed, const reason_tokenizer* tok,
                                                const int32_t* const* completions, const size_t* lens,
                                                const char* const* answers, size_t n, reason_reward_fn fn,
                                                void* user_data);

/* ------------------------------------------------------------------------------------------
 * Pipelines: the R1 recipe (sft, grpo, rejection_sampling, distill, eval stages) described by a
 * PipelineConfig in protobuf text format (sdk/proto/reason.proto, examples/pipelines/).
 * ------------------------------------------------------------------------------------------ */

/* A reward a pipeline config names as `terms { callback: "NAME" }`. Returns the reward of one
 * completion (strings borrowed for the call: prompt text, completion text, gold answer or "",
 * the dataset line as a JSON object). Called from reward worker threads, possibly several at
 * once: it must be thread-safe. A call that returns a non-finite value, or does not return
 * within the reward's deadline_ms, scores 0 and is reported; the run goes on. user_data must
 * stay valid while reason_pipeline_run runs (and, for a call that hung past its deadline, until
 * that call returns). */
typedef float (*reason_pipeline_reward_fn)(void* user_data, const char* prompt, const char* completion,
                                           const char* answer, const char* fields_json);

typedef struct reason_pipeline_reward {
  const char* name;                 /* the name configs use */
  reason_pipeline_reward_fn fn;
  void* user_data;
} reason_pipeline_reward;

/* A tool a GRPO stage's `tools { callbacks: "NAME" }` lets completions call (multi-turn
 * rollouts: the model writes <tool_call>{"name": NAME, "arguments": ...}</tool_call>, the tool's
 * result is appended as tokens that carry no loss, sampling goes on). `arguments_json` is the
 * call's "arguments" as JSON text ("" when absent), borrowed for the call. The tool answers with
 * reason_tool_result_set (its last call wins; none: an empty result; bytes that are not UTF-8
 * reach the model as U+FFFD) and returns 0, or non-zero for an error: the model then sees
 * "error: tool 'NAME' failed: TEXT" (TEXT: what was set, else "returned N"). Each call
 * runs on a thread of its own and may run concurrently with others: the tool must be
 * thread-safe. A call past the stage's tools.deadline_ms is abandoned (the model sees a time-out
 * error); user_data must stay valid until such a call returns. */
typedef struct reason_tool_result reason_tool_result; /* valid only during the call */
REASON_API void reason_tool_result_set(reason_tool_result* result, const char* text, size_t len);
typedef int (*reason_pipeline_tool_fn)(void* user_data, const char* arguments_json, reason_tool_result* result);

typedef struct reason_pipeline_tool {
  const char* name; /* the name configs and the model's calls use */
  reason_pipeline_tool_fn fn;
  void* user_data;
} reason_pipeline_tool;

typedef struct reason_pipeline_options {
  uint32_t struct_size;                   /* sizeof(reason_pipeline_options) */
  int progress;                           /* 1: progress bars and stage reports on stderr */
  const reason_pipeline_reward* rewards;  /* borrowed for the call; may be NULL */
  size_t n_rewards;
  const reason_pipeline_tool* tools;      /* added in 0.x; borrowed for the call; may be NULL */
  size_t n_tools;
  /* Added in 0.x. Data parallelism: the address of an MPI_Comm (`&comm`, cast) whose ranks each
   * call reason_pipeline_run with the same config and out_dir (a directory they all see); the
   * library duplicates it, so the program's own traffic on it is not disturbed, and needs MPI
   * initialised by the program. NULL: MPI_COMM_WORLD when the process was started by mpirun (the
   * library initialises MPI if the program has not), else this process alone. Each rank samples,
   * scores and trains on its share of every batch, rank 0 writes every file; the run equals one
   * process's to f32 rounding. A library built without MPI fails with REASON_ERR_UNSUPPORTED. */
  const void* mpi_comm;
  /* Added in 0.x: the byte distance between consecutive rewards[] and tools[] elements (0:
   * sizeof as this header declares them), so that a later reason_pipeline_reward or
   * reason_pipeline_tool can grow at its end and programs built with either header keep working. */
  size_t reward_stride;
  size_t tool_stride;
} reason_pipeline_options;
#define REASON_PIPELINE_OPTIONS_INIT {sizeof(reason_pipeline_options), 1, NULL, 0, NULL, 0, NULL, 0, 0}

/* Runs the pipeline of `config_path` into directory `out_dir`, or resumes it there (complete
 * stages are skipped, an interrupted one continues from its last checkpoint). Blocks until the
 * last stage is done. The config and every file it names are checked before any work starts
 * (errors name the config line and field, or the dataset file and line). On success
 * *summary_json (when summary_json is not NULL) receives OUT_DIR/summary.json's text, freed with
 * reason_free. opts may be NULL (defaults). Runs on the calling thread; one pipeline per
 * out_dir at a time.
 * Limits (REASON_ERR_INVALID_ARGUMENT naming the field, or the file and line): model, dataset
 * and stage names are plain identifiers (letters, digits, '_', '-', '.'; starting with a letter,
 * digit or '_'; at most 64 characters), since they name directories under out_dir; nothing is
 * written or removed outside out_dir (a symbolic link under out_dir that leads outside is
 * refused); JSONL dataset lines are at most 16 MiB, valid UTF-8, nested at most 256 levels. */
REASON_API reason_status reason_pipeline_run(const char* config_path, const char* out_dir,
                                             const reason_pipeline_options* opts, char** summary_json);

/* Only the checks of reason_pipeline_run (no output directory is touched). */
REASON_API reason_status reason_pipeline_check(const char* config_path, const reason_pipeline_options* opts);

/* Ends the MPI world the library started (MPI_Finalize), when a data-parallel call under mpirun
 * started it and it is still running; otherwise nothing (a process alone, a library built without
 * MPI, or a program that initialised MPI itself: finalising it is the program's job). The library
 * also does it at exit (atexit), but runtimes whose exit skips C atexit handlers (Go's os.Exit)
 * must call it before exiting, or mpirun reports that the process exited without calling
 * MPI_Finalize and fails the job. Call it once, from one thread, after the last call that may
 * communicate; MPI cannot start again, so data-parallel calls after it fail with
 * REASON_ERR_UNSUPPORTED. Always REASON_OK. */
REASON_API reason_status reason_mpi_finalize(void);

#ifdef __cplusplus
}
#endif

#endif /* REASON_H */
