// Internal to the tokenizer: finding added tokens ("<|im_start|>", "<｜User｜>", "<think>") in
// text the way HF's AddedVocabulary does: leftmost-longest, non-overlapping matches over a byte
// trie, then the token's single_word / lstrip / rstrip rules.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace reason::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

class AddedTokenMatcher {
 public:
  // `pattern` is what is searched for (the content, or its normalised form); `token` indexes
  // the caller's AddedToken table.
  void add(std::string_view pattern, uint32_t token);
  bool empty() const { return nodes_.size() <= 1; }

  // One piece of the split text: either plain text [begin, end) or an added token covering
  // [begin, end) (its span includes whitespace absorbed by lstrip / rstrip).
  struct Piece {
    size_t begin, end;
    int32_t token;  // index into the AddedToken table, -1 for plain text
  };
  // Splits `text` into pieces (empty plain pieces are omitted). With parse_special=false a
  // match of a special token is ignored (left as plain text), like HF's encode_special_tokens.
  void split(std::string_view text, const std::vector<AddedToken>& tokens, bool parse_special,
             std::vector<Piece>& out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, uint32_t>> children;  // sorted by byte
    int32_t token = -1;
  };
  uint32_t child(uint32_t node, uint8_t byte) const;
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

}  // namespace reason::tok
