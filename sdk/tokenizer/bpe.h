// Internal to the tokenizer: the byte-level BPE merge step. A word (the bytes of one
// pre-token) starts as one symbol per byte and pairs are merged lowest rank first, leftmost
// first among equal ranks (what HF's BPE::merge_word does), using a min-heap over a linked list
// of symbols: O(n log n) per word.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace reason::tok {

// Open-addressing map (left id, right id) -> (rank, merged id). Immutable after build.
class MergeTable {
 public:
  struct Entry {
    uint64_t key;
    int32_t rank;
    int32_t merged;
  };
  void reserve(size_t n);
  // Inserts or overwrites (a later duplicate of a pair wins, as in HF's HashMap collect).
  void insert(int32_t left, int32_t right, int32_t rank, int32_t merged);
  const Entry* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    uint64_t key = make_key(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t make_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// Per-call scratch, reused across the words of one encode() call.
struct BpeScratch {
  struct Symbol {
    int32_t id;
    int32_t prev;  // index of the previous live symbol, -1 at the start
    int32_t next;  // index of the next live symbol, -1 at the end
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
};

class BpeModel {
 public:
  // Id of the single-byte token of each byte; -1 where the vocabulary has none (real vocabularies
  // often lack bytes that never occur in UTF-8 text, such as 0xC0, or rare control characters).
  std::array<int32_t, 256> byte_id{};
  // What a byte without a token becomes, as HF tokenizers' BPE does: model.unk_token's id (runs of
  // them fused into one when fuse_unk), or, with no unk_token (-1), nothing: the byte is dropped
  // and its neighbours may merge across it.
  int32_t unk_id = -1;
  bool fuse_unk = false;
  MergeTable merges;

  // Appends the ids of `word` (raw bytes, at least one) to `out`.
  void encode_word(std::string_view word, BpeScratch& scratch, std::vector<int32_t>& out) const;
};

}  // namespace reason::tok
