// Internal to the tokenizer: GPT-2's reversible byte <-> printable-character alphabet used by
// byte-level BPE (bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF map to themselves; the other 68 bytes
// map to U+0100.. in byte order). Tables are built once at compile time.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace reason::tok {

struct ByteLevelAlphabet {
  std::array<char32_t, 256> byte_to_cp{};
  std::array<int16_t, 324> cp_to_byte{};  // -1 where the code point is not in the alphabet

  constexpr ByteLevelAlphabet() {
    for (auto& b : cp_to_byte) b = -1;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      byte_to_cp[b] = cp;
      cp_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
  // Byte of an alphabet character, or -1.
  constexpr int byte_of(char32_t cp) const { return cp < cp_to_byte.size() ? cp_to_byte[cp] : -1; }
};

inline constexpr ByteLevelAlphabet kByteLevel{};

// The alphabet string of raw bytes (e.g. " hi" -> "Ġhi").
std::string bytes_to_byte_level(std::string_view bytes);

// HF ByteLevel decoder for one token: the bytes its characters stand for, or the token's own
// UTF-8 unchanged when any character is outside the alphabet. `token` must be valid UTF-8.
std::string byte_level_to_bytes(std::string_view token);

}  // namespace reason::tok
