// Every CPU backend op against a naive reference computed in double, on the ISA path in use.
// ctest runs this binary once per path (REASON_CPU_ISA=generic|avx2|avx512; tests/CMakeLists.txt),
// so each path's kernels are checked on the CPU that runs the suite; a path the CPU lacks is
// reported as Skipped by ctest (exit 77 from tests/catch_main.cpp).
//
// Tolerances are derived from the arithmetic: a sum of k f32 products, in any order, is within
// gamma_k * sum |x_i w_i| of the exact sum (gamma_k = k u / (1 - k u), u = 2^-24; Higham,
// "Accuracy and Stability of Numerical Algorithms", 3.1). bf16 inputs are rounded to bf16 in the
// reference too: their products are exact in f32, so the same bound holds. Elementwise ops with
// libm calls get a few ulp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "../../kernels/cpu/row_ranges.h"
#include "reason/kernels/backend.h"
#include "reason/kernels/cpu_isa.h"
#include "reason/kernels/cpu_math.h"
#include "reason/kernels/dtype.h"

using namespace reason::kernels;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24
double gamma(int64_t k) { return double(k) * kU / (1.0 - double(k) * kU); }

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

float round_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

// Checks y (row stride ldy) against x . w^T (+ bias) (+ beta * y0) computed in double.
void check_matmul(int64_t m, int64_t n, int64_t k, DType wt, bool bias, float beta, int64_t ldx_pad, int64_t ldy_pad) {
  INFO("m " << m << " n " << n << " k " << k << " w " << dtype_name(wt) << " bias " << bias << " beta " << beta
            << " ldx+" << ldx_pad << " ldy+" << ldy_pad << " isa " << cpu_isa_name(cpu_isa()));
  const int64_t ldx = k + ldx_pad, ldy = n + ldy_pad;
  auto x = randn(size_t(m * ldx), uint32_t(m * 31 + k));
  auto wf = randn(size_t(n * k), uint32_t(n * 17 + k), 0.5f);
  auto b = randn(size_t(n), 7);
  auto y = randn(size_t(m * ldy), 9);
  const auto y0 = y;
  std::vector<uint16_t> wb(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
  MatmulArgs a;
  a.x = x.data();
  a.w = wt == DType::BF16 ? static_cast<const void*>(wb.data()) : wf.data();
  a.w_dtype = wt;
  a.bias = bias ? b.data() : nullptr;
  a.y = y.data();
  a.m = m, a.n = n, a.k = k, a.ldx = ldx, a.ldy = ldy, a.beta = beta;
  cpu_backend().matmul(a);
  double worst_ratio = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double exact = 0, mag = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double xv = wt == DType::BF16 ? round_bf16(x[size_t(i * ldx + c)]) : x[size_t(i * ldx + c)];
        const double wv = wt == DType::BF16 ? bf16_to_f32(wb[size_t(j * k + c)]) : wf[size_t(j * k + c)];
        exact += xv * wv;
        mag += std::fabs(xv * wv);
      }
      // + bias and beta * y0: two more rounded additions.
      if (bias) exact += b[size_t(j)], mag += std::fabs(b[size_t(j)]);
      if (beta != 0) exact += double(beta) * y0[size_t(i * ldy + j)], mag += std::fabs(beta * y0[size_t(i * ldy + j)]);
      const double tol = gamma(k + 2) * mag + 1e-30;
      const double err = std::fabs(double(y[size_t(i * ldy + j)]) - exact);
      worst_ratio = std::max(worst_ratio, err / tol);
    }
  CHECK(worst_ratio <= 1.0);
  // Padding between rows is untouched.
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = n; j < ldy; ++j) CHECK(y[size_t(i * ldy + j)] == y0[size_t(i * ldy + j)]);
}

}  // namespace

TEST_CASE("the ISA path in use is the one asked for", "[cpu_backend]") {
  const char* env = std::getenv("REASON_CPU_ISA");
  const CpuIsa isa = cpu_isa();
  if (env && *env) CHECK(std::string(cpu_isa_name(isa)) == env);
  CHECK(cpu_isa_supported(isa));
  CHECK(cpu_isa_supported(CpuIsa::Generic));
  CHECK(cpu_isa_description().rfind(cpu_isa_name(isa), 0) == 0);
}

TEST_CASE("matmul: f32 and bf16 weights, small and large m, K tails, bias, beta, strides", "[cpu_backend]") {
  for (DType wt : {DType::F32, DType::BF16})
    for (int64_t m : {1, 3, 8, 9, 17, 64})              // small-m kernel (<= 8) and oneDNN
      for (int64_t k : {1, 7, 8, 31, 33, 64, 129})      // tails of 8, 16 and 32 lanes
        for (int64_t n : {1, 5, 16, 37}) check_matmul(m, n, k, wt, (m + k) % 2 == 1, 0.0f, 0, 0);
  // Strided rows, bias and accumulation, including bf16 panels of more than one chunk.
  for (DType wt : {DType::F32, DType::BF16}) {
    check_matmul(4, 33, 45, wt, true, 1.0f, 3, 5);
    check_matmul(40, 33, 45, wt, true, 1.0f, 3, 5);
    check_matmul(12, 300, 4100, wt, false, 0.5f, 0, 2);
  }
}

TEST_CASE("gemm_f32: all transposes, alpha, beta, leading dimensions", "[cpu_backend]") {
  const int64_t m = 13, n = 11, k = 37;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("ta " << ta << " tb " << tb);
      const int64_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
      auto A = randn(size_t((ta ? k : m) * lda), 1), B = randn(size_t((tb ? n : k) * ldb), 2), C = randn(size_t(m * ldc), 3);
      const auto C0 = C;
      const float alpha = 0.75f, beta = -0.5f;
      cpu_backend().gemm_f32(ta, tb, m, n, k, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double exact = 0, mag = 0;
          for (int64_t c = 0; c < k; ++c) {
            const double av = ta ? A[size_t(c * lda + i)] : A[size_t(i * lda + c)];
            const double bv = tb ? B[size_t(j * ldb + c)] : B[size_t(c * ldb + j)];
            exact += av * bv;
            mag += std::fabs(av * bv);
          }
          exact = alpha * exact + beta * double(C0[size_t(i * ldc + j)]);
          mag = std::fabs(alpha) * mag + std::fabs(beta * C0[size_t(i * ldc + j)]);
          CHECK(std::fabs(C[size_t(i * ldc + j)] - exact) <= gamma(k + 3) * mag);
        }
    }
}

TEST_CASE("rmsnorm, silu_mul, add_inplace against double", "[cpu_backend]") {
  for (int64_t dim : {1, 7, 64, 133}) {
    INFO("dim " << dim);
    const int64_t rows = 5;
    auto x = randn(size_t(rows * dim), 11), w = randn(size_t(dim), 12);
    std::vector<float> y(x.size());
    cpu_backend().rmsnorm(y.data(), x.data(), w.data(), rows, dim, 1e-6f, nullptr);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += double(x[size_t(r * dim + i)]) * x[size_t(r * dim + i)];
      const double inv = 1.0 / std::sqrt(ss / double(dim) + 1e-6);
      for (int64_t i = 0; i < dim; ++i) {
        const double e = w[size_t(i)] * (x[size_t(r * dim + i)] * inv);
        // sum of squares (gamma_dim relative), sqrt and divide (2 u), two products (2 u)
        CHECK(std::fabs(y[size_t(r * dim + i)] - e) <= (gamma(dim) / 2 + 6 * kU) * std::fabs(e) + 1e-30);
      }
    }
    // in place (y aliases x)
    auto xi = x;
    cpu_backend().rmsnorm(xi.data(), xi.data(), w.data(), rows, dim, 1e-6f, nullptr);
    CHECK(xi == y);
  }
  for (int64_t n : {1, 9, 20000}) {  // 20000: the threaded branch
    auto g = randn(size_t(n), 21, 3.0f), u = randn(size_t(n), 22);
    std::vector<float> out(static_cast<size_t>(n));
    cpu_backend().silu_mul(out.data(), g.data(), u.data(), n);
    auto acc = u;
    cpu_backend().add_inplace(acc.data(), g.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double gd = g[size_t(i)];
      const double e = gd / (1.0 + std::exp(-gd)) * u[size_t(i)];
      CHECK(std::fabs(out[size_t(i)] - e) <= 8 * kU * std::fabs(e) + 1e-30);  // expf 1 ulp + 4 roundings
      CHECK(acc[size_t(i)] == u[size_t(i)] + g[size_t(i)]);                    // one rounding, exact match
    }
  }
}

namespace {

// rope (transpose = false) or rope_bwd (true) on a partial rotary dim, strided tokens and an
// attention factor, against the rotation R (or R^T) computed in double from the f32 angle. Pair i
// is (i, i + rot/2), or (2i, 2i + 1) when interleaved.
void check_rope(bool transpose, bool interleaved = false) {
  INFO("transpose " << transpose << " interleaved " << interleaved);
  const int64_t n_tok = 6;
  const int n_heads = 3, head_dim = 10, rot = 6;
  const int64_t stride = n_heads * head_dim + 4;
  auto x = randn(size_t(n_tok * stride), transpose ? 51 : 31);
  const auto x0 = x;
  std::vector<int32_t> pos = {0, 1, 5, 17, 300, 4095};
  std::vector<float> inv_freq(rot / 2);
  for (int i = 0; i < rot / 2; ++i) inv_freq[size_t(i)] = float(std::pow(10000.0, -2.0 * i / rot));
  const float af = 1.25f;
  if (transpose)
    cpu_backend().rope_bwd(x.data(), n_tok, n_heads, head_dim, rot, stride, pos.data(), inv_freq.data(), af, interleaved);
  else
    cpu_backend().rope(x.data(), n_tok, n_heads, head_dim, rot, stride, pos.data(), inv_freq.data(), af, interleaved);
  const int step = interleaved ? 2 : 1, partner = interleaved ? 1 : rot / 2;
  for (int64_t t = 0; t < n_tok; ++t)
    for (int h = 0; h < n_heads; ++h) {
      const float* a = &x0[size_t(t * stride + h * head_dim)];
      const float* r = &x[size_t(t * stride + h * head_dim)];
      for (int i = 0; i < rot / 2; ++i) {
        const double ang = double(float(pos[size_t(t)]) * inv_freq[size_t(i)]);  // the f32 angle
        const double c = std::cos(ang) * af, s = (transpose ? -1 : 1) * std::sin(ang) * af;
        const int i0 = i * step, i1 = i * step + partner;
        const double e0 = a[i0] * c - a[i1] * s, e1 = a[i1] * c + a[i0] * s;
        const double mag = (std::fabs(a[i0]) + std::fabs(a[i1])) * af;
        CHECK(std::fabs(r[i0] - e0) <= 8 * kU * mag);
        CHECK(std::fabs(r[i1] - e1) <= 8 * kU * mag);
      }
      for (int i = rot; i < head_dim; ++i) CHECK(r[i] == a[i]);  // past rot_dim: untouched
    }
  CHECK(x[size_t(n_heads * head_dim)] == x0[size_t(n_heads * head_dim)]);  // stride padding untouched
}

}  // namespace

TEST_CASE("rope: rotate_half and interleaved pairs on a partial rotary dim, strided tokens, attention factor",
          "[cpu_backend]") {
  check_rope(false);
  check_rope(false, true);
}

TEST_CASE("interleaved rope is rotate_half between a de-interleave and a re-interleave, bit for bit", "[cpu_backend]") {
  // DeepSeek's rope_interleave as transformers computes it (apply_rotary_pos_emb_interleave):
  // [x0, x1, x2, x3 ...] -> [x0, x2, ... | x1, x3, ...], then rotate_half; the interleaved rope
  // must give the same values in the original order.
  const int64_t n_tok = 5;
  const int rot = 8, head_dim = 12;
  auto x = randn(size_t(n_tok * head_dim), 61);
  std::vector<float> perm(x.size());
  for (int64_t t = 0; t < n_tok; ++t) {
    const float* a = &x[size_t(t * head_dim)];
    float* p = &perm[size_t(t * head_dim)];
    for (int i = 0; i < rot / 2; ++i) p[i] = a[2 * i], p[i + rot / 2] = a[2 * i + 1];
    for (int i = rot; i < head_dim; ++i) p[i] = a[i];
  }
  const std::vector<int32_t> pos = {0, 3, 9, 100, 2047};
  std::vector<float> inv_freq(rot / 2);
  for (int i = 0; i < rot / 2; ++i) inv_freq[size_t(i)] = float(std::pow(10000.0, -2.0 * i / rot));
  cpu_backend().rope(x.data(), n_tok, 1, head_dim, rot, head_dim, pos.data(), inv_freq.data(), 1.0f, true);
  cpu_backend().rope(perm.data(), n_tok, 1, head_dim, rot, head_dim, pos.data(), inv_freq.data(), 1.0f, false);
  for (int64_t t = 0; t < n_tok; ++t)
    for (int i = 0; i < rot / 2; ++i) {
      CHECK(x[size_t(t * head_dim + 2 * i)] == perm[size_t(t * head_dim + i)]);
      CHECK(x[size_t(t * head_dim + 2 * i + 1)] == perm[size_t(t * head_dim + i + rot / 2)]);
    }
}

namespace {

// One sequence's keys and values in a paged store: blocks of block_size rows (row stride kvs),
// taken from a pool in a scrambled order (so that consecutive blocks are not adjacent), in f32 or
// bf16. Holds the block tables attention and paged_read / paged_write take.
struct PagedCopy {
  std::vector<float> pool_f32;
  std::vector<uint16_t> pool_bf16;
  std::vector<void*> k_blocks, v_blocks;

  PagedCopy(const std::vector<float>& k, const std::vector<float>& v, int64_t n_tok, int64_t kvs, int64_t bs, DType dt) {
    const int64_t nb = (n_tok + bs - 1) / bs, block = bs * kvs;
    const bool bf = dt == DType::BF16;
    if (bf)
      pool_bf16.assign(size_t(2 * nb * block), 0xffff);
    else
      pool_f32.assign(size_t(2 * nb * block), NAN);
    auto base = [&](int64_t slot) -> void* {
      return bf ? static_cast<void*>(pool_bf16.data() + slot * block) : static_cast<void*>(pool_f32.data() + slot * block);
    };
    for (int64_t b = 0; b < nb; ++b) {  // key block b in pool slot 2 * (nb - 1 - b), its value block next to it
      k_blocks.push_back(base(2 * (nb - 1 - b)));
      v_blocks.push_back(base(2 * (nb - 1 - b) + 1));
    }
    for (int64_t p = 0; p < n_tok; ++p)
      for (int64_t c = 0; c < kvs; ++c) {
        const size_t off = size_t((p % bs) * kvs + c);
        if (bf) {
          static_cast<uint16_t*>(k_blocks[size_t(p / bs)])[off] = f32_to_bf16(k[size_t(p * kvs + c)]);
          static_cast<uint16_t*>(v_blocks[size_t(p / bs)])[off] = f32_to_bf16(v[size_t(p * kvs + c)]);
        } else {
          static_cast<float*>(k_blocks[size_t(p / bs)])[off] = k[size_t(p * kvs + c)];
          static_cast<float*>(v_blocks[size_t(p / bs)])[off] = v[size_t(p * kvs + c)];
        }
      }
  }
};

// Causal GQA over several sequences with KV history, the keys and values contiguous
// (block_size 0) or paged in blocks of block_size rows, f32 or bf16, against double. With bf16
// keys and values the reference uses the same bf16-rounded values (products of f32 and bf16 are
// exact in f32, so the bound is the f32 one).
struct AttnShape {
  int64_t n_q, pos0;
};
const std::vector<AttnShape> kAttnShapes = {{1, 0}, {5, 0}, {3, 9}, {1, 40}, {17, 16}};

// Returns the outputs (per sequence, row stride qs).
std::vector<std::vector<float>> check_attention(int64_t block_size, DType kv_dtype, int64_t window = 0, int hd = 12,
                                                const std::vector<AttnShape>& shape = kAttnShapes) {
  INFO("block_size " << block_size << " kv " << dtype_name(kv_dtype) << " window " << window << " hd " << hd
                     << " threads " << cpu_threads() << " isa " << cpu_isa_name(cpu_isa()));
  const int n_heads = 6, n_kv = 2;
  const int64_t qs = n_heads * hd + 3, kvs = n_kv * hd + 5;
  std::vector<std::vector<float>> q, k, v, out;
  std::vector<PagedCopy> paged;
  std::vector<AttnSeq> seqs;
  const bool bf = kv_dtype == DType::BF16;
  for (size_t s = 0; s < shape.size(); ++s) {
    const int64_t n_kv_tok = shape[s].pos0 + shape[s].n_q;
    q.push_back(randn(size_t(shape[s].n_q * qs), uint32_t(40 + s)));
    k.push_back(randn(size_t(n_kv_tok * kvs), uint32_t(50 + s)));
    v.push_back(randn(size_t(n_kv_tok * kvs), uint32_t(60 + s)));
    out.emplace_back(size_t(shape[s].n_q * qs), 0.0f);
    if (block_size > 0) paged.emplace_back(k[s], v[s], n_kv_tok, kvs, block_size, kv_dtype);
    if (bf)  // the reference's values: what the cache holds
      for (size_t i = 0; i < k[s].size(); ++i) k[s][i] = round_bf16(k[s][i]), v[s][i] = round_bf16(v[s][i]);
  }
  for (size_t s = 0; s < shape.size(); ++s) {
    AttnSeq sq{q[s].data(), out[s].data(), k[s].data(), v[s].data(), shape[s].n_q, shape[s].pos0};
    if (block_size > 0) {
      sq.k = sq.v = nullptr;
      sq.k_blocks = paged[s].k_blocks.data();
      sq.v_blocks = paged[s].v_blocks.data();
      sq.n_blocks = int64_t(paged[s].k_blocks.size());
    }
    seqs.push_back(sq);
  }
  AttnArgs a;
  a.seqs = seqs.data();
  a.n_seqs = int(seqs.size());
  a.n_heads = n_heads, a.n_kv_heads = n_kv, a.head_dim = hd;
  a.q_stride = qs, a.out_stride = qs, a.kv_stride = kvs;
  a.scale = 1.0f / std::sqrt(float(hd));
  a.block_size = block_size;
  a.kv_dtype = kv_dtype;
  a.window = window;
  std::vector<std::vector<uint16_t>> kb(shape.size()), vb(shape.size());
  if (block_size == 0 && bf) {  // contiguous bf16: the sequences' rows as bf16 arrays
    for (size_t s = 0; s < shape.size(); ++s) {
      for (float x : k[s]) kb[s].push_back(f32_to_bf16(x));
      for (float x : v[s]) vb[s].push_back(f32_to_bf16(x));
      seqs[s].k = kb[s].data(), seqs[s].v = vb[s].data();
    }
  }
  cpu_backend().attention(a);
  double worst = 0;
  for (size_t s = 0; s < shape.size(); ++s)
    for (int64_t t = 0; t < shape[s].n_q; ++t)
      for (int h = 0; h < n_heads; ++h) {
        const int g = h / (n_heads / n_kv);
        const int64_t n_ctx = shape[s].pos0 + t + 1;
        const int64_t j0 = window > 0 && n_ctx > window ? n_ctx - window : 0;  // sliding window: the last keys
        std::vector<double> p(static_cast<size_t>(n_ctx), 0.0);
        double mx = -1e300, sum = 0;
        for (int64_t j = j0; j < n_ctx; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += double(q[s][size_t(t * qs + h * hd + i)]) * k[s][size_t(j * kvs + g * hd + i)];
          p[size_t(j)] = d * a.scale;
          mx = std::max(mx, p[size_t(j)]);
        }
        for (int64_t j = j0; j < n_ctx; ++j) sum += (p[size_t(j)] = std::exp(p[size_t(j)] - mx));
        for (int i = 0; i < hd; ++i) {
          double e = 0, mag = 0;
          for (int64_t j = j0; j < n_ctx; ++j) {
            e += p[size_t(j)] / sum * v[s][size_t(j * kvs + g * hd + i)];
            mag += std::fabs(v[s][size_t(j * kvs + g * hd + i)]) * p[size_t(j)] / sum;
          }
          // scores carry gamma_hd * |q||k| * scale (<= ~3 here), exp turns that into a relative
          // error of the weights; the weighted sum adds gamma_n_ctx. 64 u covers both.
          const double tol = (gamma(n_ctx + hd) + 64 * kU) * (mag + std::fabs(e)) * 4;
          worst = std::max(worst, std::fabs(out[s][size_t(t * qs + h * hd + i)] - e) / tol);
        }
      }
  CHECK(worst <= 1.0);
  return out;
}

}  // namespace

TEST_CASE("attention: causal GQA over several sequences with KV history, contiguous and paged, f32 and bf16",
          "[cpu_backend]") {
  for (DType dt : {DType::F32, DType::BF16})
    for (int64_t bs : {0, 1, 3, 16, 64}) check_attention(bs, dt);
}

// Histories longer than one part (256 positions, kernels/cpu/isa/attention.cpp) are attended in
// parts that are merged; head dims that are multiples of 8 take the vector path (24 and 72 its
// partial output tiles). Fewer query rows than threads spread a row's parts over the threads
// (decode); more rows spread rows (prefill). A row's result must be the same bits either way.
TEST_CASE("attention over long histories in parts, decode and prefill, against double", "[cpu_backend]") {
  const int saved = cpu_threads();
  set_cpu_threads(2);
  for (int hd : {8, 24, 64, 72})
    for (DType dt : {DType::F32, DType::BF16}) {
      check_attention(16, dt, 0, hd, {{300, 400}, {2, 0}});  // prefill
      check_attention(16, dt, 0, hd, {{1, 700}});             // decode
      check_attention(0, dt, 0, hd, {{1, 600}});
      check_attention(16, dt, 300, hd, {{1, 700}, {20, 500}});  // windows across parts
    }
  set_cpu_threads(16);  // decode of many sequences at once: more threads than query rows
  check_attention(16, DType::BF16, 0, 64, {{1, 300}, {1, 520}, {1, 9}, {1, 700}, {1, 256}, {1, 0}, {1, 1000}, {1, 64}});
  set_cpu_threads(saved);
}

TEST_CASE("attention: a query row alone (decode) gives the bits it gives among many rows (prefill)", "[cpu_backend]") {
  const int saved = cpu_threads();
  set_cpu_threads(2);
  for (int hd : {24, 64})
    for (DType dt : {DType::F32, DType::BF16}) {
      INFO("hd " << hd << " kv " << dtype_name(dt) << " isa " << cpu_isa_name(cpu_isa()));
      const int n_heads = 6, n_kv = 2;
      const int64_t n_q = 300, pos0 = 400, n_tok = n_q + pos0, qs = n_heads * hd, kvs = n_kv * hd;
      const std::vector<float> q = randn(size_t(n_q * qs), 7), k = randn(size_t(n_tok * kvs), 8), v = randn(size_t(n_tok * kvs), 9);
      PagedCopy pc(k, v, n_tok, kvs, 16, dt);
      std::vector<float> all(size_t(n_q * qs), 0.0f), one(size_t(qs), 0.0f);
      AttnSeq sq{q.data(), all.data(), nullptr, nullptr, n_q, pos0};
      sq.k_blocks = pc.k_blocks.data(), sq.v_blocks = pc.v_blocks.data(), sq.n_blocks = int64_t(pc.k_blocks.size());
      AttnArgs a;
      a.seqs = &sq, a.n_seqs = 1;
      a.n_heads = n_heads, a.n_kv_heads = n_kv, a.head_dim = hd;
      a.q_stride = a.out_stride = qs, a.kv_stride = kvs;
      a.scale = 1.0f / std::sqrt(float(hd));
      a.block_size = 16, a.kv_dtype = dt;
      cpu_backend().attention(a);
      for (int64_t t : {0, 111, 299}) {
        AttnSeq s1 = sq;
        s1.q = q.data() + t * qs, s1.out = one.data(), s1.n_q = 1, s1.q_pos0 = pos0 + t;
        a.seqs = &s1;
        cpu_backend().attention(a);
        CHECK(std::memcmp(one.data(), all.data() + t * qs, sizeof(float) * size_t(qs)) == 0);
      }
    }
  set_cpu_threads(saved);
}

TEST_CASE("attention with a sliding window sees only the last keys, contiguous and paged", "[cpu_backend]") {
  for (int64_t w : {1, 4, 16, 100})
    for (int64_t bs : {0, 3, 16}) check_attention(bs, DType::F32, w);
  check_attention(16, DType::BF16, 7);
}

TEST_CASE("attention rejects a bad KV dtype and missing block tables", "[cpu_backend]") {
  std::vector<float> q(8, 0.0f), o(8, 0.0f);
  AttnSeq sq{q.data(), o.data(), q.data(), q.data(), 1, 0};
  AttnArgs a;
  a.seqs = &sq;
  a.n_seqs = 1;
  a.n_heads = a.n_kv_heads = 1;
  a.head_dim = 8;
  a.q_stride = a.out_stride = a.kv_stride = 8;
  a.kv_dtype = DType::F16;
  CHECK_THROWS_WITH(cpu_backend().attention(a), Catch::Contains("KV dtype"));
  a.kv_dtype = DType::F32;
  a.block_size = 4;  // paged, but the sequence has no block tables
  CHECK_THROWS_WITH(cpu_backend().attention(a), Catch::Contains("null keys or values"));
  void* blocks[1] = {q.data()};
  sq.k_blocks = sq.v_blocks = blocks;
  sq.n_blocks = 1;
  sq.q_pos0 = 4;  // key position 4 lies in a second block the table does not have
  CHECK_THROWS_WITH(cpu_backend().attention(a), Catch::Contains("past the block table"));
}

TEST_CASE("paged_write / paged_read: rows across blocks, column ranges, bf16 rounding, errors", "[cpu_backend]") {
  for (DType dt : {DType::F32, DType::BF16}) {
    INFO("dtype " << dtype_name(dt));
    const int64_t bs = 5, stride = 11, n_blocks = 4, col0 = 3, cols = 6, pos0 = 3, rows = 14, lds = 9;
    const size_t es = dtype_size(dt);
    std::vector<unsigned char> pool(size_t(n_blocks * bs * stride) * es, 0xab);
    const std::vector<unsigned char> before = pool;
    std::vector<void*> blocks;
    for (int64_t b = 0; b < n_blocks; ++b) blocks.push_back(pool.data() + size_t((n_blocks - 1 - b) * bs * stride) * es);
    const PagedRows pr{blocks.data(), bs, stride, dt, n_blocks};
    auto src = randn(size_t(rows * lds), 77);
    cpu_backend().paged_write(pr, pos0, col0, src.data(), lds, rows, cols);
    // Every written element holds the source (rounded for bf16); every other byte is untouched.
    std::vector<bool> written(pool.size(), false);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t p = pos0 + r;
        const size_t off = size_t(static_cast<unsigned char*>(blocks[size_t(p / bs)]) - pool.data()) +
                           size_t((p % bs) * stride + col0 + c) * es;
        for (size_t byte = 0; byte < es; ++byte) written[off + byte] = true;
        const float x = src[size_t(r * lds + c)];
        if (dt == DType::F32) {
          float got;
          std::memcpy(&got, &pool[off], 4);
          CHECK(got == x);
        } else {
          uint16_t got;
          std::memcpy(&got, &pool[off], 2);
          CHECK(got == f32_to_bf16(x));
        }
      }
    for (size_t i = 0; i < pool.size(); ++i)
      if (!written[i]) REQUIRE(pool[i] == before[i]);
    // Reading back gives f32 (the stored values, widened), into a strided destination.
    const int64_t ldd = cols + 2;
    std::vector<float> back(size_t(rows * ldd), -7.0f);
    cpu_backend().paged_read(back.data(), ldd, pr, pos0, col0, rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const float x = src[size_t(r * lds + c)];
        CHECK(back[size_t(r * ldd + c)] == (dt == DType::F32 ? x : round_bf16(x)));
      }
      CHECK(back[size_t(r * ldd + cols)] == -7.0f);
    }
    CHECK_THROWS_WITH(cpu_backend().paged_write(pr, 0, 6, src.data(), lds, 1, 6), Catch::Contains("row stride"));
    CHECK_THROWS_WITH(cpu_backend().paged_read(back.data(), ldd, PagedRows{nullptr, bs, stride, dt, n_blocks}, 0, 0, 1, 1),
                      Catch::Contains("null block table"));
    CHECK_THROWS_WITH(cpu_backend().paged_write(PagedRows{blocks.data(), bs, stride, DType::F16, n_blocks}, 0, 0, src.data(), lds, 1, 1),
                      Catch::Contains("KV dtype"));
    // rows [n_blocks * bs - 1, n_blocks * bs + 1): one past the last block
    CHECK_THROWS_WITH(cpu_backend().paged_write(pr, n_blocks * bs - 1, 0, src.data(), lds, 2, 1),
                      Catch::Contains("past the block table"));
    CHECK_THROWS_WITH(cpu_backend().paged_read(back.data(), ldd, pr, n_blocks * bs, 0, 1, 1), Catch::Contains("past the block table"));
  }
}

TEST_CASE("row statistics: scaled_exp_sum and row_max", "[cpu_backend]") {
  for (int64_t n : {1, 7, 8, 100, 1001}) {
    auto z = randn(size_t(n), uint32_t(70 + n), 4.0f);
    const float scale = 1.0f / 0.6f;
    const float shift = row_max(z.data(), n) * scale;
    CHECK(shift == *std::max_element(z.begin(), z.end()) * scale);
    std::vector<float> e(static_cast<size_t>(n));
    double dot = 0;
    const double sum = scaled_exp_sum(z.data(), n, scale, shift, e.data(), &dot);
    double rs = 0, rd = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float zs = z[size_t(j)] * scale;
      // exp of the f32 argument the kernel forms; the polynomial exp is documented at ~2e-7
      // relative (3.4 u), and arguments below -87 flush to 0.
      const double ej = std::exp(double(zs - shift));
      CHECK(std::fabs(e[size_t(j)] - ej) <= 8 * kU * ej + 1e-37);
      rs += ej;
      rd += ej * zs;
    }
    CHECK(std::fabs(sum - rs) <= 8 * kU * rs);
    CHECK(std::fabs(dot - rd) <= 8 * kU * (std::fabs(rd) + rs * 4 * scale * 4));
  }
}

TEST_CASE("bulk conversions: bf16 and f16 widen exactly, f32 rounds as the scalar conversions", "[cpu_backend]") {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i);
  std::vector<float> wide(all.size());
  REQUIRE(convert_to_f32(wide.data(), all.data(), DType::BF16, all.size()));
  for (size_t i = 0; i < all.size(); ++i) {
    const float r = bf16_to_f32(all[i]);
    CHECK((std::memcmp(&wide[i], &r, 4) == 0 || (std::isnan(r) && std::isnan(wide[i]))));
  }
  REQUIRE(convert_to_f32(wide.data(), all.data(), DType::F16, all.size()));
  size_t bad = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    const float r = f16_to_f32(all[i]);
    if (!(std::memcmp(&wide[i], &r, 4) == 0 || (std::isnan(r) && std::isnan(wide[i])))) ++bad;
  }
  CHECK(bad == 0);
  auto f = randn(1000, 80, 100.0f);
  std::vector<uint16_t> back(f.size());
  REQUIRE(convert_from_f32(back.data(), f.data(), DType::BF16, f.size()));
  for (size_t i = 0; i < f.size(); ++i) CHECK(back[i] == f32_to_bf16(f[i]));
  REQUIRE(convert_from_f32(back.data(), f.data(), DType::F16, f.size()));
  for (size_t i = 0; i < f.size(); ++i) CHECK(back[i] == f32_to_f16(f[i]));
}

namespace {

// Double-precision causal attention of one packed batch and its gradients, for the flash kernels.
struct FlashRef {
  std::vector<double> o, lse, dq, dk, dv;
};

FlashRef flash_reference(const FlashAttnArgs& a, const std::vector<float>& dout) {
  const int64_t rows = a.seq_start[a.n_seqs], H = a.n_heads, group = a.n_heads / a.n_kv_heads;
  FlashRef r;
  r.o.assign(size_t(rows * a.o_stride), 0.0);
  r.lse.assign(size_t(rows * H), 0.0);
  r.dq.assign(size_t(rows * a.q_stride), 0.0);
  r.dk.assign(size_t(rows * a.k_stride), 0.0);
  r.dv.assign(size_t(rows * a.v_stride), 0.0);
  for (int s = 0; s < a.n_seqs; ++s) {
    const int64_t b = a.seq_start[s], n = a.seq_start[s + 1] - b;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < n; ++i) {
        const float* q = a.q + (b + i) * a.q_stride + h * a.dk;
        const int64_t j0 = a.window > 0 && i + 1 > a.window ? i + 1 - a.window : 0;  // sliding window
        std::vector<double> p(static_cast<size_t>(i + 1), 0.0);
        double mx = -1e300, z = 0;
        for (int64_t j = j0; j <= i; ++j) {
          double d = 0;
          for (int c = 0; c < a.dk; ++c) d += double(q[c]) * a.k[(b + j) * a.k_stride + g * a.dk + c];
          p[size_t(j)] = d * a.scale;
          mx = std::max(mx, p[size_t(j)]);
        }
        for (int64_t j = j0; j <= i; ++j) z += (p[size_t(j)] = std::exp(p[size_t(j)] - mx));
        r.lse[size_t((b + i) * H + h)] = mx + std::log(z);
        for (auto& e : p) e /= z;
        const float* go = &dout[size_t((b + i) * a.o_stride + h * a.dv)];
        double D = 0;
        for (int c = 0; c < a.dv; ++c) {
          double o = 0;
          for (int64_t j = 0; j <= i; ++j) o += p[size_t(j)] * a.v[(b + j) * a.v_stride + g * a.dv + c];
          r.o[size_t((b + i) * a.o_stride + h * a.dv + c)] = o;
          D += o * go[c];
        }
        for (int64_t j = 0; j <= i; ++j) {
          double dp = 0;
          for (int c = 0; c < a.dv; ++c) {
            dp += double(go[c]) * a.v[(b + j) * a.v_stride + g * a.dv + c];
            r.dv[size_t((b + j) * a.v_stride + g * a.dv + c)] += p[size_t(j)] * go[c];
          }
          const double ds = p[size_t(j)] * (dp - D) * a.scale;
          for (int c = 0; c < a.dk; ++c) {
            r.dq[size_t((b + i) * a.q_stride + h * a.dk + c)] += ds * a.k[(b + j) * a.k_stride + g * a.dk + c];
            r.dk[size_t((b + j) * a.k_stride + g * a.dk + c)] += ds * q[c];
          }
        }
      }
    }
  }
  return r;
}

// max |got - ref| over the heads' columns of every row, relative to max |ref|.
double rel_err(const float* got, const std::vector<double>& ref, int64_t rows, int64_t stride, int64_t width) {
  double err = 0, mag = 0;
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t c = 0; c < width; ++c) {
      err = std::max(err, std::fabs(got[t * stride + c] - ref[size_t(t * stride + c)]));
      mag = std::max(mag, std::fabs(ref[size_t(t * stride + c)]));
    }
  return mag > 0 ? err / mag : err;  // (a window of 1 key: the exact dq and dk are 0)
}

}  // namespace

TEST_CASE("flash attention forward and backward against a double-precision n x n reference", "[cpu_backend][flash]") {
  struct Case {
    std::vector<int64_t> lens;
    int heads, kv, dk, dv;
    int64_t window = 0;
  };
  // Sequences shorter than, equal to and longer than the 32-query / 64-key tiles, several per
  // batch; GQA groups 1, 2 and 4; MLA-like dk != dv; head dims that are not multiples of 8;
  // sliding windows shorter than, across and longer than the tiles.
  const std::vector<Case> cases = {{{1, 5, 31}, 2, 2, 8, 8},        {{32, 33, 64, 65}, 4, 2, 16, 16},
                                   {{200}, 4, 1, 12, 12},            {{70, 3}, 3, 3, 24, 16},
                                   {{129}, 8, 2, 7, 5},              {{200}, 4, 1, 12, 12, 37},
                                   {{129, 70}, 8, 2, 7, 5, 64},      {{65, 33, 1}, 4, 2, 16, 16, 1},
                                   {{300}, 2, 2, 8, 8, 100},         {{40}, 2, 1, 8, 8, 1000}};
  for (const Case& cs : cases) {
    std::vector<int64_t> starts{0};
    for (int64_t n : cs.lens) starts.push_back(starts.back() + n);
    const int64_t rows = starts.back();
    FlashAttnArgs a;
    a.n_seqs = int(cs.lens.size());
    a.seq_start = starts.data();
    a.n_heads = cs.heads, a.n_kv_heads = cs.kv, a.dk = cs.dk, a.dv = cs.dv;
    a.q_stride = cs.heads * cs.dk + 3, a.k_stride = cs.kv * cs.dk + 1, a.v_stride = cs.kv * cs.dv + 2;
    a.o_stride = cs.heads * cs.dv + 5;
    a.scale = 1.0f / std::sqrt(float(cs.dk));
    a.window = cs.window;
    auto q = randn(size_t(rows * a.q_stride), 91, 1.5f), k = randn(size_t(rows * a.k_stride), 92, 1.5f);
    auto v = randn(size_t(rows * a.v_stride), 93), dout = randn(size_t(rows * a.o_stride), 94);
    std::vector<float> o(size_t(rows * a.o_stride), 0.0f), lse(size_t(rows * cs.heads));
    a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data(), a.lse = lse.data();
    INFO("heads " << cs.heads << " kv " << cs.kv << " dk " << cs.dk << " dv " << cs.dv << " rows " << rows << " window "
                  << cs.window);
    cpu_backend().attention_fwd_train(a);
    FlashAttnBwdArgs b;
    b.fwd = a;
    std::vector<float> dq(size_t(rows * a.q_stride)), dk(size_t(rows * a.k_stride)), dv(size_t(rows * a.v_stride)),
        delta(size_t(rows * cs.heads));
    b.dout = dout.data(), b.dq = dq.data(), b.dk = dk.data(), b.dv = dv.data(), b.delta = delta.data();
    cpu_backend().attention_bwd(b);
    const FlashRef ref = flash_reference(a, dout);
    // f32 sums of at most n + d terms of magnitude <= max|ref| x (a few): gamma_{n+d} relative to
    // the largest value, times 8 for the exp (3.4 u) and the rescaling steps of the online softmax.
    const double tol = 8 * gamma(rows + 64);
    CHECK(rel_err(o.data(), ref.o, rows, a.o_stride, cs.heads * cs.dv) <= tol);
    for (int64_t t = 0; t < rows * cs.heads; ++t) CHECK(std::fabs(lse[size_t(t)] - ref.lse[size_t(t)]) <= tol * 8);
    CHECK(rel_err(dq.data(), ref.dq, rows, a.q_stride, cs.heads * cs.dk) <= tol);
    CHECK(rel_err(dk.data(), ref.dk, rows, a.k_stride, cs.kv * cs.dk) <= tol);
    CHECK(rel_err(dv.data(), ref.dv, rows, a.v_stride, cs.kv * cs.dv) <= tol);

    // The same result, bit for bit, on one thread (no atomics, every row written by one item).
    const int threads = cpu_threads();
    set_cpu_threads(1);
    std::vector<float> o1(o.size(), 0.0f), lse1(lse.size()), dq1(dq.size()), dk1(dk.size()), dv1(dv.size());
    FlashAttnArgs a1 = a;
    a1.o = o1.data(), a1.lse = lse1.data();
    cpu_backend().attention_fwd_train(a1);
    FlashAttnBwdArgs b1 = b;
    b1.fwd = a1, b1.dq = dq1.data(), b1.dk = dk1.data(), b1.dv = dv1.data();
    cpu_backend().attention_bwd(b1);
    set_cpu_threads(threads);
    CHECK(o1 == o);
    CHECK(lse1 == lse);
    CHECK(dq1 == dq);
    CHECK(dk1 == dk);
    CHECK(dv1 == dv);
  }
}

TEST_CASE("flash attention rejects bad arguments with a BackendError naming the problem", "[cpu_backend][flash]") {
  std::vector<float> x(64, 0.0f);
  std::vector<int64_t> starts{0, 2};
  FlashAttnArgs a;
  a.q = a.k = a.v = x.data();
  a.o = x.data();
  a.seq_start = starts.data();
  a.n_seqs = 1;
  a.n_heads = 3, a.n_kv_heads = 2, a.dk = 4, a.dv = 4;
  a.q_stride = a.k_stride = a.v_stride = a.o_stride = 12;
  CHECK_THROWS_WITH(cpu_backend().attention_fwd_train(a), Catch::Contains("multiple of n_kv_heads"));
  a.n_kv_heads = 3;
  a.k_stride = 4;
  CHECK_THROWS_WITH(cpu_backend().attention_fwd_train(a), Catch::Contains("row stride"));
  a.k_stride = 12;
  starts[1] = -1;
  CHECK_THROWS_WITH(cpu_backend().attention_fwd_train(a), Catch::Contains("seq_start"));
  FlashAttnBwdArgs b;
  b.fwd = a;
  starts[1] = 2;
  CHECK_THROWS_WITH(cpu_backend().attention_bwd(b), Catch::Contains("null pointer"));
}

namespace {

// Runs f with 1 thread and with 2, returning both results (the training ops promise the same bits).
template <class F>
auto with_1_and_2_threads(F f) {
  set_cpu_threads(1);
  auto one = f();
  set_cpu_threads(2);
  auto two = f();
  set_cpu_threads(0);
  return std::make_pair(one, two);
}

}  // namespace

TEST_CASE("rmsnorm_bwd against double, and the same bits for 1 and 2 threads", "[cpu_backend][train_ops]") {
  for (int64_t dim : {1, 7, 64, 133}) {
    const int64_t rows = 37;
    INFO("dim " << dim);
    auto x = randn(size_t(rows * dim), 41), w = randn(size_t(dim), 42), dy = randn(size_t(rows * dim), 43);
    const auto dx0 = randn(size_t(rows * dim), 44), dw0 = randn(size_t(dim), 45);
    std::vector<float> y(x.size()), rstd(static_cast<size_t>(rows));
    cpu_backend().rmsnorm(y.data(), x.data(), w.data(), rows, dim, 1e-6f, rstd.data());
    auto run = [&] {
      auto dx = dx0, dw = dw0;
      cpu_backend().rmsnorm_bwd(dx.data(), dw.data(), x.data(), w.data(), rstd.data(), dy.data(), rows, dim);
      return std::make_pair(dx, dw);
    };
    auto [one, two] = with_1_and_2_threads(run);
    CHECK(one == two);
    const auto& [dx, dw] = one;
    for (int64_t r = 0; r < rows; ++r) {
      const double rs = rstd[size_t(r)];
      double dot = 0, dot_abs = 0;
      for (int64_t i = 0; i < dim; ++i) {
        const double t = double(w[size_t(i)]) * dy[size_t(r * dim + i)] * x[size_t(r * dim + i)];
        dot += t;
        dot_abs += std::fabs(t);
      }
      for (int64_t i = 0; i < dim; ++i) {
        const size_t k = size_t(r * dim + i);
        const double a = rs * w[size_t(i)] * dy[k], b = dot * rs * rs * rs / double(dim) * x[k];
        const double e = dx0[k] + a - b;
        // the row dot in double, then a handful of f32 roundings of each term and the sum
        const double tol = 8 * kU * (std::fabs(dx0[k]) + std::fabs(a) + dot_abs * rs * rs * rs / double(dim) * std::fabs(x[k]));
        CHECK(std::fabs(dx[k] - e) <= tol + 1e-30);
      }
    }
    for (int64_t i = 0; i < dim; ++i) {
      double e = dw0[size_t(i)], mag = std::fabs(dw0[size_t(i)]);
      for (int64_t r = 0; r < rows; ++r) {
        const double t = double(dy[size_t(r * dim + i)]) * x[size_t(r * dim + i)] * rstd[size_t(r)];
        e += t;
        mag += std::fabs(t);
      }
      CHECK(std::fabs(dw[size_t(i)] - e) <= (gamma(rows + 1) + 4 * kU) * mag);
    }
  }
}

TEST_CASE("rope_bwd is rope's transpose; silu_mul_bwd against double", "[cpu_backend][train_ops]") {
  check_rope(true);
  check_rope(true, true);
  for (int64_t n : {1, 9, 20000}) {
    auto gate = randn(size_t(n), 61, 3.0f), up = randn(size_t(n), 62), dout = randn(size_t(n), 63);
    std::vector<float> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
    cpu_backend().silu_mul_bwd(dg.data(), du.data(), gate.data(), up.data(), dout.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double z = gate[size_t(i)], s = 1.0 / (1.0 + std::exp(-z));
      const double eu = dout[size_t(i)] * z * s, eg = dout[size_t(i)] * up[size_t(i)] * s * (1.0 + z * (1.0 - s));
      const double mag_g = std::fabs(dout[size_t(i)] * up[size_t(i)] * s) * (1.0 + std::fabs(z * (1.0 - s)));
      CHECK(std::fabs(du[size_t(i)] - eu) <= 12 * kU * std::fabs(eu) + 1e-30);  // expf 1 ulp + roundings
      CHECK(std::fabs(dg[size_t(i)] - eg) <= 16 * kU * mag_g + 1e-30);
    }
  }
}

TEST_CASE("gather_rows, scatter_add_rows and add_column_sums: exact, in row order, any thread count",
          "[cpu_backend][train_ops]") {
  const int64_t V = 11, dim = 133, n = 50;
  auto table = randn(size_t(V * dim), 71);
  std::vector<uint16_t> tb(table.size()), th(table.size());
  for (size_t i = 0; i < table.size(); ++i) tb[i] = f32_to_bf16(table[i]), th[i] = f32_to_f16(table[i]);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  std::mt19937 rng(72);
  for (auto& id : ids) id = int32_t(rng() % V);  // many repeats
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    INFO("dtype " << dtype_name(dt));
    const void* src = dt == DType::F32 ? static_cast<const void*>(table.data()) : dt == DType::BF16 ? tb.data() : th.data();
    std::vector<float> out(size_t(n * dim));
    cpu_backend().gather_rows(out.data(), src, dt, ids.data(), n, dim);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < dim; ++c) {
        const size_t k = size_t(ids[size_t(r)] * dim + c);
        const float e = dt == DType::F32 ? table[k] : dt == DType::BF16 ? bf16_to_f32(tb[k]) : f16_to_f32(th[k]);
        CHECK(out[size_t(r * dim + c)] == e);
      }
  }
  const auto dx = randn(size_t(n * dim), 73);
  const auto wts = randn(size_t(n), 75);
  for (bool weighted : {false, true}) {
    INFO("weighted " << weighted);
    auto scatter = [&] {
      auto t = table;
      cpu_backend().scatter_add_rows(t.data(), ids.data(), dx.data(), weighted ? wts.data() : nullptr, n, dim);
      return t;
    };
    auto [s1, s2] = with_1_and_2_threads(scatter);
    CHECK(s1 == s2);
    if (!weighted) {  // plain additions in the documented order (rows in order): exact
      auto e = table;
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < dim; ++c) e[size_t(ids[size_t(r)] * dim + c)] += dx[size_t(r * dim + c)];
      CHECK(s1 == e);
      continue;
    }
    // weighted: the compiler may fuse w * s + t into one FMA on a path, so against double with
    // 2 u per rounding step: |error| <= 2 u (k + 1) * sum |terms| for k rows adding to an element.
    std::vector<double> e(table.begin(), table.end()), mag(table.size());
    std::vector<int> k(table.size(), 0);
    for (size_t i = 0; i < table.size(); ++i) mag[i] = std::fabs(table[i]);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < dim; ++c) {
        const size_t i = size_t(ids[size_t(r)] * dim + c);
        const double t = double(wts[size_t(r)]) * dx[size_t(r * dim + c)];
        e[i] += t;
        mag[i] += std::fabs(t);
        ++k[i];
      }
    for (size_t i = 0; i < table.size(); ++i) CHECK(std::fabs(s1[i] - e[i]) <= 2 * kU * (k[i] + 1) * mag[i]);
  }

  auto colsum = [&] {
    auto o = randn(size_t(dim), 74);
    cpu_backend().add_column_sums(o.data(), dx.data(), n, dim);
    return o;
  };
  auto [c1, c2] = with_1_and_2_threads(colsum);
  CHECK(c1 == c2);
  auto ec = randn(size_t(dim), 74);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < dim; ++c) ec[size_t(c)] += dx[size_t(r * dim + c)];
  CHECK(c1 == ec);
}

TEST_CASE("sum_squares and adamw_update against double; non-finite input shows", "[cpu_backend][train_ops]") {
  for (int64_t n : {0, 1, 4095, 4097, 50001}) {
    INFO("n " << n);
    const auto x = randn(size_t(n), uint32_t(80 + n));
    auto [s1, s2] = with_1_and_2_threads([&] { return cpu_backend().sum_squares(x.data(), n); });
    CHECK(s1 == s2);
    double e = 0;
    for (float v : x) e += double(v) * v;
    CHECK(std::fabs(s1 - e) <= 1e-13 * e);
  }
  std::vector<float> bad = {1.0f, NAN, 2.0f};
  CHECK_FALSE(std::isfinite(cpu_backend().sum_squares(bad.data(), 3)));
  bad[1] = INFINITY;
  CHECK_FALSE(std::isfinite(cpu_backend().sum_squares(bad.data(), 3)));

  for (float decay : {0.0f, 0.01f}) {
    const int64_t n = 20011;  // threaded branch and a tail
    auto w = randn(size_t(n), 91), m = randn(size_t(n), 92, 0.1f), v = randn(size_t(n), 93, 0.1f);
    for (auto& q : v) q = q * q;
    const auto g = randn(size_t(n), 94), w0 = w, m0 = m, v0 = v;
    AdamWArgs a;
    a.w = w.data(), a.m = m.data(), a.v = v.data(), a.g = g.data(), a.n = n;
    a.lr = 1e-3f, a.beta1 = 0.9f, a.beta2 = 0.999f, a.eps = 1e-8f, a.decay = decay, a.clip = 0.5f;
    const int t = 3;
    a.step_size = float(1e-3 / (1.0 - std::pow(0.9, t)));
    a.bc2_sqrt = float(std::sqrt(1.0 - std::pow(0.999, t)));
    cpu_backend().adamw_update(a);
    // The f32 constants as the kernel has them (0.9f is not 0.9); 1 - beta is exact in f32.
    const double b1 = a.beta1, c1 = 1.0f - a.beta1, b2 = a.beta2, c2 = 1.0f - a.beta2, keep = 1.0f - a.lr * decay;
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = size_t(i);
      const double gi = double(g[k]) * 0.5;  // exact
      const double em = b1 * m0[k] + c1 * gi, ev = b2 * v0[k] + c2 * gi * gi;
      const double wd = double(w0[k]) * keep;
      const double step = double(a.step_size) * em / (std::sqrt(ev) / a.bc2_sqrt + double(a.eps));
      CHECK(std::fabs(m[k] - em) <= 4 * kU * (b1 * std::fabs(m0[k]) + c1 * std::fabs(gi)));
      CHECK(std::fabs(v[k] - ev) <= 5 * kU * ev + 1e-30);
      CHECK(std::fabs(w[k] - (wd - step)) <= 4 * kU * std::fabs(wd) + 16 * kU * std::fabs(step));
    }
  }
}

TEST_CASE("logsoftmax_rows and its backward against double", "[cpu_backend][train_ops]") {
  for (int64_t n : {1, 7, 1000, 32771})
    for (float temp : {1.0f, 0.6f}) {
      const int64_t rows = 5;
      const float inv_t = 1.0f / temp;
      INFO("n " << n << " T " << temp);
      auto z = randn(size_t(rows * n), uint32_t(100 + n), 3.0f);
      auto g = randn(size_t(rows), 101);
      std::vector<int32_t> target(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) target[size_t(r)] = int32_t((r * 7919) % n);
      std::vector<float> lse(static_cast<size_t>(rows)), logp(static_cast<size_t>(rows)), ent(static_cast<size_t>(rows));
      cpu_backend().logsoftmax_rows(z.data(), rows, n, inv_t, target.data(), lse.data(), logp.data(), ent.data());
      auto dz = z;
      cpu_backend().logsoftmax_rows_bwd(dz.data(), rows, n, inv_t, target.data(), lse.data(), g.data());
      for (int64_t r = 0; r < rows; ++r) {
        const float* zr = &z[size_t(r * n)];
        double mx = -INFINITY, smax = 0;
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, double(zr[j]) * inv_t), smax = std::max(smax, std::fabs(double(zr[j]) * inv_t));
        double sum = 0, dot = 0;
        for (int64_t j = 0; j < n; ++j) {
          const double s = double(zr[j]) * inv_t, e = std::exp(s - mx);
          sum += e;
          dot += e * s;
        }
        const double el = mx + std::log(sum), elp = double(zr[target[size_t(r)]]) * inv_t - el, eent = el - dot / sum;
        // the f32 scaled logits (|s| u each), the polynomial exp (2e-7 relative), f32 outputs
        const double tol = 4e-7 + 4 * kU * smax;
        CHECK(std::fabs(lse[size_t(r)] - el) <= tol + 2 * kU * std::fabs(el));
        CHECK(std::fabs(logp[size_t(r)] - elp) <= tol + 2 * kU * std::fabs(elp));
        CHECK(std::fabs(ent[size_t(r)] - eent) <= 2 * tol * (1 + smax) + 2 * kU * std::fabs(eent));
        for (int64_t j = 0; j < n; ++j) {
          const double p = std::exp(double(zr[j]) * inv_t - el);
          const double e = double(g[size_t(r)]) * inv_t * ((j == target[size_t(r)] ? 1.0 : 0.0) - p);
          CHECK(std::fabs(dz[size_t(r * n + j)] - e) <= std::fabs(g[size_t(r)]) * inv_t * (p * 2 * tol + 4 * kU) + 1e-30);
        }
      }
    }
}

TEST_CASE("copy_2d: strided rows, padding untouched, contiguous fast path", "[cpu_backend]") {
  for (auto [rows, cols, ldd, lds] : {std::array<int64_t, 4>{3, 5, 9, 7}, {70000, 3, 4, 3}, {4, 6, 6, 6}, {0, 5, 5, 5}}) {
    INFO("rows " << rows << " cols " << cols << " ldd " << ldd << " lds " << lds);
    const auto src = randn(size_t(std::max<int64_t>(1, rows * lds)), 111);
    std::vector<float> dst(size_t(std::max<int64_t>(1, rows * ldd)), -7.0f);
    cpu_backend().copy_2d(dst.data(), ldd, src.data(), lds, rows, cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < ldd; ++c)
        CHECK(dst[size_t(r * ldd + c)] == (c < cols ? src[size_t(r * lds + c)] : -7.0f));
  }
  std::vector<float> a(4), b(4);
  CHECK_THROWS_AS(cpu_backend().copy_2d(a.data(), 1, b.data(), 2, 2, 2), BackendError);  // ldd < cols
}

TEST_CASE("add_group_sums: column sums of row groups, strided, in row order", "[cpu_backend][train_ops]") {
  const int64_t groups = 13, group = 5, cols = 7, ldx = 11, ldo = 9;
  const auto x = randn(size_t(groups * group * ldx), 121);
  auto out = randn(size_t(groups * ldo), 122);
  const auto out0 = out;
  cpu_backend().add_group_sums(out.data(), ldo, x.data(), ldx, groups, group, cols);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t j = 0; j < ldo; ++j) {
      float e = out0[size_t(g * ldo + j)];  // the same f32 additions, in the same order
      if (j < cols)
        for (int64_t r = 0; r < group; ++r) e += x[size_t((g * group + r) * ldx + j)];
      CHECK(out[size_t(g * ldo + j)] == e);
    }
  CHECK_THROWS_AS(cpu_backend().add_group_sums(out.data(), 3, x.data(), ldx, groups, group, cols), BackendError);
}

// The decode matmul's work sharing (kernels/cpu/row_ranges.h): every chunk is handed out exactly
// once, each thread's own chunks in order from the front, and a stalled thread's range (thread 0
// here starts only after the others have finished) is taken by the others.
TEST_CASE("RowRanges: each chunk once, own range in order, a stalled thread's range taken by the others",
          "[cpu_backend]") {
  for (int threads : {1, 2, 3, 7})
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(5), int64_t(1000)}) {
      INFO("threads " << threads << " chunks " << n);
      reason::kernels::cpu::RowRanges work(n, threads);
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      std::vector<std::vector<int64_t>> got(static_cast<size_t>(threads));
      std::atomic<int> finished{0};
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          if (t == 0)
            while (finished.load() < threads - 1) std::this_thread::yield();
          for (int64_t c; (c = work.next(t)) >= 0;) {
            seen[size_t(c)].fetch_add(1);
            got[size_t(t)].push_back(c);
          }
          finished.fetch_add(1);
        });
      for (auto& th : pool) th.join();
      for (int64_t c = 0; c < n; ++c) CHECK(seen[size_t(c)].load() == 1);
      for (int t = 0; t < threads; ++t) {  // the chunks a thread took from its own range: lo, lo + 1, ...
        const int64_t lo = n * t / threads, hi = n * (t + 1) / threads;
        int64_t expect = lo;
        for (int64_t c : got[size_t(t)])
          if (c >= lo && c < hi) CHECK(c == expect++);
      }
      if (threads > 1) CHECK(got[0].empty());  // the others finished thread 0's range
    }
}
