#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace reason {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::empty(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  for (int64_t d : t.shape_)
    if (d < 0) fail(ErrorCode::InvalidArgument, "tensor shape {} has a negative dimension", t.shape_str());
  size_t bytes = t.nbytes();
  size_t alloc = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, alloc ? alloc : 64);
  if (!p) fail(ErrorCode::OutOfMemory, "cannot allocate {} bytes for a {} tensor {}", bytes, kernels::dtype_name(dtype), t.shape_str());
  t.data_ = p;
  t.owner_ = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  return t;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t = empty(dtype, std::move(shape));
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = const_cast<void*>(data);
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  Tensor out = empty(dtype, shape_);
  size_t n = size_t(numel());
  if (dtype == dtype_) {
    std::memcpy(out.data_, data_, nbytes());
  } else if (dtype == DType::F32) {
    if (!kernels::convert_to_f32(out.data<float>(), data_, dtype_, n))
      fail(ErrorCode::Unsupported, "cannot convert {} to f32", kernels::dtype_name(dtype_));
  } else if (dtype_ == DType::F32) {
    if (!kernels::convert_from_f32(out.data_, data<float>(), dtype, n))
      fail(ErrorCode::Unsupported, "cannot convert f32 to {}", kernels::dtype_name(dtype));
  } else {
    return to(DType::F32).to(dtype);
  }
  return out;
}

Tensor Tensor::reshape(Shape shape) const {
  Tensor t = *this;
  t.shape_ = std::move(shape);
  if (t.numel() != numel()) fail(ErrorCode::InvalidArgument, "cannot reshape {} to {}", shape_str(), t.shape_str());
  return t;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape_.size(); ++i) s += (i ? ", " : "") + std::to_string(shape_[i]);
  return s + "]";
}

}  // namespace reason
