// Key/value cache for a set of sequences (slots). Each slot stores, per layer, the K and V rows
// of every position it has seen: f32 [capacity, k_dim] and [capacity, v_dim], grown on demand.
// MLA caches only the normalised latent plus the shared roped key per token (v_dim = 0).
// Not thread-safe: one cache belongs to one generation call (one thread) at a time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace reason {

class KVCache {
 public:
  KVCache(int64_t n_layers, int64_t k_dim, int64_t v_dim) : n_layers_(n_layers), k_dim_(k_dim), v_dim_(v_dim) {}

  // Adds an empty sequence and returns its slot id.
  int add_sequence();
  // Adds a sequence that starts as a copy of `src`'s first `len` positions (prefix sharing).
  int fork_sequence(int src, int64_t len);
  // Frees a slot's memory; the slot id may be reused by add_sequence.
  void remove_sequence(int slot);

  int64_t length(int slot) const { return seqs_.at(size_t(slot)).len; }
  // Makes room for positions [0, n) and sets the length to n (new rows are written by forward).
  void resize(int slot, int64_t n);

  float* k(int slot, int64_t layer) { return seqs_[size_t(slot)].k[size_t(layer)].data(); }
  float* v(int slot, int64_t layer) { return seqs_[size_t(slot)].v[size_t(layer)].data(); }
  int64_t k_dim() const { return k_dim_; }
  int64_t v_dim() const { return v_dim_; }
  // Bytes held by all slots.
  size_t bytes() const;

 private:
  struct Seq {
    bool used = false;
    int64_t len = 0, cap = 0;
    std::vector<std::vector<float>> k, v;  // [layer] -> [cap * kv_dim]
  };
  int64_t n_layers_, k_dim_, v_dim_;
  std::vector<Seq> seqs_;
};

}  // namespace reason
