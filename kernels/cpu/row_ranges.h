// Work sharing for the weight stream of a decode matmul: chunks [0, n) split into one contiguous
// range per thread. A thread takes its own range's chunks from the front, in order, so each thread
// reads one long run of weight rows (the hardware prefetchers follow it; OpenMP's dynamic schedule
// interleaved the threads' chunks and cost a third of the 2-thread decode speed); when its range
// is done it takes chunks from the back of the other ranges, so a thread that lost its core to
// another process leaves the rest of its range to the others instead of holding up the matmul.
// Generic code (not per ISA). One RowRanges per parallel loop; every member thread-safe.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

namespace reason::kernels::cpu {

class RowRanges {
 public:
  // n chunks over `threads` ranges (threads >= 1).
  RowRanges(int64_t n, int threads) : n_ranges_(threads), ranges_(new Range[size_t(threads)]) {
    for (int t = 0; t < threads; ++t) {
      const uint64_t lo = uint64_t(n * t / threads), hi = uint64_t(n * (t + 1) / threads);
      ranges_[size_t(t)].fb.store(lo | (hi << 32), std::memory_order_relaxed);
    }
  }
  // The next chunk for thread t, or -1 when every chunk is taken.
  int64_t next(int t) {
    const int64_t own = take(ranges_[size_t(t)], true);
    if (own >= 0) return own;
    for (int i = 1; i < n_ranges_; ++i) {
      const int64_t c = take(ranges_[size_t((t + i) % n_ranges_)], false);
      if (c >= 0) return c;
    }
    return -1;
  }

 private:
  struct alignas(64) Range {
    std::atomic<uint64_t> fb{0};  // front (next chunk) in the low 32 bits, back (end) in the high
  };
  static int64_t take(Range& r, bool front) {
    uint64_t v = r.fb.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t f = v & 0xffffffffu, b = v >> 32;
      if (f >= b) return -1;
      const uint64_t want = front ? (f + 1) | (b << 32) : f | ((b - 1) << 32);
      if (r.fb.compare_exchange_weak(v, want, std::memory_order_relaxed)) return int64_t(front ? f : b - 1);
    }
  }
  int n_ranges_;
  std::unique_ptr<Range[]> ranges_;
};

}  // namespace reason::kernels::cpu
