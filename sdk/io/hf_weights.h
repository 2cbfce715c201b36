// The weights of a Hugging Face model directory: a sharded checkpoint
// (model.safetensors.index.json + model-0000K-of-0000N.safetensors), a single
// model.safetensors, or failing both every *.safetensors file in the directory.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "io/weight_source.h"

namespace reason {

// A read-only name -> tensor lookup over the safetensors files of one model directory. All
// files are memory-mapped and their headers validated at open(); tensor bytes are paged in
// only when read. Immutable after open(): every member is const and one instance may be shared
// by any number of threads. Tensors it returns keep their file's mapping alive on their own.
class WeightStore final : public WeightSource {
 public:
  using Entry = SafetensorsFile::Entry;
  enum class Layout {
    Single,   // model.safetensors
    Sharded,  // model.safetensors.index.json and the shards its weight_map names
  };

  // Opens the weights in directory `dir`. model.safetensors is preferred when both it and an
  // index exist (the order transformers uses). For an index it checks that weight_map is an
  // object of tensor name -> shard file name, that no shard name leaves the directory (no '/',
  // '\', NUL, ".", ".."), that every named shard exists and is valid, and that every tensor
  // is in the shard the index names; the index is then authoritative (tensors a shard holds
  // but the index does not list are not served). Other *.safetensors files are ignored, as
  // transformers ignores them. Throws reason::Error: Io if `dir` or a file cannot be read or neither
  // model.safetensors nor model.safetensors.index.json exists; Format for a bad
  // index, a missing shard, a tensor missing from its shard, or any malformed file.
  static std::shared_ptr<const WeightStore> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  Layout layout() const { return layout_; }

  bool has(const std::string& name) const override { return find(name) != nullptr; }
  // The header entry of `name` (dtype, shape, bytes), or nullptr. Lives as long as this store.
  const Entry* find(const std::string& name) const;
  // A zero-copy view of tensor `name` (see SafetensorsFile::tensor). Throws reason::Error:
  // Format "DIR: no tensor named 'NAME' in the model's weights" when absent, Unsupported when
  // its dtype is not one the engine computes with.
  Tensor get(const std::string& name) const override;
  // The file holding `name`, or nullptr.
  const SafetensorsFile* file_of(const std::string& name) const;

  // Every tensor name, sorted.
  const std::vector<std::string>& names() const override { return names_; }
  const std::string& source() const override { return dir_; }
  size_t size() const { return names_.size(); }
  // The opened files (one for Single), in file-name order.
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const { return files_; }
  // The index's "metadata" object (e.g. {"total_size": N}); null unless Layout::Sharded.
  const nlohmann::json& index_metadata() const { return index_metadata_; }

 private:
  WeightStore() = default;
  struct Slot {
    const SafetensorsFile* file;
    const Entry* entry;
  };
  std::string dir_;
  Layout layout_ = Layout::Single;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::unordered_map<std::string, Slot> map_;
  std::vector<std::string> names_;
  nlohmann::json index_metadata_;
};

// True if `name` is a plain file name that stays inside its directory: non-empty, not "." or
// "..", no '/', '\' or NUL. Used for shard names read from an index.
bool is_safe_file_name(const std::string& name);

}  // namespace reason
