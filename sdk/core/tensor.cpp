#include "core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

#include "core/error.h"
#include "reason/kernels/quant.h"

namespace reason {

namespace {
constexpr size_t kHugePageBytes = size_t(2) << 20;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

void Tensor::check_shape() const {
  for (int64_t d : shape_)
    if (d < 0) fail(ErrorCode::InvalidArgument, "tensor shape {} has a negative dimension", shape_str());
  const int64_t block = kernels::dtype_block_elems(dtype_);
  if (block > 1 && (shape_.empty() || shape_.back() % block))
    fail(ErrorCode::InvalidArgument, "a {} tensor needs rows of whole {}-element blocks, not shape {}",
         kernels::dtype_name(dtype_), block, shape_str());
}

Tensor Tensor::empty(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.check_shape();
  size_t bytes = t.nbytes();
  // Large tensors (weights, caches) get 2 MiB alignment and transparent huge pages: streaming
  // a model's weights once per decoded token is bound by memory bandwidth, and 4 KiB pages
  // add a TLB miss every 4 KiB of that stream. Only whole huge pages are advised: a tail shorter
  // than 2 MiB stays in 4 KiB pages (a huge page there would hold up to 2 MiB of nothing, for every
  // tensor: 1.4 MB on each of a 0.5B model's 72 MLP matrices).
  const size_t align = bytes >= kHugePageBytes * 2 ? kHugePageBytes : 64;
  void* p = nullptr;
  if (::posix_memalign(&p, align, bytes ? bytes : align) != 0) p = nullptr;
  if (p && align == kHugePageBytes) ::madvise(p, bytes / kHugePageBytes * kHugePageBytes, MADV_HUGEPAGE);
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

Tensor Tensor::empty(kernels::Backend& be, DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.check_shape();
  void* p = nullptr;
  try {
    p = be.alloc(std::max<size_t>(1, t.nbytes()));
  } catch (const std::exception& e) {
    fail(ErrorCode::OutOfMemory, "cannot allocate {} bytes on {} for a {} tensor {}: {}", t.nbytes(), be.name(),
         kernels::dtype_name(dtype), t.shape_str(), e.what());
  }
  kernels::Backend* owner = &be;
  t.data_ = p;
  t.owner_ = std::shared_ptr<const void>(p, [owner](const void* q) { owner->dealloc(const_cast<void*>(q)); });
  t.backend_ = &be;
  return t;
}

Tensor Tensor::zeros(kernels::Backend& be, DType dtype, Shape shape) {
  Tensor t = empty(be, dtype, std::move(shape));
  be.fill_zero(t.data_, t.nbytes());
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.check_shape();
  t.data_ = const_cast<void*>(data);
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (!host_accessible()) fail(ErrorCode::Unsupported, "cannot convert a tensor {} that lives on {}", shape_str(), backend_->name());
  if (kernels::dtype_row_group(dtype_) > 1 && dtype != dtype_) {  // an x8 layout: its block format first
    Tensor base = empty(kernels::dtype_block_format(dtype_), shape_);
    if (ndim() != 2 || !kernels::unpack_x8(dtype_, data_, base.data_, shape_[0], shape_[1]))
      fail(ErrorCode::Unsupported, "cannot convert {} tensor {}", kernels::dtype_name(dtype_), shape_str());
    return base.dtype() == dtype ? base : base.to(dtype);
  }
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
  } else if (kernels::dtype_is_quantized(dtype_) && kernels::dtype_is_quantized(dtype)) {
    fail(ErrorCode::Unsupported, "cannot convert {} to {}: requantising loses precision twice",
         kernels::dtype_name(dtype_), kernels::dtype_name(dtype));
  } else {
    return to(DType::F32).to(dtype);
  }
  return out;
}

Tensor Tensor::host() const {
  if (host_accessible()) return *this;
  Tensor out = empty(dtype_, shape_);
  backend_->download(out.data_, data_, nbytes());
  return out;
}

Tensor Tensor::on(kernels::Backend& be) const {
  if (!host_accessible()) fail(ErrorCode::Unsupported, "cannot copy a tensor {} from {} to {}", shape_str(), backend_->name(), be.name());
  Tensor out = empty(be, dtype_, shape_);
  be.upload(out.data_, data_, nbytes());
  return out;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t count) const {
  if (shape_.empty() || begin < 0 || count < 0 || begin + count > shape_[0])
    fail(ErrorCode::InvalidArgument, "cannot take rows [{}, {}) of a tensor of shape {}", begin, begin + count, shape_str());
  Tensor t = *this;
  t.shape_[0] = count;
  const size_t row_bytes = shape_[0] ? nbytes() / size_t(shape_[0]) : 0;
  t.data_ = static_cast<char*>(data_) + size_t(begin) * row_bytes;
  return t;
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
