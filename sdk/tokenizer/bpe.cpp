#include "tokenizer/bpe.h"

#include <algorithm>

namespace reason::tok {

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2 + 1) cap <<= 1;
  slots_.assign(cap, Entry{kEmpty, 0, 0});
  mask_ = cap - 1;
  size_ = 0;
}

void MergeTable::insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > slots_.size()) {  // keep the load factor at or under 1/2
    std::vector<Entry> old = std::move(slots_);
    reserve(std::max<size_t>(old.size(), 8));
    for (const Entry& e : old)
      if (e.key != kEmpty) insert(static_cast<int32_t>(e.key >> 32), static_cast<int32_t>(e.key & 0xffffffffu), e.rank, e.merged);
  }
  uint64_t key = make_key(left, right);
  for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == key) {
      e.rank = rank;
      e.merged = merged;
      return;
    }
    if (e.key == kEmpty) {
      e = Entry{key, rank, merged};
      ++size_;
      return;
    }
  }
}

namespace {
// Min-heap order: lower rank first, then leftmost position.
struct HeapGreater {
  bool operator()(const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};
}  // namespace

void BpeModel::encode_word(std::string_view word, BpeScratch& sc, std::vector<int32_t>& out) const {
  auto& sym = sc.symbols;
  auto& heap = sc.heap;
  sym.clear();
  heap.clear();
  bool last_unk = false;
  for (char ch : word) {
    int32_t id = byte_id[static_cast<uint8_t>(ch)];
    if (id < 0) {
      if (unk_id < 0 || (fuse_unk && last_unk)) continue;
      id = unk_id;
      last_unk = true;
    } else {
      last_unk = false;
    }
    sym.push_back({id, static_cast<int32_t>(sym.size()) - 1, -1, true});
  }
  const size_t n = sym.size();
  if (n == 0) return;
  for (size_t i = 0; i + 1 < n; ++i) sym[i].next = static_cast<int32_t>(i + 1);
  if (n == 1) {
    out.push_back(sym[0].id);
    return;
  }
  HeapGreater cmp;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (const auto* m = merges.find(sym[i].id, sym[i + 1].id)) heap.push_back({m->rank, static_cast<int32_t>(i)});
  }
  std::make_heap(heap.begin(), heap.end(), cmp);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    const BpeScratch::Candidate top = heap.back();
    heap.pop_back();
    auto& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    auto& right = sym[left.next];
    const auto* m = merges.find(left.id, right.id);
    if (!m || m->rank != top.rank) continue;  // stale: a neighbour changed since it was queued
    left.id = m->merged;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const auto* pm = merges.find(sym[left.prev].id, left.id)) {
        heap.push_back({pm->rank, left.prev});
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
    if (left.next >= 0) {
      if (const auto* nm = merges.find(left.id, sym[left.next].id)) {
        heap.push_back({nm->rank, top.pos});
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace reason::tok
