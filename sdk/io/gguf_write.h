// Writing GGUF v3 files (the layout gguf.h reads): header, metadata in the given order, tensor
// descriptions, then each tensor's data aligned to general.alignment (32). Used by `reason
// convert DIR --out FILE.gguf` and by tests that build files. Stateless functions: safe from any
// thread for different paths.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace reason {

struct GgufWriteTensor {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (row) dimension
  uint32_t type = 0;          // a GgmlType (ggml_type_info() != nullptr)
  // Writes exactly the tensor's bytes (numel / block x block bytes) to the sink; called once,
  // in file order, so a converter never holds more than one tensor's data.
  std::function<void(const std::function<void(const void*, size_t)>& sink)> write;
};

// Writes `path` atomically (atomic_write: a temporary file renamed into place). Metadata values
// are written with their GgufValue type (arrays with elem_type; no arrays of arrays). Throws
// reason::Error: InvalidArgument for an unknown tensor type, dims whose rows are not whole
// blocks, duplicate keys or tensor names, or a producer that writes the wrong byte count; Io for
// write failures (the previous file at `path`, if any, is left untouched).
void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufWriteTensor>& tensors);

// Metadata value helpers.
GgufValue gguf_string(std::string s);
GgufValue gguf_u32(uint32_t v);
GgufValue gguf_i32(int32_t v);
GgufValue gguf_f32(float v);
GgufValue gguf_bool(bool v);
GgufValue gguf_string_array(const std::vector<std::string>& v);
GgufValue gguf_i32_array(const std::vector<int32_t>& v);

// n values quantised to blocks of t with ggml's reference quantisers (kernels/quant.h: Q8_0, Q4_0,
// Q4_1, Q4_K, Q6_K; the bytes llama-quantize writes without an importance matrix); out receives
// dtype_nbytes(t, n) bytes. A NaN or infinite value, partial blocks or a type that cannot be
// written are an InvalidArgument error naming them.
void ggml_quantize(kernels::DType t, const float* x, int64_t n, uint8_t* out);

}  // namespace reason
