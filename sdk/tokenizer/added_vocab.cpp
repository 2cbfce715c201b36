#include "tokenizer/added_vocab.h"

#include <algorithm>

#include "tokenizer/unicode_util.h"

namespace reason::tok {
namespace {

constexpr uint32_t kNone = 0;  // node 0 is the root, never a child

// Last code point of s[0, end) (valid UTF-8), and whether there is one.
bool last_cp(std::string_view s, size_t end, char32_t& cp) {
  if (end == 0) return false;
  size_t i = end - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  size_t j = i;
  cp = next_code_point(s, j);
  return true;
}

}  // namespace

uint32_t AddedTokenMatcher::child(uint32_t node, uint8_t byte) const {
  const auto& ch = nodes_[node].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), byte,
                             [](const std::pair<uint8_t, uint32_t>& e, uint8_t b) { return e.first < b; });
  return it != ch.end() && it->first == byte ? it->second : kNone;
}

void AddedTokenMatcher::add(std::string_view pattern, uint32_t token) {
  if (pattern.empty()) return;
  first_byte_[static_cast<uint8_t>(pattern[0])] = true;
  uint32_t node = 0;
  for (char c : pattern) {
    auto b = static_cast<uint8_t>(c);
    uint32_t next = child(node, b);
    if (next == kNone) {
      next = static_cast<uint32_t>(nodes_.size());
      nodes_.emplace_back();
      auto& ch = nodes_[node].children;
      auto it = std::lower_bound(ch.begin(), ch.end(), b,
                                 [](const std::pair<uint8_t, uint32_t>& e, uint8_t x) { return e.first < x; });
      ch.insert(it, {b, next});
    }
    node = next;
  }
  // Two tokens with the same pattern: the first one added keeps it.
  if (nodes_[node].token < 0) nodes_[node].token = static_cast<int32_t>(token);
}

void AddedTokenMatcher::split(std::string_view text, const std::vector<AddedToken>& tokens, bool parse_special,
                              std::vector<Piece>& out) const {
  const size_t n = text.size();
  size_t plain_start = 0;  // start of the pending plain-text piece (HF's start_offset)
  size_t pos = 0;
  while (pos < n) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    // Longest pattern starting at pos.
    int32_t best = -1;
    size_t best_end = 0;
    uint32_t node = 0;
    for (size_t i = pos; i < n; ++i) {
      node = child(node, static_cast<uint8_t>(text[i]));
      if (node == kNone) break;
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_end = i + 1;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    // A match consumes its span even when the rules below discard it (HF filters the
    // aho-corasick match stream after the fact).
    size_t start = pos, stop = best_end;
    pos = best_end;
    const AddedToken& tok = tokens[static_cast<size_t>(best)];
    if (!parse_special && tok.special) continue;
    if (tok.single_word) {
      char32_t cp;
      bool word_before = last_cp(text, start, cp) && is_alphanumeric(cp);
      bool word_after = false;
      if (stop < n) {
        size_t j = stop;
        word_after = is_alphanumeric(next_code_point(text, j));
      }
      if (word_before || word_after) continue;
    }
    if (start < plain_start) continue;  // inside whitespace an earlier rstrip absorbed
    if (tok.lstrip) {
      size_t s = start;
      char32_t cp;
      while (s > plain_start && last_cp(text, s, cp) && is_white_space(cp)) {
        size_t k = s - 1;
        while (k > 0 && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80) --k;
        s = k;
      }
      start = s;
    }
    if (tok.rstrip) {
      while (stop < n) {
        size_t j = stop;
        if (!is_white_space(next_code_point(text, j))) break;
        stop = j;
      }
    }
    if (plain_start < start) out.push_back({plain_start, start, -1});
    out.push_back({start, stop, best});
    plain_start = stop;
    pos = std::max(pos, stop);
  }
  if (plain_start < n) out.push_back({plain_start, n, -1});
}

}  // namespace reason::tok
