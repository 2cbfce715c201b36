// write_safetensors: the header and layout of Hugging Face's serializer (safetensors::tensor::
// prepare), written through atomic_write.
#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/checked_math.h"
#include "core/error.h"
#include "io/json_file.h"
#include "io/safetensors.h"

namespace reason {

namespace {

// Position of a dtype in the reference's Dtype enum, which is ordered by alignment; the
// reference writes higher ranks first so each tensor starts aligned to its element size.
int reference_rank(DType t) {
  switch (t) {
    case DType::F8_E4M3:
      return 0;
    case DType::F16:
      return 1;
    case DType::BF16:
      return 2;
    case DType::F32:
      return 3;
    default:
      return -1;
  }
}

std::string json_string(const std::string& s, const char* what) {
  if (find_invalid_utf8(s) != std::string_view::npos)
    fail(ErrorCode::InvalidArgument, "write_safetensors: {} is not valid UTF-8", what);
  return nlohmann::json(s).dump();
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    const Tensor* t;
    uint64_t nbytes;
  };
  std::vector<Item> items;
  items.reserve(tensors.size());
  std::set<std::string_view> seen;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__")
      fail(ErrorCode::InvalidArgument, "{}: '__metadata__' is reserved and cannot name a tensor", path);
    if (!seen.insert(name).second) fail(ErrorCode::InvalidArgument, "{}: tensor '{}' is listed twice", path, name);
    if (t.shape().size() > kSafetensorsMaxDims)
      fail(ErrorCode::InvalidArgument, "{}: tensor '{}' has {} dimensions, more than readers accept ({})", path, name,
           t.shape().size(), kSafetensorsMaxDims);
    uint64_t numel = 1;
    for (int64_t d : t.shape()) {
      if (d < 0)
        fail(ErrorCode::InvalidArgument, "{}: tensor '{}' has shape {} with a negative dimension", path, name,
             t.shape_str());
      if (!checked_mul(numel, uint64_t(d), &numel))
        fail(ErrorCode::InvalidArgument, "{}: tensor '{}' shape {} overflows", path, name, t.shape_str());
    }
    if (kernels::dtype_is_quantized(t.dtype()))
      fail(ErrorCode::Unsupported, "{}: tensor '{}' is {}, which safetensors cannot hold (write the model as GGUF: "
           "reason quantize / reason convert)", path, name, kernels::dtype_name(t.dtype()));
    uint64_t nbytes;
    if (!checked_mul(numel, kernels::dtype_size(t.dtype()), &nbytes))
      fail(ErrorCode::InvalidArgument, "{}: tensor '{}' shape {} overflows", path, name, t.shape_str());
    if (nbytes > 0 && t.raw() == nullptr) fail(ErrorCode::InvalidArgument, "{}: tensor '{}' has no data", path, name);
    items.push_back({&name, &t, nbytes});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    int ra = reference_rank(a.t->dtype()), rb = reference_rank(b.t->dtype());
    if (ra != rb) return ra > rb;
    return *a.name < *b.name;  // bytewise, as Rust's String ordering
  });

  // Compact JSON exactly as serde_json writes the reference's Metadata.
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      first = false;
      header += json_string(k, "a metadata key");
      header += ':';
      header += json_string(v, "a metadata value");
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    if (header.size() > 1) header += ',';
    header += json_string(*it.name, "a tensor name");
    header += ":{\"dtype\":\"";
    header += safetensors_dtype_name(it.t->dtype());
    header += "\",\"shape\":[";
    for (size_t d = 0; d < it.t->shape().size(); ++d) {
      if (d) header += ',';
      header += std::to_string(it.t->shape()[d]);
    }
    uint64_t end;
    if (!checked_add(offset, it.nbytes, &end))
      fail(ErrorCode::InvalidArgument, "{}: total tensor size overflows", path);
    header += fmt::format("],\"data_offsets\":[{},{}]}}", offset, end);
    offset = end;
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');  // data section starts 8-aligned
  if (header.size() > kSafetensorsMaxHeaderBytes)
    fail(ErrorCode::InvalidArgument, "{}: header of {} bytes exceeds the {}-byte limit readers enforce", path,
         header.size(), kSafetensorsMaxHeaderBytes);

  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));

  atomic_write(path, [&](const ByteSink& sink) {
    sink(len, sizeof len);
    sink(header.data(), header.size());
    for (const Item& it : items)
      if (it.nbytes) sink(it.t->raw(), size_t(it.nbytes));
  });
}

}  // namespace reason
