// The `reason` command-line tool: generate, tokenize, score, info (here), pipeline and eval
// (pipeline_commands.cpp).
// Errors are one line on stderr ("reason: error: ...") with exit status 1.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "infer/generator.h"
#include "infer/perplexity.h"
#include "io/gguf.h"
#include "io/json_file.h"
#include "io/mapped_file.h"
#include "pipeline_commands.h"
#include "serve/http_server.h"
#include "model/generation_config.h"
#include "model/gguf_export.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "train/checkpoint.h"
#include "reason/kernels/backend.h"
#include "reason/kernels/cpu_isa.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace reason;
using nlohmann::json;

namespace {

struct Common {
  int threads = 0;
  std::string dtype = "f32";
  std::string kv_dtype = "auto";
  std::string device = "cpu";
  std::string quantize = "stored";
  std::string adapter;
};

LoadOptions load_options(const Common& c) {
  LoadOptions lo;
  lo.device = parse_device(c.device);
  if (c.dtype == "f32")
    lo.compute_dtype = DType::F32;
  else if (c.dtype == "bf16")
    lo.compute_dtype = DType::BF16;
  else
    fail(ErrorCode::InvalidArgument, "--dtype must be f32 or bf16 (got '{}')", c.dtype);
  if (c.kv_dtype == "f32")
    lo.kv_dtype = DType::F32;
  else if (c.kv_dtype == "bf16")
    lo.kv_dtype = DType::BF16;
  else if (c.kv_dtype != "auto")
    fail(ErrorCode::InvalidArgument, "--kv-dtype must be auto, f32 or bf16 (got '{}')", c.kv_dtype);
  lo.quantize = parse_weight_quant(c.quantize);
  lo.adapter = c.adapter;
  return lo;
}


// The CPU backend's instruction-set path (REASON_CPU_ISA forces one) and its threads.
json cpu_json() {
  return {{"isa", kernels::cpu_isa_name(kernels::cpu_isa())},
          {"isa_detail", kernels::cpu_isa_description()},
          {"threads", kernels::cpu_threads()}};
}

json info_json(const Model& m) {
  const ModelConfig& c = m.config();
  json j;
  j["architecture"] = c.architecture;
  if (const LoraSpec* a = m.adapter()) {
    const size_t tensors = m.adapter_parameters().size();
    int64_t n = 0;
    for (const auto& [name, t] : m.adapter_parameters()) n += t.numel();
    j["adapter"] = {{"modules", tensors / 2}, {"parameters", n}, {"r", a->r}, {"lora_alpha", a->alpha}, {"use_rslora", a->use_rslora}};
  }
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rope_type"] = c.rope_scaling.type;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["stored_dtype"] = c.torch_dtype;
  j["compute_dtype"] = kernels::dtype_name(m.compute_dtype());
  {
    std::map<std::string, int64_t> by_type;  // weights by storage type (quantised or not; an x8 layout by its block format)
    size_t bytes = 0;
    for (const auto& [name, t] : m.parameters()) {
      by_type[kernels::dtype_name(kernels::dtype_block_format(t.dtype()))] += t.numel();
      bytes += t.nbytes();
    }
    j["weights_by_dtype"] = by_type;
    j["weight_bytes"] = bytes;
  }
  j["parameters"] = m.n_params();
  j["kv_cache_dtype"] = kernels::dtype_name(m.kv_dtype());
  j["kv_cache_bytes_per_token"] = m.kv_bytes_per_token();
  j["device"] = m.backend().name();
  j["tokenizer"] = !m.tokenizer() ? "none" : m.derived_files().empty() ? "tokenizer.json" : "gguf metadata";
  if (c.n_experts > 0) {
    int64_t moe_layers = 0;
    for (int64_t l = 0; l < c.n_layers; ++l) moe_layers += c.is_moe_layer(l) ? 1 : 0;
    j["moe"] = {{"experts", c.n_experts},
                {"experts_per_token", c.n_experts_per_tok},
                {"moe_layers", moe_layers},
                {"expert_intermediate_size", c.moe_intermediate_size},
                {"shared_expert_intermediate_size",
                 c.n_shared_experts ? c.n_shared_experts * c.moe_intermediate_size : c.shared_expert_intermediate_size},
                {"routing", c.sigmoid_routing ? "sigmoid, selection bias, grouped" : "softmax"},
                {"n_group", c.n_group},
                {"topk_group", c.topk_group},
                {"norm_topk_prob", c.norm_topk_prob},
                {"routed_scaling_factor", c.routed_scaling_factor}};
  }
  if (c.mla)
    j["mla"] = {{"q_lora_rank", c.q_lora_rank}, {"kv_lora_rank", c.kv_lora_rank}, {"qk_nope_head_dim", c.qk_nope_head_dim},
                {"qk_rope_head_dim", c.qk_rope_head_dim}, {"v_head_dim", c.v_head_dim},
                {"kv_cache_values_per_token_per_layer", c.kv_lora_rank + c.qk_rope_head_dim}};
  if (c.fp8) j["fp8_block_scaled_weights"] = "dequantised at load";
  if (c.num_nextn_predict_layers) j["mtp_modules_loaded"] = m.n_mtp_modules();
  if (auto t = m.tokenizer()) j["chat_format"] = t->chat_format() == ChatFormat::DeepSeekR1 ? "deepseek-r1"
                                                 : t->chat_format() == ChatFormat::ChatML ? "chatml" : "none";
  return j;
}

constexpr const char* kQuantizeHelp =
    "matmul weights: stored (a GGUF file's quantised tensors as they are), none (dequantised), q8_0 or q4_k "
    "(quantise float weights at load, as llama.cpp's Q8_0 / Q4_K_M files)";
constexpr const char* kAdapterHelp =
    "a LoRA adapter directory in PEFT's format (adapter_config.json + adapter_model.safetensors), run with the base unmerged";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"reason: run reasoning language models (libreason " LIBREASON_VERSION ")"};
  app.require_subcommand(1);
  Common common;
  app.add_option("--threads", common.threads, "CPU threads (default: all cores or $REASON_NUM_THREADS)");
  bool allow_unknown_config = false;
  app.add_flag("--allow-unknown-config-fields", allow_unknown_config,
               "load config.json files with fields the engine does not know (refused by default: they may change the math)");

  // generate
  auto* gen = app.add_subcommand("generate", "sample completions for a prompt");
  std::string model_dir, prompt;
  bool chat = false, as_json = false, r1 = false;
  SamplingParams sp;
  int n = 1;
  gen->add_option("--model", model_dir,
                  "Hugging Face model directory (its generation_config.json supplies sampling defaults)")->required();
  gen->add_option("--prompt", prompt, "prompt text")->required();
  gen->add_flag("--chat", chat, "format the prompt as a user turn with the model's chat template");
  gen->add_flag("--r1", r1, "DeepSeek-R1's recommended sampling (temperature 0.6, top-p 0.95)");
  gen->add_option("--temperature", sp.temperature, "0 = greedy")->capture_default_str();
  gen->add_option("--top-p", sp.top_p)->capture_default_str();
  gen->add_option("--top-k", sp.top_k, "0 = off")->capture_default_str();
  gen->add_option("--min-p", sp.min_p)->capture_default_str();
  gen->add_option("--repetition-penalty", sp.repetition_penalty)->capture_default_str();
  gen->add_option("--max-tokens", sp.max_new_tokens)->capture_default_str();
  gen->add_option("--seed", sp.seed)->capture_default_str();
  gen->add_option("--stop", sp.stop_strings, "stop string (repeatable)");
  gen->add_option("--n", n, "number of samples")->capture_default_str();
  gen->add_option("--dtype", common.dtype, "compute dtype: f32 or bf16")->capture_default_str();
  gen->add_option("--kv-dtype", common.kv_dtype, "KV cache dtype: auto (the compute dtype), f32 or bf16")->capture_default_str();
  gen->add_option("--device", common.device, "where the model runs: cpu or cuda")->capture_default_str();
  gen->add_option("--quantize", common.quantize, kQuantizeHelp)->capture_default_str();
  gen->add_option("--adapter", common.adapter, kAdapterHelp);
  gen->add_flag("--json", as_json, "print completions with token ids and logprobs as JSON");

  // tokenize
  auto* tokc = app.add_subcommand("tokenize", "print the token ids of a text as a JSON array");
  std::string tok_dir, text;
  bool add_special = false;
  tokc->add_option("--tokenizer", tok_dir, "directory with tokenizer.json, or the file")->required();
  tokc->add_option("--text", text)->required();
  tokc->add_flag("--add-special", add_special, "add the tokens the post-processor adds (e.g. BOS)");

  // score
  auto* scorec = app.add_subcommand("score", "print per-token logprobs of a text as JSON");
  scorec->add_option("--model", model_dir)->required();
  scorec->add_option("--text", text)->required();
  scorec->add_option("--dtype", common.dtype)->capture_default_str();
  scorec->add_option("--kv-dtype", common.kv_dtype, "KV cache dtype: auto (the compute dtype), f32 or bf16")->capture_default_str();
  scorec->add_option("--device", common.device, "where the model runs: cpu or cuda")->capture_default_str();
  scorec->add_option("--quantize", common.quantize, kQuantizeHelp)->capture_default_str();
  scorec->add_option("--adapter", common.adapter, kAdapterHelp);

  // perplexity
  auto* pplc = app.add_subcommand("perplexity", "perplexity of a text file, computed as llama.cpp's llama-perplexity does");
  std::string ppl_file;
  int64_t ppl_ctx = 512, ppl_chunks = -1, ppl_batch = 512;
  pplc->add_option("--model", model_dir)->required();
  pplc->add_option("--file", ppl_file, "UTF-8 text file")->required();
  pplc->add_option("--ctx", ppl_ctx, "tokens per chunk (llama-perplexity's -c); the second half of each is scored")->capture_default_str();
  pplc->add_option("--chunks", ppl_chunks, "at most this many chunks (-1: all)")->capture_default_str();
  pplc->add_option("--batch", ppl_batch,
                   "tokens per forward call; <= 8 runs quantised weights on int8-rounded activations, as llama.cpp does")
      ->capture_default_str();
  pplc->add_option("--dtype", common.dtype)->capture_default_str();
  pplc->add_option("--device", common.device, "where the model runs: cpu or cuda")->capture_default_str();
  pplc->add_option("--quantize", common.quantize, kQuantizeHelp)->capture_default_str();
  pplc->add_option("--adapter", common.adapter, kAdapterHelp);

  // info
  auto* infoc = app.add_subcommand("info", "print the CPU path in use and, with --model, a model's configuration and sizes");
  infoc->add_option("--model", model_dir, "model directory (without it only the CPU path is printed)");
  infoc->add_option("--dtype", common.dtype)->capture_default_str();
  infoc->add_option("--kv-dtype", common.kv_dtype, "KV cache dtype: auto (the compute dtype), f32 or bf16")->capture_default_str();
  infoc->add_option("--device", common.device, "where the model runs: cpu or cuda")->capture_default_str();
  infoc->add_option("--quantize", common.quantize, kQuantizeHelp)->capture_default_str();
  infoc->add_option("--adapter", common.adapter, kAdapterHelp);
  bool routing = false;
  std::string routing_prompt = "The quick brown fox jumps over the lazy dog. 12 + 30 = 42.";
  infoc->add_flag("--routing", routing, "MoE models: tokens routed to each expert of each layer for --prompt");
  infoc->add_option("--prompt", routing_prompt, "prompt for --routing")->capture_default_str();

  // template
  auto* tmplc = app.add_subcommand("template", "print a conversation rendered with the model's own chat template, exactly");
  std::string tmpl_messages;
  std::vector<std::string> tmpl_vars;
  bool no_gen_prompt = false;
  tmplc->add_option("--model", model_dir, "model directory (tokenizer.json + tokenizer_config.json suffice) or .gguf file")->required();
  tmplc->add_option("--messages", tmpl_messages, "JSON file: an OpenAI-style array of {role, content} messages")->required();
  tmplc->add_flag("--no-generation-prompt", no_gen_prompt, "do not end with the assistant's turn header");
  tmplc->add_option("--var", tmpl_vars, "NAME=JSON: another template variable (e.g. enable_thinking=false)");

  // convert
  auto* convc = app.add_subcommand("convert", "convert a GGUF file to a Hugging Face directory, or a directory to a GGUF file");
  std::string conv_src, conv_out, conv_type = "f16";
  convc->add_option("source", conv_src, "a .gguf file or a Hugging Face model directory")->required();
  convc->add_option("--out", conv_out, "the directory (from GGUF) or .gguf file (from a directory) to write")->required();
  convc->add_option("--type", conv_type, "GGUF weight type: f32, f16, bf16, q8_0 or q4_k (norms stay f32)")->capture_default_str();

  // quantize
  auto* quantc = app.add_subcommand(
      "quantize", "write a quantised GGUF file llama.cpp loads, with llama-quantize's choice of type per tensor");
  std::string quant_src, quant_out, quant_type;
  quantc->add_option("source", quant_src, "a Hugging Face model directory or an unquantised .gguf file")->required();
  quantc->add_option("--out", quant_out, "the .gguf file to write")->required();
  quantc->add_option("--type", quant_type, "q4_k (llama.cpp's Q4_K_M) or q8_0")->required();

  // merge
  auto* mergec = app.add_subcommand("merge", "merge a LoRA adapter into its base model and write a full checkpoint");
  std::string merge_out;
  mergec->add_option("--model", model_dir, "the base model directory or .gguf file")->required();
  mergec->add_option("--adapter", common.adapter, kAdapterHelp)->required();
  mergec->add_option("--out", merge_out, "the Hugging Face directory to write (must not exist)")->required();

  // serve
  auto* servec = app.add_subcommand("serve", "an OpenAI-compatible HTTP server (chat and text completions, streaming)");
  serve::ServerOptions serve_opts;
  serve::ServeEngine::Options serve_engine;
  std::string api_key_file, served_name;
  int32_t serve_max_tokens = 4096;
  servec->add_option("--model", model_dir, "model directory or .gguf file")->required();
  servec->add_option("--host", serve_opts.host, "address to listen on (loopback by default)")->capture_default_str();
  servec->add_option("--port", serve_opts.port)->capture_default_str();
  servec->add_option("--max-batch", serve_engine.max_batch, "sequences decoded together (continuous batching)")->capture_default_str();
  servec->add_option("--max-queue", serve_engine.max_queue, "requests waiting beyond the batch before 429")->capture_default_str();
  servec->add_option("--max-tokens", serve_max_tokens, "largest max_tokens a request may ask for")->capture_default_str();
  servec->add_option("--max-body-bytes", serve_opts.max_body_bytes, "largest request body (413 above)")->capture_default_str();
  servec->add_option("--api-key-file", api_key_file, "require `Authorization: Bearer KEY` with the key in this file");
  servec->add_option("--served-model-name", served_name, "the model id clients use (default: the directory's name)");
  servec->add_option("--drain-timeout", serve_opts.drain_timeout_s, "seconds SIGTERM waits for requests in flight")->capture_default_str();
  servec->add_option("--dtype", common.dtype, "compute dtype: f32 or bf16")->capture_default_str();
  servec->add_option("--kv-dtype", common.kv_dtype, "KV cache dtype: auto (the compute dtype), f32 or bf16")->capture_default_str();
  servec->add_option("--device", common.device, "where the model runs: cpu or cuda")->capture_default_str();
  servec->add_option("--quantize", common.quantize, kQuantizeHelp)->capture_default_str();
  servec->add_option("--adapter", common.adapter, kAdapterHelp);

  cli::PipelineCommands pipeline_cmds(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (common.threads > 0) kernels::set_cpu_threads(common.threads);
    if (allow_unknown_config) ::setenv("REASON_ALLOW_UNKNOWN_CONFIG", "1", 1);  // every model any command loads
    if (pipeline_cmds.run()) {
      // pipeline run|check or eval
    } else if (*gen) {
      // generation_config.json's defaults where the command line sets nothing (transformers'
      // precedence: explicit arguments, then the model's generation config); --r1 on top.
      const GenerationDefaults gd = read_generation_defaults(model_dir);
      auto unset = [&](const char* opt) { return gen->get_option(opt)->count() == 0; };
      if (unset("--temperature")) {
        if (gd.temperature) sp.temperature = float(*gd.temperature);
        if (gd.do_sample && !*gd.do_sample) sp.temperature = 0.0f;
      }
      if (gd.top_p && unset("--top-p")) sp.top_p = float(*gd.top_p);
      if (gd.top_k && unset("--top-k")) sp.top_k = int32_t(std::min<int64_t>(*gd.top_k, INT32_MAX));
      if (gd.min_p && unset("--min-p")) sp.min_p = float(*gd.min_p);
      if (gd.repetition_penalty && unset("--repetition-penalty")) sp.repetition_penalty = float(*gd.repetition_penalty);
      if (gd.max_new_tokens && unset("--max-tokens")) sp.max_new_tokens = int32_t(std::min<int64_t>(*gd.max_new_tokens, INT32_MAX));
      if (r1) {
        sp.temperature = 0.6f;
        sp.top_p = 0.95f;
      }
      if (n < 1) fail(ErrorCode::InvalidArgument, "--n must be >= 1");
      auto m = Model::load(model_dir, load_options(common));
      auto tok = m->require_tokenizer();
      std::vector<int32_t> ids;
      if (chat) {
        std::vector<ChatMessage> msgs{{"user", prompt}};
        ids = tok->encode(apply_chat_template(*tok, msgs, true, ChatFormat::None), false);
      } else {
        ids = tok->encode(prompt, true);
      }
      std::vector<GenRequest> reqs(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        reqs[size_t(i)].prompt = ids;
        reqs[size_t(i)].params = sp;
        reqs[size_t(i)].params.seed = sp.seed + uint64_t(i);
      }
      TokenCallback cb;
      if (n == 1 && !as_json)
        cb = [](size_t, int32_t, float, std::string_view piece) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
          return true;
        };
      auto res = generate(*m, reqs, cb);
      if (as_json) {
        json out = json::array();
        for (const auto& r : res)
          out.push_back({{"text", r.text}, {"token_ids", r.tokens}, {"logprobs", r.logprobs},
                         {"finish_reason", r.finish == FinishReason::Stop ? "stop" : r.finish == FinishReason::Length ? "length" : "callback"}});
        std::cout << out.dump(2) << "\n";
      } else if (n == 1) {
        std::cout << "\n";
      } else {
        for (size_t i = 0; i < res.size(); ++i) std::cout << "--- sample " << i << " ---\n" << res[i].text << "\n";
      }
    } else if (*tokc) {
      auto tok = Tokenizer::load(tok_dir);
      std::cout << json(tok->encode(text, add_special)).dump() << "\n";
    } else if (*scorec) {
      auto m = Model::load(model_dir, load_options(common));
      auto tok = m->require_tokenizer();
      auto ids = tok->encode(text, true);
      if (ids.size() < 2) fail(ErrorCode::InvalidArgument, "--text must encode to at least 2 tokens (got {})", ids.size());
      auto lp = score(*m, ids);
      json toks = json::array();
      for (size_t t = 1; t < ids.size(); ++t) {
        std::vector<int32_t> one{ids[t]};
        toks.push_back({{"id", ids[t]}, {"token", tok->decode(one)}, {"logprob", lp[t - 1]}});
      }
      double total = 0;
      for (float v : lp) total += v;
      std::cout << json{{"tokens", toks}, {"sum_logprob", total}}.dump(2) << "\n";
    } else if (*pplc) {
      auto m = Model::load(model_dir, load_options(common));
      auto tok = m->require_tokenizer();
      const auto text_file = MappedFile::open(ppl_file);
      const std::string_view body(reinterpret_cast<const char*>(text_file->data()), text_file->size());
      if (find_invalid_utf8(body) != std::string_view::npos) fail(ErrorCode::InvalidArgument, "--file {}: not UTF-8 text", ppl_file);
      const std::vector<int32_t> ids = tok->encode(body, true);
      PerplexityOptions po;
      po.n_ctx = ppl_ctx;
      po.max_chunks = ppl_chunks;
      po.batch = ppl_batch;
      // llama-perplexity puts BOS first in every chunk when the tokenizer adds one
      const std::optional<int32_t> bos = tok->bos_id();
      const std::vector<int32_t> probe = tok->encode("a", true);
      po.replace_bos = bos && !probe.empty() && probe.front() == *bos;
      po.bos_id = bos.value_or(0);
      const PerplexityResult r = perplexity(*m, ids, po);
      const std::optional<DType> q = m->quantized_weights();
      std::cout << json{{"ppl", r.ppl}, {"nll", r.nll}, {"tokens_scored", r.tokens}, {"chunks", r.chunks},
                        {"n_ctx", ppl_ctx}, {"text_tokens", ids.size()}, {"running_ppl", r.running_ppl},
                        {"quantized_weights", q ? kernels::dtype_name(*q) : "none"}}.dump(2) << "\n";
    } else if (*tmplc) {
      auto tok = Tokenizer::load(model_dir);
      // ordered: tools, tool calls and arguments keep their key order, as Python dicts do
      nlohmann::ordered_json messages = read_ordered_json_file(tmpl_messages, size_t(64) << 20);
      if (messages.is_object() && messages.contains("messages")) messages = messages["messages"];
      nlohmann::ordered_json extra = nlohmann::ordered_json::object();
      for (const std::string& v : tmpl_vars) {
        const size_t eq = v.find('=');
        if (eq == std::string::npos || eq == 0) fail(ErrorCode::InvalidArgument, "--var {}: expected NAME=JSON", v);
        try {
          extra[v.substr(0, eq)] = parse_ordered_json_text(v.substr(eq + 1), "--var " + v.substr(0, eq));
        } catch (const Error& e) {
          fail(ErrorCode::InvalidArgument, "--var {}: the value is not JSON (strings need quotes): {}", v, e.what());
        }
      }
      const std::string out = render_chat_template(*tok, messages, !no_gen_prompt, extra);
      std::fwrite(out.data(), 1, out.size(), stdout);
    } else if (*convc) {
      // f32 compute keeps every stored value exact (bf16/f16 weights are widened, then written back)
      LoadOptions lo;
      lo.compute_dtype = DType::F32;
      lo.quantize = WeightQuant::None;  // quantised GGUF tensors dequantised: safetensors holds floats
      if (is_gguf_file(conv_src)) {
        if (std::filesystem::exists(conv_out))
          fail(ErrorCode::InvalidArgument, "--out {} already exists; choose a new directory", conv_out);
        auto m = Model::load(conv_src, lo);
        SaveOptions so;
        so.model_only = true;
        save_checkpoint(conv_out, *m, nullptr, {}, so);
      } else {
        const GgufOutType type = parse_gguf_out_type(conv_type);
        if (std::filesystem::is_directory(conv_out))
          fail(ErrorCode::InvalidArgument, "--out {} is a directory; converting a directory writes a .gguf file", conv_out);
        auto m = Model::load(conv_src, lo);
        write_gguf_model(*m, conv_out, type);
      }
      std::cout << json{{"source", conv_src}, {"out", conv_out}}.dump() << "\n";
    } else if (*quantc) {
      const GgufOutType type = parse_gguf_out_type(quant_type);
      if (type != GgufOutType::Q4_K_M && type != GgufOutType::Q8_0)
        fail(ErrorCode::InvalidArgument, "--type must be q4_k or q8_0 (got '{}'; reason convert writes float types)", quant_type);
      if (std::filesystem::is_directory(quant_out))
        fail(ErrorCode::InvalidArgument, "--out {} is a directory; quantize writes a .gguf file", quant_out);
      // Quantising quantised values twice loses precision twice (llama-quantize refuses it too).
      if (is_gguf_file(quant_src)) {
        const auto file = GgufFile::open(quant_src);  // (kept alive: tensors() refers into it)
        for (const GgufFile::Tensor& t : file->tensors())
          if (t.type != uint32_t(GgmlType::F32) && t.type != uint32_t(GgmlType::F16) && t.type != uint32_t(GgmlType::BF16))
            fail(ErrorCode::InvalidArgument, "{}: tensor '{}' is already {}; quantise from the float checkpoint",
                 quant_src, t.name, ggml_type_info(t.type)->name);
      }
      LoadOptions lo;
      lo.quantize = WeightQuant::None;
      auto m = Model::load(quant_src, lo);
      write_gguf_model(*m, quant_out, type);
      std::cout << json{{"source", quant_src}, {"out", quant_out}, {"type", quant_type}}.dump() << "\n";
    } else if (*mergec) {
      if (std::filesystem::exists(merge_out))
        fail(ErrorCode::InvalidArgument, "--out {} already exists; choose a new directory", merge_out);
      LoadOptions lo;  // f32, dequantised: the merged weights are exact sums, written in the base's stored dtypes
      lo.compute_dtype = DType::F32;
      lo.quantize = WeightQuant::None;
      lo.adapter = common.adapter;
      auto m = Model::load(model_dir, lo);
      const size_t n_adapted = m->adapter_parameters().size() / 2;
      m->merge_adapter();
      SaveOptions so;
      so.model_only = true;
      save_checkpoint(merge_out, *m, nullptr, {}, so);
      std::cout << json{{"model", model_dir}, {"adapter", common.adapter}, {"out", merge_out}, {"merged_modules", n_adapted}}.dump()
                << "\n";
    } else if (*infoc && model_dir.empty()) {
      std::cout << json{{"cpu", cpu_json()}}.dump(2) << "\n";
    } else if (*servec) {
      serve::ApiContext ctx;
      ctx.model = Model::load(model_dir, load_options(common));
      ctx.model->require_tokenizer();
      ctx.defaults = read_generation_defaults(model_dir);
      ctx.limits.max_tokens = serve_max_tokens;
      ctx.model_id = !served_name.empty() ? served_name : std::filesystem::path(model_dir).filename().string();
      if (ctx.model_id.empty()) ctx.model_id = std::filesystem::path(model_dir).parent_path().filename().string();
      if (!api_key_file.empty()) serve_opts.api_key = serve::read_api_key(api_key_file);
      if (serve_engine.max_batch < 1 || serve_engine.max_queue < 0 || serve_max_tokens < 1)
        fail(ErrorCode::InvalidArgument, "serve: --max-batch and --max-tokens must be >= 1, --max-queue >= 0");
      return serve::serve_forever(ctx, serve_engine, serve_opts);
    } else if (*infoc) {
      auto m = Model::load(model_dir, load_options(common));
      json j = info_json(*m);
      j["generation_defaults"] = to_json(read_generation_defaults(model_dir));
      j["cpu"] = cpu_json();
      if (routing) {
        auto tok = m->require_tokenizer();
        auto ids = tok->encode(routing_prompt, true);
        auto load = expert_load(*m, ids);
        const int64_t E = m->config().n_experts;
        json layers = json::object();
        for (int64_t l = 0; l < m->config().n_layers; ++l) {
          if (!m->config().is_moe_layer(l)) continue;
          layers[std::to_string(l)] = std::vector<int64_t>(load.begin() + l * E, load.begin() + (l + 1) * E);
        }
        j["routing"] = {{"prompt_tokens", ids.size()}, {"tokens_per_expert_by_layer", layers}};
      }
      std::cout << j.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reason: error: %s\n", e.what());
    std::fflush(stderr);
    reason::abort_job_if_distributed(1);  // one rank of an mpirun job: end the others now
    return 1;
  }
  return 0;
}
