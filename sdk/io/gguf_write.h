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

// ggml's quantize_row_q8_0_ref: per block of 32, d = max|x| / 127 (stored f16), q = round(x / d).
// n must be a multiple of 32; out receives n / 32 x 34 bytes. A NaN or infinite value is an
// InvalidArgument error naming it.
void quantize_q8_0(const float* x, int64_t n, uint8_t* out);

}  // namespace reason
