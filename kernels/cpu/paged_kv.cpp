// The CPU backend's paged KV store ops (backend.h's PagedRows): writes f32 rows into blocks
// (rounded to bf16 when the store is bf16) and reads them back as f32. Rows are spread over the
// threads when there are many (a prompt's keys); a decode step writes one row per sequence.
#include <cstring>
#include <string>

#include "cpu_ops.h"

namespace reason::kernels::cpu {

namespace {

void check_paged(const PagedRows& p, int64_t pos0, int64_t col0, int64_t rows, int64_t cols, const char* op) {
  if (rows < 0 || cols < 0 || pos0 < 0 || col0 < 0) throw BackendError(std::string("cpu ") + op + ": negative size or offset");
  if (rows == 0 || cols == 0) return;
  if (!p.blocks) throw BackendError(std::string("cpu ") + op + ": null block table");
  if (p.block_size <= 0) throw BackendError(std::string("cpu ") + op + ": block_size must be positive");
  if (col0 + cols > p.row_stride) throw BackendError(std::string("cpu ") + op + ": columns past the row stride");
  if (pos0 + rows > p.n_blocks * p.block_size) throw BackendError(std::string("cpu ") + op + ": rows past the block table");
  if (p.dtype != DType::F32 && p.dtype != DType::BF16)
    throw BackendError(std::string("cpu ") + op + ": unsupported KV dtype " + dtype_name(p.dtype));
}

char* row_ptr(const PagedRows& p, int64_t pos, int64_t col0) {
  const int64_t es = int64_t(dtype_size(p.dtype));
  return static_cast<char*>(p.blocks[pos / p.block_size]) + ((pos % p.block_size) * p.row_stride + col0) * es;
}

}  // namespace

void paged_write(const PagedRows& dst, int64_t pos0, int64_t col0, const float* src, int64_t lds, int64_t rows,
                 int64_t cols) {
  check_paged(dst, pos0, col0, rows, cols, "paged_write");
  if (rows == 0 || cols == 0) return;
  if (!src || lds < cols) throw BackendError("cpu paged_write: null source or row stride smaller than cols");
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    char* d = row_ptr(dst, pos0 + r, col0);
    const float* s = src + r * lds;
    if (dst.dtype == DType::F32) {
      std::memcpy(d, s, size_t(cols) * sizeof(float));
    } else {
      uint16_t* h = reinterpret_cast<uint16_t*>(d);
      for (int64_t c = 0; c < cols; ++c) h[c] = f32_to_bf16(s[c]);
    }
  }
}

void paged_read(float* dst, int64_t ldd, const PagedRows& src, int64_t pos0, int64_t col0, int64_t rows, int64_t cols) {
  check_paged(src, pos0, col0, rows, cols, "paged_read");
  if (rows == 0 || cols == 0) return;
  if (!dst || ldd < cols) throw BackendError("cpu paged_read: null destination or row stride smaller than cols");
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const char* s = row_ptr(src, pos0 + r, col0);
    float* d = dst + r * ldd;
    if (src.dtype == DType::F32) {
      std::memcpy(d, s, size_t(cols) * sizeof(float));
    } else {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(s);
      for (int64_t c = 0; c < cols; ++c) d[c] = bf16_to_f32(h[c]);
    }
  }
}

}  // namespace reason::kernels::cpu
