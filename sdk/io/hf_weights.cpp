#include "io/hf_weights.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "io/json_file.h"

namespace reason {

namespace {

constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// stat() follows symlinks, as Hugging Face cache snapshots are symlinks into blobs/.
bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

bool is_safe_file_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  return name.find_first_of(std::string_view("/\\\0", 3)) == std::string::npos;
}

std::shared_ptr<const WeightStore> WeightStore::open(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    fail(ErrorCode::Io, "{}: cannot open model directory: {}", dir, std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) fail(ErrorCode::Io, "{}: not a directory", dir);

  std::shared_ptr<WeightStore> w(new WeightStore());
  w->dir_ = dir;
  auto add = [&](const std::shared_ptr<const SafetensorsFile>& f) {
    for (const Entry& e : f->entries()) {
      auto [it, inserted] = w->map_.emplace(e.name, Slot{f.get(), &e});
      if (!inserted)
        fail(ErrorCode::Format, "{}: tensor '{}' is in both {} and {}", dir, e.name, it->second.file->name(),
             f->name());
    }
  };

  const std::string single = join(dir, kSingle), index = join(dir, kIndex);
  if (is_regular_file(single)) {
    w->layout_ = Layout::Single;
    w->files_.push_back(SafetensorsFile::open(single));
    add(w->files_.back());
  } else if (is_regular_file(index)) {
    w->layout_ = Layout::Sharded;
    nlohmann::json j = read_json_file(index);
    if (!j.is_object()) fail(ErrorCode::Format, "{}: expected a JSON object, found {}", index, json_kind(j));
    auto wm = j.find("weight_map");
    if (wm == j.end()) fail(ErrorCode::Format, "{}: missing 'weight_map'", index);
    if (!wm->is_object()) fail(ErrorCode::Format, "{}: 'weight_map' is {}, not an object", index, json_kind(*wm));
    if (wm->empty()) fail(ErrorCode::Format, "{}: 'weight_map' is empty", index);
    if (auto md = j.find("metadata"); md != j.end()) w->index_metadata_ = *md;

    // Validate every name before touching the file system, then open each shard once.
    std::map<std::string, std::shared_ptr<const SafetensorsFile>> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string())
        fail(ErrorCode::Format, "{}: weight_map entry for tensor '{}' is {}, not a file name", index, it.key(),
             json_kind(it.value()));
      const std::string& shard = it.value().get_ref<const std::string&>();
      if (!is_safe_file_name(shard))
        fail(ErrorCode::Format,
             "{}: weight_map maps tensor '{}' to '{}', which is not a plain file name in the directory", index,
             it.key(), shard);
      shards.emplace(shard, nullptr);
    }
    for (auto& [shard, file] : shards) {
      std::string path = join(dir, shard);
      if (!is_regular_file(path))
        fail(ErrorCode::Format, "{}: weight_map names shard '{}', which does not exist in {}", index, shard, dir);
      file = SafetensorsFile::open(path);
      w->files_.push_back(file);
    }
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      const SafetensorsFile* f = shards.at(it.value().get_ref<const std::string&>()).get();
      const Entry* e = f->find(it.key());
      if (!e)
        fail(ErrorCode::Format, "{}: weight_map puts tensor '{}' in {}, which does not contain it", index, it.key(),
             f->name());
      w->map_.emplace(it.key(), Slot{f, e});
    }
  } else {
    // Like transformers, only the two standard names count: other *.safetensors files in a
    // model directory (adapters, test expectations, optimizer state) are not weights.
    fail(ErrorCode::Io, "{}: no {} or {} (expected a Hugging Face model directory)", dir, kSingle, kIndex);
  }

  w->names_.reserve(w->map_.size());
  for (const auto& kv : w->map_) w->names_.push_back(kv.first);
  std::sort(w->names_.begin(), w->names_.end());
  return w;
}

const WeightStore::Entry* WeightStore::find(const std::string& name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : it->second.entry;
}

const SafetensorsFile* WeightStore::file_of(const std::string& name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : it->second.file;
}

Tensor WeightStore::get(const std::string& name) const {
  auto it = map_.find(name);
  if (it == map_.end()) fail(ErrorCode::Format, "{}: no tensor named '{}' in the model's weights", dir_, name);
  return it->second.file->tensor(*it->second.entry);
}

}  // namespace reason
