// Block-quantised weights (quant.h) and the CPU backend's matmul on them, on the ISA path in use
// (ctest runs this binary per path: REASON_CPU_ISA=generic|avx2|avx512).
//
// Oracles: llama.cpp's reference quantisers (bytes in tests/fixtures/quant, made by
// make_quant_fixtures.py with gguf-py and ggml's quantize_row_*_ref); the dequantisation, checked
// against gguf-py in test_gguf; and double-precision sums. Tolerances:
// - activations that quantise exactly (int8 values times a power of two, the block maximum 127
//   times it): the kernel's integer sums are exact and only the f32 scaling and accumulation round,
//   so |y - y_ref| <= 1e-5 sum |w x| (a layout or sign error is O(sum |w x|));
// - general activations: each value moves by at most half its block's step d_x / 2, so
//   |y - y_ref| <= sum over blocks of d_x / 2 * sum |w| (+ the same 1e-5 sum |w x|).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../kernels/cpu/isa_ops.h"
#include "fixture_util.h"
#include "reason/kernels/backend.h"
#include "reason/kernels/cpu_isa.h"
#include "reason/kernels/dtype.h"
#include "reason/kernels/quant.h"

using namespace reason::kernels;

namespace {

const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                        DType::Q4_K, DType::Q5_K, DType::Q6_K};

void put_half(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// n rows of k random weights of type t: random bytes (any bit pattern is a valid block; Q8_0 gets
// -128 too) with the f16 scale fields set to finite values.
std::vector<uint8_t> random_weights(DType t, int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> w(dtype_nbytes(t, n * k));
  for (auto& b : w) b = uint8_t(rng());
  std::uniform_real_distribution<float> scale(0.002f, 0.02f), sign(-1.0f, 1.0f);
  const size_t bb = dtype_block_bytes(t);
  for (size_t off = 0; off < w.size(); off += bb) {
    uint8_t* b = w.data() + off;
    switch (t) {
      case DType::Q8_0: case DType::Q4_0: case DType::Q5_0: put_half(b, scale(rng) * (sign(rng) < 0 ? -1.0f : 1.0f)); break;
      case DType::Q4_1: case DType::Q5_1: put_half(b, scale(rng)); put_half(b + 2, sign(rng) * 0.05f); break;
      case DType::Q4_K: case DType::Q5_K: put_half(b, scale(rng) / 8); put_half(b + 2, scale(rng) / 8); break;
      case DType::Q6_K: put_half(b + 208, scale(rng) / 16); break;
      default: break;
    }
  }
  return w;
}

std::vector<float> dequantized(DType t, const std::vector<uint8_t>& w, int64_t n, int64_t k) {
  std::vector<float> f(size_t(n * k));
  for (int64_t j = 0; j < n; ++j) REQUIRE(dequantize_row(t, w.data() + dtype_nbytes(t, j * k), f.data() + j * k, k));
  return f;
}

// Activations the kernels quantise exactly: int8 values q times 2^-e per activation block, with
// |q| = 127 somewhere in each block (the K-quant scale comes from the signed maximum).
std::vector<float> exact_activations(int64_t m, int64_t k, int64_t block, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> q(-126, 126), e(2, 9);
  std::vector<float> x(size_t(m * k));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t b = 0; b < k / block; ++b) {
      const float c = std::ldexp(1.0f, -e(rng));
      for (int64_t l = 0; l < block; ++l) x[size_t(i * k + b * block + l)] = float(q(rng)) * c;
      x[size_t(i * k + b * block + rng() % block)] = (rng() % 2 ? 127.0f : -127.0f) * c;
    }
  return x;
}

int64_t act_block(DType t) { return dtype_block_elems(t) == 256 ? 256 : 32; }

struct Ref {
  std::vector<double> y;      // the product in double
  std::vector<double> exact;  // 1e-5 sum |w x|: the f32 rounding allowed
  std::vector<double> bound;  // exact + sum over blocks of d_x / 2 sum |w|: with activation rounding
};

Ref reference(const std::vector<float>& wf, const std::vector<float>& x, const float* bias, int64_t m, int64_t n,
              int64_t k, int64_t ab) {
  Ref r{std::vector<double>(size_t(m * n)), std::vector<double>(size_t(m * n)), std::vector<double>(size_t(m * n))};
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = bias ? bias[j] : 0.0, a = 0.0, q = 0.0;
      for (int64_t b = 0; b < k / ab; ++b) {
        double amax = 0.0, wabs = 0.0;
        for (int64_t l = b * ab; l < (b + 1) * ab; ++l) {
          const double w = wf[size_t(j * k + l)], v = x[size_t(i * k + l)];
          s += w * v;
          a += std::fabs(w * v);
          amax = std::max(amax, std::fabs(v));
          wabs += std::fabs(w);
        }
        q += amax / 127.0 / 2.0 * wabs;
      }
      r.y[size_t(i * n + j)] = s;
      r.exact[size_t(i * n + j)] = 1e-5 * a + 1e-6;
      r.bound[size_t(i * n + j)] = 1e-5 * a + 1e-6 + q;
    }
  return r;
}

// y = x . w^T (+ bias) through the backend, checked against the double reference within
// `exact ? 1e-5 sum |w x| : that + the activation rounding bound`.
void check_quant_matmul(DType t, int64_t m, int64_t n, int64_t k, bool exact, bool bias, uint32_t seed) {
  INFO(dtype_name(t) << " m=" << m << " n=" << n << " k=" << k << (exact ? " exact" : " general") << " bias=" << bias);
  const auto w = random_weights(t, n, k, seed);
  const auto wf = dequantized(t, w, n, k);
  std::vector<float> x;
  if (exact) {
    x = exact_activations(m, k, act_block(t), seed + 1);
  } else {
    std::mt19937 rng(seed + 1);
    std::normal_distribution<float> d(0.0f, 1.0f);
    x.resize(size_t(m * k));
    for (auto& v : x) v = d(rng);
  }
  std::vector<float> b(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) b[size_t(j)] = 0.01f * float(j % 7);
  const Ref r = reference(wf, x, bias ? b.data() : nullptr, m, n, k, act_block(t));
  // The weights as stored, then in the backend's packed layout when it has one (the x8 interleave
  // for n a multiple of 8): the same products within the same bounds.
  const DType pt = cpu_backend().weight_layout(t, n, k);
  std::vector<uint8_t> packed(dtype_nbytes(pt, n * k));
  if (pt != t) cpu_backend().pack_weight(packed.data(), w.data(), t, pt, n, k);
  for (bool pack : {false, true}) {
    if (pack && pt == t) break;
    INFO("layout " << dtype_name(pack ? pt : t));
    std::vector<float> y(size_t(m * n), 123.0f);
    MatmulArgs a;
    a.x = x.data();
    a.w = pack ? packed.data() : w.data();
    a.w_dtype = pack ? pt : t;
    a.bias = bias ? b.data() : nullptr;
    a.y = y.data();
    a.m = m;
    a.n = n;
    a.k = k;
    cpu_backend().matmul(a);
    // The larger-m path multiplies the dequantised weights with f32 activations: no activation
    // rounding; but for an x8 layout on the AVX2 and AVX-512 paths it is the integer kernels' (an
    // int8 GEMM).
    const bool int8_gemm = pack && cpu_isa() != CpuIsa::Generic;
    const bool rounds_x = (m <= 8 || int8_gemm) && !exact;
    for (size_t i = 0; i < y.size(); ++i) {
      INFO("element " << i << ": " << y[i] << " vs " << r.y[i]);
      REQUIRE(std::fabs(double(y[i]) - r.y[i]) <= (rounds_x ? r.bound[i] : r.exact[i]));
    }
  }
}

}  // namespace

TEST_CASE("quantize_row writes llama.cpp's bytes: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (gguf-py) and Q4_K, Q6_K (ggml)",
          "[quant]") {
  reason::test::Fixture f(std::string(REASON_FIXTURES_DIR) + "/quant/rows.safetensors");
  const auto x = f.floats("x");
  const int64_t rows = 8, k = 512;
  REQUIRE(x.size() == size_t(rows * k));
  for (auto [name, t] : {std::pair{"q8_0", DType::Q8_0}, {"q4_0", DType::Q4_0}, {"q4_1", DType::Q4_1},
                         {"q5_0", DType::Q5_0}, {"q5_1", DType::Q5_1}, {"q4_k", DType::Q4_K}, {"q6_k", DType::Q6_K}}) {
    INFO(name);
    const auto& e = f.entry(name, "U8");
    const size_t row_bytes = dtype_nbytes(t, k);
    REQUIRE(size_t(e.numel) == row_bytes * rows);
    REQUIRE(can_quantize(t));
    std::vector<uint8_t> q(row_bytes);
    for (int64_t r = 0; r < rows; ++r) {
      INFO("row " << r);
      REQUIRE(quantize_row(t, x.data() + r * k, q.data(), k));
      CHECK(std::memcmp(q.data(), static_cast<const uint8_t*>(e.data) + r * row_bytes, row_bytes) == 0);
    }
  }
}

TEST_CASE("quantize_row and dequantize_row refuse partial blocks and types they do not know", "[quant]") {
  std::vector<float> x(512, 0.5f);
  std::vector<uint8_t> q(1024);
  CHECK_FALSE(quantize_row(DType::Q8_0, x.data(), q.data(), 31));
  CHECK_FALSE(quantize_row(DType::Q4_K, x.data(), q.data(), 128));
  CHECK_FALSE(quantize_row(DType::Q5_K, x.data(), q.data(), 256));  // read-only format
  CHECK_FALSE(quantize_row(DType::BF16, x.data(), q.data(), 256));
  CHECK_FALSE(dequantize_row(DType::Q6_K, q.data(), x.data(), 100));
  CHECK_FALSE(dequantize_row(DType::F32, q.data(), x.data(), 32));
  CHECK(dtype_nbytes(DType::Q4_K, 512) == 288);
  CHECK(dtype_size(DType::Q4_K) == 0);
}

TEST_CASE("quantised matmul: exactly quantisable activations give the dequantised product", "[quant]") {
  uint32_t seed = 1;
  for (DType t : kTypes)
    // integer kernels (m <= 8) and dequantised panels, or int8 tiles (4 rows, 2 for the K-quants on
    // AVX2) in blocks of 64 rows
    for (int64_t m : {1, 2, 5, 8, 9, 33, 70})
      for (int64_t k : {256, 768})
        for (int64_t n : {1, 8, 17, 40}) check_quant_matmul(t, m, n, k, true, (m + n) % 2 == 0, seed++);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1}) {
    check_quant_matmul(t, 3, 9, 32 * 3, true, true, seed++);
    for (int64_t m : {1, 8}) check_quant_matmul(t, m, 192, 576, true, false, seed++);  // SmolLM2's k
    check_quant_matmul(t, 3, 16, 32 * 3, true, true, seed++);
  }
}

TEST_CASE("quantised matmul: general activations stay within their int8 rounding", "[quant]") {
  uint32_t seed = 100;
  for (DType t : kTypes)
    for (int64_t m : {1, 4, 12})
      for (int64_t n : {37, 48}) check_quant_matmul(t, m, n, 512, false, m == 4, seed++);
}

TEST_CASE("quantised matmul accumulates with beta and strided rows", "[quant]") {
  const DType t = DType::Q4_K;
  const int64_t m = 3, n = 20, k = 256, ldx = 300, ldy = 27;
  const auto w = random_weights(t, n, k, 7);
  const auto wf = dequantized(t, w, n, k);
  const auto xs = exact_activations(m, k, 256, 8);
  std::vector<float> x(size_t(m * ldx), 99.0f), y(size_t(m * ldy));
  for (int64_t i = 0; i < m; ++i) std::copy(xs.begin() + i * k, xs.begin() + (i + 1) * k, x.begin() + i * ldx);
  for (size_t i = 0; i < y.size(); ++i) y[i] = float(i % 5);
  const auto y0 = y;
  MatmulArgs a;
  a.x = x.data();
  a.w = w.data();
  a.w_dtype = t;
  a.y = y.data();
  a.m = m;
  a.n = n;
  a.k = k;
  a.ldx = ldx;
  a.ldy = ldy;
  a.beta = 1.0f;
  cpu_backend().matmul(a);
  const Ref r = reference(wf, xs, nullptr, m, n, k, 256);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j)
      CHECK(std::fabs(y[size_t(i * ldy + j)] - (y0[size_t(i * ldy + j)] + r.y[size_t(i * n + j)])) <=
            r.exact[size_t(i * n + j)]);
    for (int64_t j = n; j < ldy; ++j) CHECK(y[size_t(i * ldy + j)] == y0[size_t(i * ldy + j)]);  // padding untouched
  }
}

TEST_CASE("quantised weights: gather_rows dequantises rows; bad shapes are refused by name", "[quant]") {
  for (DType t : kTypes) {
    INFO(dtype_name(t));
    const int64_t rows = 5, dim = 512;
    const auto w = random_weights(t, rows, dim, 11);
    const auto wf = dequantized(t, w, rows, dim);
    const int32_t ids[3] = {4, 0, 4};
    std::vector<float> out(3 * dim);
    cpu_backend().gather_rows(out.data(), w.data(), t, ids, 3, dim);
    for (int r = 0; r < 3; ++r)
      CHECK(std::memcmp(out.data() + r * dim, wf.data() + ids[r] * dim, size_t(dim) * 4) == 0);
    CHECK_THROWS_WITH(cpu_backend().gather_rows(out.data(), w.data(), t, ids, 1, 100), Catch::Contains("whole"));
    std::vector<float> x(300, 1.0f), y(4);
    MatmulArgs a;
    a.x = x.data();
    a.w = w.data();
    a.w_dtype = t;
    a.y = y.data();
    a.m = 1;
    a.n = 1;
    a.k = 300;
    CHECK_THROWS_WITH(cpu_backend().matmul(a), Catch::Contains("needs k a multiple of"));
  }
}


TEST_CASE("x8 layouts: pack and unpack are inverse, rows gather as stored, bad shapes are refused", "[quant]") {
  for (DType t : kTypes) {
    INFO(dtype_name(t));
    const int64_t rows = 24, k = dtype_block_elems(t) == 256 ? 512 : 96;
    const DType x8 = x8_layout_of(t);
    REQUIRE(dtype_row_group(x8) == 8);
    REQUIRE(dtype_block_format(x8) == t);
    REQUIRE(cpu_backend().weight_layout(t, rows, k) == x8);
    const auto w = random_weights(t, rows, k, 21);  // (Q4_K: any 12 scale bytes are 16 6-bit values)
    std::vector<uint8_t> packed(dtype_nbytes(x8, rows * k)), back(w.size());
    // Q4_K / Q5_K hold their 6-bit scales and mins as bytes: 4 more bytes per row super-block.
    CHECK(packed.size() == (t == DType::Q4_K || t == DType::Q5_K ? w.size() / dtype_block_bytes(t) * (dtype_block_bytes(t) + 4) : w.size()));
    cpu_backend().pack_weight(packed.data(), w.data(), t, x8, rows, k);
    CHECK(packed != w);  // interleaved
    REQUIRE(unpack_x8(x8, packed.data(), back.data(), rows, k));
    CHECK(back == w);
    // The scales d of rows 0..7 of block 0 come first, as one vector (Q6_K's d ends its block).
    const size_t d_at = t == DType::Q6_K ? 208 : 0;
    for (int r = 0; r < 8; ++r) CHECK(std::memcmp(packed.data() + 2 * r, w.data() + size_t(r) * dtype_nbytes(t, k) + d_at, 2) == 0);
    const size_t row_bytes = dtype_nbytes(t, k);
    std::vector<uint8_t> row(row_bytes);
    for (int64_t r : {0, 7, 13, 23}) {
      REQUIRE(unpack_x8_row(x8, packed.data(), r, k, row.data()));
      CHECK(std::memcmp(row.data(), w.data() + size_t(r) * row_bytes, row_bytes) == 0);
    }
    const auto wf = dequantized(t, w, rows, k);
    const int32_t ids[4] = {23, 0, 9, 9};
    std::vector<float> out(4 * k);
    cpu_backend().gather_rows(out.data(), packed.data(), x8, ids, 4, k);
    for (int r = 0; r < 4; ++r) CHECK(std::memcmp(out.data() + r * k, wf.data() + ids[r] * k, size_t(k) * 4) == 0);
    // Whole groups of 8 rows and whole blocks only; the block formats without an x8 layout keep theirs.
    CHECK(cpu_backend().weight_layout(t, 12, k) == t);
    CHECK_FALSE(pack_x8(x8, w.data(), packed.data(), 12, k));
    CHECK_FALSE(pack_x8(t, w.data(), packed.data(), 8, k));
    CHECK_THROWS_WITH(cpu_backend().pack_weight(packed.data(), w.data(), t, x8, 12, k), Catch::Contains("cannot pack"));
    std::vector<float> x(size_t(k), 1.0f), y(16);
    MatmulArgs a;
    a.x = x.data();
    a.w = packed.data();
    a.w_dtype = x8;
    a.y = y.data();
    a.m = 1;
    a.n = 12;
    a.k = k;
    CHECK_THROWS_WITH(cpu_backend().matmul(a), Catch::Contains("needs n a multiple of 8"));
  }
  for (DType t : {DType::F32, DType::BF16}) CHECK(cpu_backend().weight_layout(t, 64, 256) == t);
}

TEST_CASE("the AVX-512 path uses AVX512-VNNI where the CPU has it, unless REASON_CPU_VNNI=0", "[quant]") {
  const char* off = std::getenv("REASON_CPU_VNNI");
  const bool expect = cpu_isa() == CpuIsa::AVX512 && __builtin_cpu_supports("avx512vnni") &&
                      !(off && std::string(off) == "0");
  INFO(cpu_isa_description());
  CHECK((cpu_isa_description().find("int8 dot products: avx512vnni") != std::string::npos) == expect);
}

TEST_CASE("activation rows quantise to the same int8 blocks on every ISA path", "[quant]") {
  namespace cpu = reason::kernels::cpu;
  // Normal values, zero blocks, and blocks whose scaled values are exact halves (ties: rounded to
  // even, as nearbyint) or beyond +-127 after rounding.
  const int64_t k = 1024;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(k));
  for (auto& v : x) v = nd(rng);
  for (int l = 0; l < 32; ++l) x[size_t(l)] = 0.0f;                                       // a zero block
  for (int l = 0; l < 32; ++l) x[size_t(32 + l)] = l == 0 ? -127.0f : float(l % 9) - 4.5f;  // ties
  for (bool kq : {false, true}) {
    INFO((kq ? "ActQ8K" : "ActQ8"));
    const size_t bytes = kq ? sizeof(cpu::ActQ8K) * size_t(k / 256) : sizeof(cpu::ActQ8) * size_t(k / 32);
    std::vector<uint8_t> ref(bytes), out(bytes);
    cpu::isa_generic::table().quantize_act(x.data(), k, kq, ref.data());
    if (!kq) {  // the tie block: d = 1, q = nearest-even(x)
      const auto* b = reinterpret_cast<const cpu::ActQ8*>(ref.data()) + 1;
      CHECK(b->d == 1.0f);
      for (int l = 1; l < 32; ++l) CHECK(b->qs[l] == int(std::nearbyint(float(l % 9) - 4.5f)));
    }
    for (CpuIsa isa : {CpuIsa::AVX2, CpuIsa::AVX512}) {
      if (!cpu_isa_supported(isa)) continue;
      INFO(cpu_isa_name(isa));
      const auto& t = isa == CpuIsa::AVX2 ? cpu::isa_avx2::table() : cpu::isa_avx512::table();
      t.quantize_act(x.data(), k, kq, out.data());
      CHECK(out == ref);
    }
  }
}
