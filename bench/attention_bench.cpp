// reason_attention_bench: the CPU backend's decode attention alone (one query token per step over
// a KV history of N tokens), on random data laid out as the paged KV cache lays it out (blocks of
// B tokens holding every layer's K and V rows, sdk/infer/kv_cache.h), for L layers, so the history
// streams from memory as in a real decode step: ms per step (all layers) and GB/s of KV read.
// Not a test.
//   reason_attention_bench N L HEADS KV_HEADS HEAD_DIM REPS [B [f32|bf16]]
// B = 0: one contiguous history per layer. Qwen2.5-0.5B: 24 14 2 64; 1.5B: 28 12 2 128.
// REASON_NUM_THREADS sets the threads.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "reason/kernels/backend.h"

using namespace reason::kernels;

int main(int argc, char** argv) {
  if (argc < 7 || argc > 9) {
    std::fprintf(stderr, "usage: %s N L HEADS KV_HEADS HEAD_DIM REPS [BLOCK [f32|bf16]]\n", argv[0]);
    return 2;
  }
  const int64_t n = std::atoll(argv[1]), layers = std::atoll(argv[2]);
  const int heads = std::atoi(argv[3]), kv_heads = std::atoi(argv[4]), hd = std::atoi(argv[5]), reps = std::atoi(argv[6]);
  const int64_t block = argc > 7 ? std::atoll(argv[7]) : 16;
  const bool bf16 = argc > 8 ? std::strcmp(argv[8], "bf16") == 0 : true;
  if (n <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || heads % kv_heads || hd <= 0 || reps <= 0 || block < 0) {
    std::fprintf(stderr, "sizes must be positive, HEADS a multiple of KV_HEADS, BLOCK >= 0\n");
    return 2;
  }
  Backend& be = cpu_backend();
  const int64_t kvd = int64_t(kv_heads) * hd, es = bf16 ? 2 : 4;
  const int64_t rows = block > 0 ? block : n, n_blocks = block > 0 ? (n + block - 1) / block : 1;
  // One block: for each layer, K rows then V rows (the KV cache's layout).
  const size_t layer_bytes = size_t(rows * kvd * es) * 2, block_bytes = layer_bytes * size_t(layers);
  char* pool = static_cast<char*>(be.alloc(block_bytes * size_t(n_blocks)));
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> bits(0x3c00, 0x3f80);  // bf16 in [2^-7, 1)
  if (bf16)
    for (size_t i = 0; i < block_bytes * size_t(n_blocks) / 2; ++i) reinterpret_cast<uint16_t*>(pool)[i] = uint16_t(bits(rng));
  else
    for (size_t i = 0; i < block_bytes * size_t(n_blocks) / 4; ++i) reinterpret_cast<float*>(pool)[i] = 0.01f * float(i % 97);
  std::vector<std::vector<void*>> kb(static_cast<size_t>(layers)), vb(static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t b = 0; b < n_blocks; ++b) {
      char* p = pool + size_t(b) * block_bytes + size_t(l) * layer_bytes;
      kb[size_t(l)].push_back(p);
      vb[size_t(l)].push_back(p + layer_bytes / 2);
    }
  std::vector<float> q(size_t(heads * hd)), out(size_t(heads * hd));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : q) x = normal(rng);
  auto step = [&] {
    for (int64_t l = 0; l < layers; ++l) {
      AttnSeq s;
      s.q = q.data();
      s.out = out.data();
      s.n_q = 1;
      s.q_pos0 = n - 1;
      if (block > 0) {
        s.k_blocks = kb[size_t(l)].data();
        s.v_blocks = vb[size_t(l)].data();
        s.n_blocks = n_blocks;
      } else {
        s.k = kb[size_t(l)][0];
        s.v = vb[size_t(l)][0];
      }
      AttnArgs a;
      a.seqs = &s;
      a.n_seqs = 1;
      a.n_heads = heads;
      a.n_kv_heads = kv_heads;
      a.head_dim = hd;
      a.q_stride = a.out_stride = int64_t(heads) * hd;
      a.kv_stride = kvd;
      a.scale = 1.0f / float(hd) * 8.0f;
      a.kv_dtype = bf16 ? DType::BF16 : DType::F32;
      a.block_size = block;
      be.attention(a);
    }
  };
  step();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double gb = double(n * kvd * es * 2 * layers) / 1e9;
  std::printf("N=%lld L=%lld heads=%d/%d hd=%d block=%lld %s: %.3f ms per step, %.1f GB/s of KV (out[0]=%g)\n",
              (long long)n, (long long)layers, heads, kv_heads, hd, (long long)block, bf16 ? "bf16" : "f32", best * 1e3,
              gb / best, double(out[0]));
  be.dealloc(pool);
  return 0;
}
