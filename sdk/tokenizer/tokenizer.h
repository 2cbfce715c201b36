// Byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`).
//
// Supported (what the Qwen2/2.5/3, DeepSeek-V3/R1 and Llama-3 files use):
//   model          BPE with vocab + merges ("a b" strings or ["a","b"] pairs), ignore_merges
//   added_tokens   matched in the raw text before normalisation (normalized=false) or in the
//                  normalised text (normalized=true), leftmost-longest, with lstrip / rstrip /
//                  single_word as HF's AddedVocabulary applies them
//   normalizer     null, NFC/NFD/NFKC/NFKD (utf8proc), Sequence of those
//   pre_tokenizer  Sequence of Split (Regex or String pattern, any behavior, invert) run by PCRE2,
//                  ending in ByteLevel (add_prefix_space, use_regex = the GPT-2 regex)
//   post_processor null, ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing,
//                  Sequence of those; tokenizer_config.json's add_bos_token / add_eos_token
//                  override it (what transformers' LlamaTokenizerFast does)
//   decoder        ByteLevel
// Anything else (Unigram, WordPiece, Metaspace, byte_fallback, ...) is rejected at load with
// ErrorCode::Unsupported naming the file and the field. Malformed files give ErrorCode::Format.
//
// Checked against HF `tokenizers` 0.23 (tests/fixtures/make_tokenizer_fixtures.py; also 3,300
// random strings and 1 MB of mixed text, identical ids). Known differences, all rare:
//   - Unicode versions. Regex classes (\p{L}, \p{S}, ...) are PCRE2's (10.42: Unicode 14)
//     patched with utf8proc's (2.8: Unicode 15); HF's Oniguruma knows Unicode 16, so text with
//     characters first assigned in Unicode 16 (e.g. U+1FABE) can split differently.
//   - NFC. HF's normaliser has old combining-class tables and leaves some marks assigned in
//     Unicode 14+ (e.g. U+1AC3, U+089D) out of canonical order; utf8proc orders them.
//   - decode() rejects unknown ids (HF skips them) and gives added tokens' content verbatim
//     (HF byte-decodes an added token whose characters all lie in the byte-level alphabet;
//     no added token of the Qwen or DeepSeek files is affected).
//
// Thread rules: a Tokenizer is immutable after load(); every const method may be called from
// any number of threads at once with no locking (encode keeps its scratch per call / per thread).
// A StreamDecoder is a small mutable object: one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace reason {

// Prompt format a model was trained with; detected from tokenizer_config.json's chat_template.
enum class ChatFormat {
  None,        // no template, or one we do not recognise
  DeepSeekR1,  // <｜begin▁of▁sentence｜>system<｜User｜>...<｜Assistant｜>...<｜end▁of▁sentence｜>
  ChatML,      // <|im_start|>role\ncontent<|im_end|>\n (Qwen2 / Qwen2.5 / Qwen3)
};

class Tokenizer {
 public:
  // Loads `path`: a directory holding tokenizer.json (and optionally tokenizer_config.json and
  // chat_template.jinja), the path of a tokenizer.json file (its directory is searched for
  // tokenizer_config.json), or a GGUF model file (its tokenizer.ggml.* metadata; gguf_vocab.h). Throws reason::Error: Io (missing/unreadable file), Format
  // (malformed JSON, wrong field types, merges naming unknown tokens, bad regex, ...) or
  // Unsupported (a model or component type this engine does not implement); the message names
  // the file and the field. The returned object is immutable and may be shared by any threads.
  static std::shared_ptr<const Tokenizer> load(const std::string& path);

  // Same as load() but from JSON text already in memory (e.g. a resource inside a Java jar).
  // `tokenizer_config_json` may be empty (no config). `source_name` only appears in errors.
  static std::shared_ptr<const Tokenizer> load_from_json(std::string_view tokenizer_json,
                                                         std::string_view tokenizer_config_json = {},
                                                         std::string_view source_name = "<memory>");

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text (UTF-8) -> token ids, equal to HF `tokenizers` Tokenizer.encode(text,
  // add_special_tokens).ids. add_special_tokens adds what the post-processor (or
  // tokenizer_config.json's add_bos_token/add_eos_token) adds, e.g. DeepSeek's BOS.
  // parse_special=false stops *special* added tokens (e.g. "<|im_start|>") in the text from
  // being recognised, so untrusted text cannot inject control tokens (HF's
  // split_special_tokens / encode_special_tokens=True); non-special added tokens still match.
  // Invalid UTF-8 throws Error(InvalidArgument) naming the byte offset (HF's Python API only
  // accepts valid Unicode strings, so there is no HF behaviour to copy).
  // Thread-safe; the result is owned by the caller.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false,
                              bool parse_special = true) const;

  // Token ids -> UTF-8 text. Byte sequences that are not valid UTF-8 (a lone half of a
  // multi-byte character) become U+FFFD exactly as HF's ByteLevel decoder does; added tokens
  // give their content verbatim; skip_special_tokens drops special added tokens.
  // An id outside the vocabulary throws Error(InvalidArgument) naming the id and its position
  // (HF silently skips it). Thread-safe.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The bytes one token stands for (not necessarily valid UTF-8 on its own: byte-level tokens
  // may hold part of a character). The view lives as long as this Tokenizer. Throws
  // InvalidArgument for an id outside the vocabulary.
  std::string_view token_bytes(int32_t id) const;

  // max id + 1 over the model vocab and the added tokens (ids in between that name no token
  // are rejected by decode / id_to_token / token_bytes).
  int32_t vocab_size() const;
  // Exact token string (byte-level form, e.g. "Ġhello", or an added token's content).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Inverse of token_to_id; throws InvalidArgument for an id that names no token.
  std::string id_to_token(int32_t id) const;
  // True for added tokens marked "special": true. False for any other id, valid or not.
  bool is_special(int32_t id) const;

  // From tokenizer_config.json (bos_token / eos_token / pad_token as a string or
  // {"content": ...}); nullopt when absent or null.
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;

  // Detected from the chat template: mentions <｜User｜> -> DeepSeekR1, <|im_start|> -> ChatML.
  ChatFormat chat_format() const;
  // The raw Jinja chat template text ("" when none). Informational: apply_chat_template()
  // implements the detected formats natively and does not run Jinja.
  const std::string& chat_template() const;

  // Where this tokenizer was loaded from (for messages).
  const std::string& source() const;

  struct Impl;  // private; defined in tokenizer_impl.h

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class StreamDecoder;
};

// Incremental detokenizer for streaming generation: push() ids one at a time and get back the
// text that is complete so far. Never emits a partial UTF-8 sequence: bytes of a character
// split over several tokens (emoji, CJK) are held until the character is complete. The
// concatenation of every push() and the final flush() equals tok.decode(all ids).
// Holds a reference to `tok`, which must outlive it. Not thread-safe: one thread at a time.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special_tokens = false);
  // Returns the newly completed text (possibly empty). Throws InvalidArgument for an id
  // outside the vocabulary, leaving the decoder unchanged.
  std::string push(int32_t id);
  // Returns whatever is still held (an incomplete sequence becomes U+FFFD, as decode() would
  // render it) and resets the decoder for reuse.
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;  // bytes not yet emitted: at most one incomplete UTF-8 sequence
};

}  // namespace reason
