// Internal to the tokenizer: UTF-8 validation and decoding, HF-compatible lossy conversion,
// Unicode predicates, and normalisation through utf8proc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace reason::tok {

inline constexpr size_t kNpos = static_cast<size_t>(-1);

// Offset of the first byte that does not start a well-formed UTF-8 sequence, or kNpos.
size_t find_invalid_utf8(std::string_view s);

// Length of the sequence whose lead byte is `b` (1 for ASCII and for invalid lead bytes).
inline size_t utf8_seq_len(uint8_t b) {
  if (b < 0xC0) return 1;
  if (b < 0xE0) return 2;
  if (b < 0xF0) return 3;
  return b < 0xF8 ? 4 : 1;
}

// Decodes the code point at s[i] of well-formed UTF-8 and advances i past it.
char32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t cp);

// Converts `in` to valid UTF-8 the way Rust's String::from_utf8_lossy does (each maximal
// ill-formed subpart becomes one U+FFFD) and appends it to `out`. With final=false an
// incomplete but so-far-valid sequence at the very end is not converted; the number of bytes
// consumed is returned so the caller can keep the rest for later.
size_t append_lossy_utf8(std::string& out, std::string_view in, bool final);

// Unicode White_Space property (what Rust's char::is_whitespace and Oniguruma's \s use).
bool is_white_space(char32_t cp);
// Letters and numbers (general categories L* and N*): Rust's char::is_alphanumeric, except
// for the few Other_Alphabetic marks it also accepts.
bool is_alphanumeric(char32_t cp);

enum class NormForm { NFC, NFD, NFKC, NFKD };
// Normalises valid UTF-8 text. ASCII input is returned unchanged without calling utf8proc.
std::string normalize(std::string_view s, NormForm form);

}  // namespace reason::tok
