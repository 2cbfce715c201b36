// Key/value cache for a set of sequences (slots), paged: positions are stored in blocks of
// block_size tokens taken from a pool in the model's backend memory (vLLM's PagedAttention
// layout). A block holds, for every layer, the K rows [block_size, k_dim] and the V rows
// [block_size, v_dim] of its positions, in f32 or bf16 (attention and the MLA expansion read them
// back as f32). MLA caches only the normalised latent plus the shared roped key (v_dim = 0).
//
// Prefix sharing: fork_sequence gives a new slot the blocks of another slot's prefix by reference
// (a refcount per block), so the G samples of a GRPO group hold their prompt once. A block that
// is shared and only partly filled is copied before a slot writes into it (copy on write); full
// shared blocks are never written again.
//
// Each slot keeps its block table (per layer, the K and V block pointers) in backend memory, which
// is what the attention kernels read (PagedRows). Tables change only in add/fork/resize/remove.
// Ownership: the cache owns its pool and tables (freed by the destructor); it borrows the backend,
// which must outlive it. Not thread-safe: one cache belongs to one generation call (one thread)
// at a time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "reason/kernels/backend.h"

namespace reason {

class KVCache {
 public:
  static constexpr int64_t kDefaultBlockSize = 16;

  // dtype: F32 or BF16. Throws InvalidArgument for another dtype or block_size < 1.
  KVCache(kernels::Backend& be, int64_t n_layers, int64_t k_dim, int64_t v_dim, kernels::DType dtype = kernels::DType::F32,
          int64_t block_size = kDefaultBlockSize);

  // Adds an empty sequence and returns its slot id.
  int add_sequence();
  // Adds a sequence whose first `len` positions are `src`'s (prefix sharing: the blocks are shared,
  // not copied). Throws InvalidArgument when len exceeds src's length.
  int fork_sequence(int src, int64_t len);
  // Drops a slot's references to its blocks; the slot id may be reused by add_sequence.
  void remove_sequence(int slot);

  // Every call taking a slot throws InvalidArgument for a slot that is not live.
  int64_t length(int slot) const { return live(slot).len; }
  // Sets the length to n: blocks for positions [0, n) exist afterwards and the ones that will be
  // written (from the old length on) belong to this slot alone. New rows are written by forward.
  void resize(int slot, int64_t n);

  // Layer `layer`'s keys / values of a slot as paged rows (valid until the slot's next resize,
  // fork or removal).
  kernels::PagedRows k(int slot, int64_t layer) const;
  kernels::PagedRows v(int slot, int64_t layer) const;

  int64_t k_dim() const { return k_dim_; }
  int64_t v_dim() const { return v_dim_; }
  kernels::DType dtype() const { return dtype_; }
  int64_t block_size() const { return block_size_; }
  // Bytes of the blocks in use (a block shared by several slots counts once).
  size_t bytes() const { return size_t(blocks_in_use_) * block_bytes_; }
  // Bytes of the pool allocated so far (in use or free).
  size_t reserved_bytes() const { return block_ptr_.size() * block_bytes_; }
  int64_t blocks_in_use() const { return blocks_in_use_; }

 private:
  struct BackendFree {
    kernels::Backend* be;
    void operator()(void* p) const { be->dealloc(p); }
  };
  using DevicePtr = std::unique_ptr<void, BackendFree>;
  struct Seq {
    bool used = false;
    int64_t len = 0;
    std::vector<int32_t> blocks;
    int64_t table_cap = 0;         // block pointers per (layer, K|V) in the table
    std::vector<void*> table_host; // [layer][K|V][table_cap]
    DevicePtr table{nullptr, BackendFree{nullptr}};
  };

  const Seq& live(int slot) const;
  int32_t take_block();
  void release_block(int32_t b);
  void upload_table(Seq& s);
  void* layer_ptr(int32_t block, int64_t layer, bool values) const;

  kernels::Backend* be_;
  int64_t n_layers_, k_dim_, v_dim_;
  kernels::DType dtype_;
  int64_t block_size_;
  size_t block_bytes_;
  std::vector<DevicePtr> arenas_;
  std::vector<char*> block_ptr_;  // block id -> its memory
  std::vector<int32_t> refs_;     // block id -> slots holding it
  std::vector<int32_t> free_;
  int64_t blocks_in_use_ = 0;
  std::vector<Seq> seqs_;
};

}  // namespace reason
