// The tokenizer of a GGUF file (tokenizer.ggml.* metadata) as the Hugging Face files a
// Tokenizer loads: tokenizer.json and tokenizer_config.json. Pure functions of an immutable
// GgufFile: safe from any thread.
//
// Supported: tokenizer.ggml.model "gpt2" (byte-level BPE: the vocabulary of Qwen, DeepSeek-V3/R1,
// Llama 3 and SmolLM files) with tokenizer.ggml.pre naming one of the pre-tokenizers llama.cpp
// defines for them (gpt-2, llama-bpe / llama3 / llama-v3 / smaug-bpe / dbrx / falcon3, qwen2 /
// deepseek-r1-qwen, deepseek-v3, smollm); the split regexes are llama.cpp's and transformers'
// for those names. Tokens of type CONTROL become special added tokens and USER_DEFINED ones
// plain added tokens (matched whole in the text, as llama.cpp does); a byte that has no token is
// dropped (no unk_token), as llama.cpp's BPE tokenizer does. Anything else (SentencePiece
// "llama", WordPiece "bert", unknown pre-tokenizers) is refused with Unsupported naming it.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace reason {

struct GgufTokenizerFiles {
  std::string tokenizer_json;         // tokenizer.json text
  std::string tokenizer_config_json;  // tokenizer_config.json text: bos/eos/pad tokens, add_bos_token,
                                      // add_eos_token, chat_template (tokenizer.chat_template)
};

// Throws reason::Error: Format (a key of the wrong type, token ids out of range, array lengths
// that disagree), Unsupported (see above).
GgufTokenizerFiles gguf_tokenizer_files(const GgufFile& f);

// The reverse, for writing a GGUF: tokenizer.ggml.* metadata from a tokenizer.json and its
// tokenizer_config.json (bos/eos/pad tokens, add_bos_token), with the vocabulary padded to the
// model's vocab_size with [PADn] tokens of type UNUSED (as llama.cpp's converter does). Added
// tokens become CONTROL (special) or USER_DEFINED tokens. Throws Unsupported for a model other
// than BPE or a pre-tokenizer that matches none of the names above (gguf_pre_tokenizer_name),
// Format for ids outside vocab_size. `src` names the files in messages.
std::vector<std::pair<std::string, GgufValue>> gguf_tokenizer_metadata(const nlohmann::json& tokenizer_json,
                                                                       const nlohmann::json& tokenizer_config,
                                                                       const std::string& chat_template, int64_t vocab_size,
                                                                       const std::string& src);

// The tokenizer.ggml.pre name whose split rules equal this tokenizer.json pre_tokenizer (the
// regexes and byte-level step; trim_offsets ignored), or Unsupported.
std::string gguf_pre_tokenizer_name(const nlohmann::json& pre_tokenizer_json, const std::string& src);

}  // namespace reason
