#include "infer/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace reason {

namespace {
constexpr int64_t kMaxArenaBlocks = 256;  // blocks per pool allocation, at most (the pool grows geometrically up to it)
}

KVCache::KVCache(kernels::Backend& be, int64_t n_layers, int64_t k_dim, int64_t v_dim, kernels::DType dtype,
                 int64_t block_size)
    : be_(&be), n_layers_(n_layers), k_dim_(k_dim), v_dim_(v_dim), dtype_(dtype), block_size_(block_size) {
  if (dtype != kernels::DType::F32 && dtype != kernels::DType::BF16)
    fail(ErrorCode::InvalidArgument, "KV cache: dtype {} is not supported (f32 or bf16)", kernels::dtype_name(dtype));
  if (block_size < 1) fail(ErrorCode::InvalidArgument, "KV cache: block size {} must be at least 1", block_size);
  block_bytes_ = size_t(n_layers) * size_t(block_size) * size_t(k_dim + v_dim) * kernels::dtype_size(dtype);
}

int32_t KVCache::take_block() {
  if (free_.empty()) {
    const int64_t have = int64_t(block_ptr_.size());
    const int64_t n = std::clamp<int64_t>(have, 8, kMaxArenaBlocks);
    DevicePtr arena(be_->alloc(std::max<size_t>(1, size_t(n) * block_bytes_)), BackendFree{be_});
    char* base = static_cast<char*>(arena.get());
    for (int64_t i = n - 1; i >= 0; --i) free_.push_back(int32_t(have + i));
    for (int64_t i = 0; i < n; ++i) block_ptr_.push_back(base + size_t(i) * block_bytes_);
    refs_.resize(block_ptr_.size(), 0);
    arenas_.push_back(std::move(arena));
  }
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  ++blocks_in_use_;
  return b;
}

void KVCache::release_block(int32_t b) {
  if (--refs_[size_t(b)] == 0) {
    free_.push_back(b);
    --blocks_in_use_;
  }
}

void* KVCache::layer_ptr(int32_t block, int64_t layer, bool values) const {
  const size_t es = kernels::dtype_size(dtype_);
  const size_t off = size_t(layer) * size_t(block_size_) * size_t(k_dim_ + v_dim_) + (values ? size_t(block_size_ * k_dim_) : 0);
  return block_ptr_[size_t(block)] + off * es;
}

// Rewrites the slot's block table (growing it when needed) and copies it to the backend.
void KVCache::upload_table(Seq& s) {
  const int64_t nb = int64_t(s.blocks.size());
  if (nb > s.table_cap || !s.table) {
    s.table_cap = std::max<int64_t>({nb, s.table_cap * 2, 8});
    s.table = DevicePtr(be_->alloc(size_t(n_layers_ * 2 * s.table_cap) * sizeof(void*)), BackendFree{be_});
    s.table_host.assign(size_t(n_layers_ * 2 * s.table_cap), nullptr);
  }
  for (int64_t l = 0; l < n_layers_; ++l)
    for (int64_t i = 0; i < nb; ++i) {
      s.table_host[size_t((l * 2) * s.table_cap + i)] = layer_ptr(s.blocks[size_t(i)], l, false);
      s.table_host[size_t((l * 2 + 1) * s.table_cap + i)] = layer_ptr(s.blocks[size_t(i)], l, true);
    }
  be_->upload(s.table.get(), s.table_host.data(), s.table_host.size() * sizeof(void*));
}

int KVCache::add_sequence() {
  size_t i = 0;
  while (i < seqs_.size() && seqs_[i].used) ++i;
  if (i == seqs_.size()) seqs_.emplace_back();
  seqs_[i] = Seq{};
  seqs_[i].used = true;
  upload_table(seqs_[i]);
  return int(i);
}

int KVCache::fork_sequence(int src, int64_t len) {
  live(src);
  if (len < 0 || len > length(src))
    fail(ErrorCode::InvalidArgument, "fork_sequence: prefix {} longer than sequence {}", len, length(src));
  const int dst = add_sequence();
  Seq& s = seqs_[size_t(src)];
  Seq& d = seqs_[size_t(dst)];
  const int64_t nb = (len + block_size_ - 1) / block_size_;
  d.blocks.assign(s.blocks.begin(), s.blocks.begin() + nb);
  for (int32_t b : d.blocks) ++refs_[size_t(b)];
  d.len = len;
  upload_table(d);
  return dst;
}

void KVCache::remove_sequence(int slot) {
  live(slot);
  Seq& s = seqs_[size_t(slot)];
  for (int32_t b : s.blocks) release_block(b);
  s = Seq{};
}

void KVCache::resize(int slot, int64_t n) {
  live(slot);
  Seq& s = seqs_[size_t(slot)];
  if (n < 0) fail(ErrorCode::InvalidArgument, "KV cache: negative length {}", n);
  const int64_t need = (n + block_size_ - 1) / block_size_;
  bool changed = false;
  if (n > s.len && s.len % block_size_ != 0) {
    // The next write lands in the last, partly filled block: it must be this slot's own.
    int32_t& last = s.blocks.back();
    if (refs_[size_t(last)] > 1) {
      const int32_t copy = take_block();
      be_->copy_bytes(block_ptr_[size_t(copy)], block_ptr_[size_t(last)], block_bytes_);
      release_block(last);
      last = copy;
      changed = true;
    }
  }
  while (int64_t(s.blocks.size()) > need) {
    release_block(s.blocks.back());
    s.blocks.pop_back();
    changed = true;
  }
  while (int64_t(s.blocks.size()) < need) {
    s.blocks.push_back(take_block());
    changed = true;
  }
  s.len = n;
  if (changed) upload_table(s);
}

kernels::PagedRows KVCache::k(int slot, int64_t layer) const {
  const Seq& s = live(slot);
  return kernels::PagedRows{static_cast<void* const*>(s.table.get()) + layer * 2 * s.table_cap, block_size_, k_dim_, dtype_,
                            int64_t(s.blocks.size())};
}

kernels::PagedRows KVCache::v(int slot, int64_t layer) const {
  const Seq& s = live(slot);
  return kernels::PagedRows{static_cast<void* const*>(s.table.get()) + (layer * 2 + 1) * s.table_cap, block_size_, v_dim_,
                            dtype_, int64_t(s.blocks.size())};
}

const KVCache::Seq& KVCache::live(int slot) const {
  if (slot < 0 || size_t(slot) >= seqs_.size() || !seqs_[size_t(slot)].used)
    fail(ErrorCode::InvalidArgument, "KV cache: slot {} is not a live sequence", slot);
  return seqs_[size_t(slot)];
}

}  // namespace reason
