// A model's weights by their Hugging Face tensor names, whatever file format holds them:
// safetensors directories (WeightStore, hf_weights.h) or a GGUF file (GgufWeights,
// model/gguf_model.h). Implementations are immutable after construction; every method may be
// called from any number of threads.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace reason {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // True if tensor `name` can be read.
  virtual bool has(const std::string& name) const = 0;
  // Tensor `name`: a zero-copy view where the format allows (safetensors), else an owned tensor
  // (GGUF: dequantised to f32, or f16/bf16 as stored). Throws reason::Error(Format) naming the
  // source when absent or malformed.
  virtual Tensor get(const std::string& name) const = 0;
  // Tensor `name` in a block-quantised dtype (kernels/quant.h) when the source stores it in one the
  // engine computes with (GGUF's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), as a zero-copy view where the
  // layout allows; otherwise the same as get(). Errors as get().
  virtual Tensor get_quantized(const std::string& name) const { return get(name); }
  // Hint: the caller made its own copy of what get_quantized(name) returned and dropped that
  // tensor; a source that maps a file may release the pages it occupies (GGUF). No effect otherwise.
  virtual void release(const std::string& name) const { (void)name; }
  // Every tensor name this source serves, sorted.
  virtual const std::vector<std::string>& names() const = 0;
  // The directory or file the weights come from (for messages).
  virtual const std::string& source() const = 0;
};

}  // namespace reason
