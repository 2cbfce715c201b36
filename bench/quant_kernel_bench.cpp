// reason_quant_kernel_bench: the CPU backend's quantised matmul at m = 1 (one decode step's
// matrix-vector product) on random weights, as stored and in the backend's packed (x8) layout:
// GB/s of weights and Gweights/s. Not a test.
//   reason_quant_kernel_bench N K REPS   (N rows of K weights; K a multiple of 256)
// A matrix that fits the caches measures the kernels' compute; one far larger than the last-level
// cache measures the weight stream from DRAM. REASON_NUM_THREADS sets the threads.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "reason/kernels/backend.h"
#include "reason/kernels/quant.h"

using namespace reason::kernels;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s N K REPS\n", argv[0]);
    return 2;
  }
  const int64_t n = std::atoll(argv[1]), k = std::atoll(argv[2]);
  const int reps = std::atoi(argv[3]);
  if (n <= 0 || k <= 0 || k % 256 || reps <= 0) {
    std::fprintf(stderr, "N, REPS > 0 and K a positive multiple of 256\n");
    return 2;
  }
  Backend& be = cpu_backend();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> wf(static_cast<size_t>(n * k)), x(static_cast<size_t>(k)), y(static_cast<size_t>(n));
  for (auto& v : wf) v = 0.02f * normal(rng);
  for (auto& v : x) v = normal(rng);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    std::vector<uint8_t> w(dtype_nbytes(t, n * k));
    quantize_row(t, wf.data(), w.data(), n * k);
    const DType packed = be.weight_layout(t, n, k);
    std::vector<uint8_t> pw(dtype_nbytes(packed, n * k));
    if (packed != t) be.pack_weight(pw.data(), w.data(), t, packed, n, k);
    for (bool pack : {false, true}) {
      if (pack && packed == t) break;
      MatmulArgs a;
      a.x = x.data();
      a.w = pack ? pw.data() : w.data();
      a.w_dtype = pack ? packed : t;
      a.y = y.data();
      a.m = 1;
      a.n = n;
      a.k = k;
      be.matmul(a);  // warm-up
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) be.matmul(a);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double bytes = double(pack ? pw.size() : w.size());
      std::printf("%-5s %-7s %7.2f GB/s %7.2f Gweights/s\n", dtype_name(t), dtype_name(a.w_dtype), bytes * reps / s / 1e9,
                  double(n) * double(k) * reps / s / 1e9);
    }
  }
  return 0;
}
