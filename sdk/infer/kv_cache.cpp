#include "infer/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace reason {

int KVCache::add_sequence() {
  for (size_t i = 0; i < seqs_.size(); ++i)
    if (!seqs_[i].used) {
      seqs_[i] = Seq{};
      seqs_[i].used = true;
      seqs_[i].k.resize(size_t(n_layers_));
      seqs_[i].v.resize(size_t(n_layers_));
      return int(i);
    }
  Seq s;
  s.used = true;
  s.k.resize(size_t(n_layers_));
  s.v.resize(size_t(n_layers_));
  seqs_.push_back(std::move(s));
  return int(seqs_.size() - 1);
}

int KVCache::fork_sequence(int src, int64_t len) {
  if (len > length(src)) fail(ErrorCode::InvalidArgument, "fork_sequence: prefix {} longer than sequence {}", len, length(src));
  int dst = add_sequence();
  resize(dst, len);
  Seq& s = seqs_[size_t(src)];
  Seq& d = seqs_[size_t(dst)];
  for (int64_t l = 0; l < n_layers_; ++l) {
    std::copy_n(s.k[size_t(l)].begin(), len * k_dim_, d.k[size_t(l)].begin());
    std::copy_n(s.v[size_t(l)].begin(), len * v_dim_, d.v[size_t(l)].begin());
  }
  return dst;
}

void KVCache::remove_sequence(int slot) { seqs_.at(size_t(slot)) = Seq{}; }

void KVCache::resize(int slot, int64_t n) {
  Seq& s = seqs_.at(size_t(slot));
  if (n > s.cap) {
    int64_t cap = std::max<int64_t>({n, s.cap * 2, 64});
    for (int64_t l = 0; l < n_layers_; ++l) {
      s.k[size_t(l)].resize(size_t(cap * k_dim_));
      s.v[size_t(l)].resize(size_t(cap * v_dim_));
    }
    s.cap = cap;
  }
  s.len = n;
}

size_t KVCache::bytes() const {
  size_t b = 0;
  for (const Seq& s : seqs_) b += size_t(s.cap) * size_t(k_dim_ + v_dim_) * size_t(n_layers_) * sizeof(float);
  return b;
}

}  // namespace reason
