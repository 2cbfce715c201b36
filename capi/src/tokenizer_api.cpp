// C ABI: tokenizer load/encode/decode/chat formatting.
#include <string>
#include <vector>

#include "capi_internal.h"
#include "handles.h"

using reason::capi::dup_array;
using reason::capi::dup_string;
using reason::capi::guard;

extern "C" {

REASON_API reason_status reason_tokenizer_load(reason_tokenizer** out, const char* path) {
  REASON_CHECK_ARG(out, "reason_tokenizer_load", "out is NULL");
  REASON_CHECK_ARG(path, "reason_tokenizer_load", "path is NULL");
  return guard("reason_tokenizer_load", [&] {
    auto t = std::make_unique<reason_tokenizer>();
    t->tok = reason::Tokenizer::load(path);
    *out = t.release();
  });
}

REASON_API void reason_tokenizer_free(reason_tokenizer* tok) { delete tok; }

REASON_API reason_status reason_tokenizer_encode(int32_t** out_ids, size_t* out_n, const reason_tokenizer* tok,
                                                 const char* text, size_t text_len, int add_special_tokens) {
  REASON_CHECK_ARG(out_ids && out_n, "reason_tokenizer_encode", "out_ids or out_n is NULL");
  REASON_CHECK_ARG(tok && tok->tok, "reason_tokenizer_encode", "tokenizer is NULL");
  REASON_CHECK_ARG(text || text_len == 0, "reason_tokenizer_encode", "text is NULL");
  return guard("reason_tokenizer_encode", [&] {
    std::vector<int32_t> ids = tok->tok->encode(std::string_view(text ? text : "", text_len), add_special_tokens != 0);
    int32_t* p = dup_array(ids.data(), ids.size());
    *out_ids = p;
    *out_n = ids.size();
  });
}

REASON_API reason_status reason_tokenizer_decode(char** out_text, const reason_tokenizer* tok, const int32_t* ids,
                                                 size_t n, int skip_special_tokens) {
  REASON_CHECK_ARG(out_text, "reason_tokenizer_decode", "out_text is NULL");
  REASON_CHECK_ARG(tok && tok->tok, "reason_tokenizer_decode", "tokenizer is NULL");
  REASON_CHECK_ARG(ids || n == 0, "reason_tokenizer_decode", "ids is NULL");
  return guard("reason_tokenizer_decode", [&] {
    std::string s = tok->tok->decode(std::span<const int32_t>(ids, n), skip_special_tokens != 0);
    *out_text = dup_string(s);
  });
}

REASON_API int32_t reason_tokenizer_vocab_size(const reason_tokenizer* tok) {
  return tok && tok->tok ? tok->tok->vocab_size() : -1;
}

REASON_API int32_t reason_tokenizer_eos_id(const reason_tokenizer* tok) {
  if (!tok || !tok->tok) return -1;
  auto e = tok->tok->eos_id();
  return e ? *e : -1;
}

REASON_API reason_status reason_tokenizer_apply_chat_ex(char** out_text, const reason_tokenizer* tok,
                                                        const reason_chat_message* messages, size_t message_stride,
                                                        size_t n_messages, int add_generation_prompt,
                                                        reason_chat_format format) {
  REASON_CHECK_ARG(out_text, "reason_tokenizer_apply_chat", "out_text is NULL");
  REASON_CHECK_ARG(tok && tok->tok, "reason_tokenizer_apply_chat", "tokenizer is NULL");
  REASON_CHECK_ARG(messages || n_messages == 0, "reason_tokenizer_apply_chat", "messages is NULL");
  return guard("reason_tokenizer_apply_chat", [&] {
    std::vector<reason::ChatMessage> msgs;
    for (size_t i = 0; i < n_messages; ++i) {
      const reason_chat_message m = reason::capi::array_element(messages, message_stride, i, sizeof(reason_chat_message), "message");
      if (!m.role || !m.content) reason::fail(reason::ErrorCode::InvalidArgument, "message {} has a NULL role or content", i);
      msgs.push_back({m.role, m.content});
    }
    reason::ChatFormat f = reason::ChatFormat::None;
    if (format == REASON_CHAT_DEEPSEEK_R1) f = reason::ChatFormat::DeepSeekR1;
    else if (format == REASON_CHAT_CHATML) f = reason::ChatFormat::ChatML;
    else if (format != REASON_CHAT_AUTO) reason::fail(reason::ErrorCode::InvalidArgument, "unknown chat format {}", int(format));
    *out_text = dup_string(reason::apply_chat_template(*tok->tok, msgs, add_generation_prompt != 0, f));
  });
}

REASON_API reason_status reason_tokenizer_apply_chat(char** out_text, const reason_tokenizer* tok,
                                                     const reason_chat_message* messages, size_t n_messages,
                                                     int add_generation_prompt, reason_chat_format format) {
  return reason_tokenizer_apply_chat_ex(out_text, tok, messages, 0, n_messages, add_generation_prompt, format);
}

}  // extern "C"
