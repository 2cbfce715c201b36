// oneDNN (v2 desc API) matmul with a per-shape primitive cache.
// The weight is a Hugging Face Linear weight [n, k] row-major, described to oneDNN as the
// [k, n] matrix with strides {1, k} so no transpose copy is made. bf16 weights are multiplied
// with bf16-rounded activations, accumulating into an f32 destination.
#include <omp.h>

#include <dnnl.hpp>
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "cpu_ops.h"
#include "isa_ops.h"
#include "reason/kernels/quant.h"
#include "reason/kernels/quant.h"

namespace reason::kernels::cpu {

namespace {

using dt = dnnl::memory::data_type;
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int, bool, bool>;

struct Entry {
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, bias, dst, scratch;
};

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

std::mutex g_mu;
std::map<Key, std::shared_ptr<Entry>> g_cache;

std::shared_ptr<Entry> get_entry(const MatmulArgs& a, int64_t ldx, int64_t ldy) {
  bool bf16 = a.w_dtype == DType::BF16;
  Key key{a.m, a.n, a.k, ldx, ldy, int(a.w_dtype), a.bias != nullptr, a.beta != 0.0f};
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_cache.find(key);
  if (it != g_cache.end()) return it->second;
  auto e = std::make_shared<Entry>();
  dt in_t = bf16 ? dt::bf16 : dt::f32;
  e->src = dnnl::memory::desc({a.m, a.k}, in_t, {bf16 ? a.k : ldx, 1});
  e->wei = dnnl::memory::desc({a.k, a.n}, in_t, {1, a.k});
  e->dst = dnnl::memory::desc({a.m, a.n}, dt::f32, {ldy, 1});
  if (a.bias) e->bias = dnnl::memory::desc({1, a.n}, dt::f32, {a.n, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (a.beta != 0.0f) {
    dnnl::post_ops po;
    po.append_sum(a.beta);
    attr.set_post_ops(po);
  }
  try {
    auto desc = a.bias ? dnnl::matmul::desc(e->src, e->wei, e->bias, e->dst) : dnnl::matmul::desc(e->src, e->wei, e->dst);
    dnnl::matmul::primitive_desc pd(desc, attr, engine());
    e->prim = dnnl::matmul(pd);
    e->scratch = pd.scratchpad_desc();
  } catch (const dnnl::error& err) {
    throw BackendError(std::string("oneDNN matmul primitive creation failed: ") + err.what());
  }
  g_cache.emplace(key, e);
  return e;
}

}  // namespace

// bf16 weights on a path without oneDNN bf16 (it needs AVX-512), and quantised weights: x rounded to
// bf16 and widened once (bf16 only), the weights widened or dequantised panel by panel (a few MB,
// reused for all m rows), then oneDNN f32. bf16 x bf16 products are exact in f32, so for bf16 this
// computes what the bf16 primitive computes, up to the order of the f32 sums.
void matmul_dequantized(const MatmulArgs& a, int64_t ldx, int64_t ldy) {
  const IsaOps& ops = isa_ops();
  const int nt = cpu_threads();
  const bool bf16 = a.w_dtype == DType::BF16;
  const float* x = a.x;
  if (bf16) {
    float* xr = static_cast<float*>(thread_scratch(sizeof(float) * size_t(a.m * a.k), 3));
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < a.m; ++i)
      for (int64_t j = 0; j < a.k; ++j) xr[i * a.k + j] = bf16_to_f32(f32_to_bf16(a.x[i * ldx + j]));
    x = xr;
    ldx = a.k;
  }
  // Panels of 64-row multiples, about 4 MB of f32: two distinct shapes (full and tail) per matrix.
  const int64_t target = (int64_t(1) << 20) / std::max<int64_t>(a.k, 1);
  const int64_t nc = std::min(a.n, std::max<int64_t>(64, target / 64 * 64));
  float* panel = static_cast<float*>(thread_scratch(sizeof(float) * size_t(nc * a.k), 2));
  const uint8_t* w = static_cast<const uint8_t*>(a.w);
  const size_t w_row = dtype_nbytes(a.w_dtype, a.k);
  // An x8 layout (panels are multiples of 8 rows) goes back to its block format 8 rows at a time,
  // in a per-thread buffer, before the block format's dequantisation.
  const DType wt = dtype_block_format(a.w_dtype);
  const int64_t group = dtype_row_group(a.w_dtype);
  const size_t base_row = dtype_nbytes(wt, a.k);  // (Q4_Kx8 rows are longer than Q4_K's)
  uint8_t* unpacked = group > 1 ? static_cast<uint8_t*>(thread_scratch(size_t(nt) * 8 * base_row, 1)) : nullptr;
  for (int64_t j0 = 0; j0 < a.n; j0 += nc) {
    const int64_t rows = std::min(nc, a.n - j0);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r += group) {
      const uint8_t* src = w + size_t(j0 + r) * w_row;
      if (group > 1) {
        uint8_t* buf = unpacked + size_t(omp_get_thread_num()) * 8 * base_row;
        unpack_x8(a.w_dtype, src, buf, 8, a.k);
        for (int i = 0; i < 8; ++i) ops.dequantize_rows(wt, buf + i * base_row, panel + (r + i) * a.k, a.k);
      } else if (bf16) {
        ops.bf16_to_f32(panel + r * a.k, reinterpret_cast<const uint16_t*>(src), size_t(a.k));
      } else {
        ops.dequantize_rows(wt, src, panel + r * a.k, a.k);
      }
    }
    MatmulArgs p = a;
    p.x = x;
    p.ldx = ldx;
    p.w = panel;
    p.w_dtype = DType::F32;
    p.bias = a.bias ? a.bias + j0 : nullptr;
    p.y = a.y + j0;
    p.ldy = ldy;
    p.n = rows;
    matmul_onednn(p);
  }
}

void matmul_onednn(const MatmulArgs& a) {
  const int64_t ldx = a.ldx ? a.ldx : a.k;
  const int64_t ldy = a.ldy ? a.ldy : a.n;
  const bool bf16 = a.w_dtype == DType::BF16;
  if (bf16 && isa_ops().isa != CpuIsa::AVX512) return matmul_dequantized(a, ldx, ldy);
  auto e = get_entry(a, ldx, ldy);

  thread_local std::vector<uint16_t> xb;
  thread_local std::vector<uint8_t> scratch;
  thread_local std::unique_ptr<dnnl::stream> stream;
  if (!stream) stream = std::make_unique<dnnl::stream>(engine());
  omp_set_num_threads(cpu_threads());

  void* src_ptr = const_cast<float*>(a.x);
  if (bf16) {
    xb.resize(size_t(a.m * a.k));
    uint16_t* d = xb.data();
    const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < a.m; ++i)
      for (int64_t j = 0; j < a.k; ++j) d[i * a.k + j] = f32_to_bf16(a.x[i * ldx + j]);
    src_ptr = d;
  }
  size_t sbytes = e->scratch.get_size();
  if (scratch.size() < sbytes) scratch.resize(sbytes);
  try {
    auto& eng = engine();
    dnnl::memory src(e->src, eng, src_ptr);
    dnnl::memory wei(e->wei, eng, const_cast<void*>(a.w));
    dnnl::memory dst(e->dst, eng, a.y);
    dnnl::memory scr(e->scratch, eng, scratch.data());
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scr}};
    if (a.bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e->bias, eng, const_cast<float*>(a.bias)));
    e->prim.execute(*stream, args);
    stream->wait();
  } catch (const dnnl::error& err) {
    throw BackendError(std::string("oneDNN matmul failed: ") + err.what());
  }
}

}  // namespace reason::kernels::cpu
