#include "tokenizer/byte_level.h"

#include "tokenizer/unicode_util.h"

namespace reason::tok {

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, kByteLevel.byte_to_cp[static_cast<uint8_t>(c)]);
  return out;
}

std::string byte_level_to_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    int b = kByteLevel.byte_of(next_code_point(token, i));
    if (b < 0) return std::string(token);
    out.push_back(static_cast<char>(b));
  }
  return out;
}

}  // namespace reason::tok
