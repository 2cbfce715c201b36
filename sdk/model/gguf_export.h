// Writing a model as a GGUF file llama.cpp loads: the reverse of gguf_model.h, laid out as
// llama.cpp's convert_hf_to_gguf.py lays it out (Llama's Q/K rows permuted, experts stacked,
// Llama 3 rope scaling as rope_freqs.weight, DeepSeek's kv_b split into k_b / v_b with the MLA key
// lengths), with the tokenizer as tokenizer.ggml.* and the chat template. `reason convert DIR
// --out FILE.gguf --type T` runs it. Call with no step or generation running on the model.
#pragma once
#include <string>

#include "model/model.h"

namespace reason {

// Type of the 2-D and 3-D weights (norms, biases and the router's bias stay F32, as llama.cpp).
// Q8_0 needs rows that are whole blocks of 32; a weight whose rows are not is written F16, as
// llama.cpp's converter falls back. Q4_K_M is llama-quantize's mix (model/quant_scheme.h: Q4_K,
// Q6_K for the LM head and for attn_v / ffn_down in the layers use_more_bits picks; MoE routers
// stay F32); rows that are not whole blocks of 256 fall back as llama.cpp's (Q4_K -> Q5_0,
// Q6_K -> Q8_0, then F16).
enum class GgufOutType { F32, F16, BF16, Q8_0, Q4_K_M };
// "f32", "f16", "bf16", "q8_0", "q4_k" ("q4_k_m"); InvalidArgument naming the value otherwise.
GgufOutType parse_gguf_out_type(const std::string& name);

// Writes `m` to `path` atomically. The tokenizer comes from the files the model was loaded with
// (tokenizer.json, tokenizer_config.json, chat_template.jinja in its directory, or a GGUF's
// metadata). Throws Unsupported naming what GGUF cannot hold (a tokenizer that is not
// byte-level BPE, a pre-tokenizer GGUF has no name for, Qwen-MoE dense layers, YaRN with
// mscale != mscale_all_dim, ...), Io for write failures (nothing is left at `path` then).
void write_gguf_model(const Model& m, const std::string& path, GgufOutType type);

}  // namespace reason
