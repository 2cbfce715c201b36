// Hugging Face model directories: WeightStore over single-file, sharded and loose safetensors,
// and read_json_file.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "io/hf_weights.h"
#include "io/json_file.h"
#include "io/safetensors.h"

using Catch::Matchers::Contains;
using reason::DType;
using reason::Error;
using reason::ErrorCode;
using reason::Tensor;
using reason::WeightStore;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "reason_hf_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

// An f32 tensor [n] holding base, base + 1, ...
Tensor ramp(int64_t n, float base) {
  Tensor t = Tensor::empty(DType::F32, {n});
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = base + float(i);
  return t;
}

template <typename F>
Error catch_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no reason::Error thrown");
  return Error(ErrorCode::Ok, "");
}

// A two-shard checkpoint as transformers' save_pretrained writes it.
void write_sharded(const TempDir& dir) {
  reason::write_safetensors(
      dir / "model-00001-of-00002.safetensors",
      {{"model.embed_tokens.weight", ramp(4, 0)}, {"model.layers.0.mlp.up_proj.weight", ramp(3, 10)}},
      {{"format", "pt"}});
  Tensor bf = Tensor::empty(DType::BF16, {2});
  bf.data<uint16_t>()[0] = 0x3f80;  // 1.0
  bf.data<uint16_t>()[1] = 0xc000;  // -2.0
  reason::write_safetensors(dir / "model-00002-of-00002.safetensors",
                            {{"model.norm.weight", bf}, {"lm_head.weight", ramp(2, 100)}}, {{"format", "pt"}});
  reason::atomic_write_file(dir / "model.safetensors.index.json", R"({
  "metadata": {"total_size": 40},
  "weight_map": {
    "lm_head.weight": "model-00002-of-00002.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
    "model.norm.weight": "model-00002-of-00002.safetensors"
  }
})");
}

std::string index_with(const std::string& weight_map) {
  return "{\"metadata\": {\"total_size\": 8}, \"weight_map\": " + weight_map + "}";
}

}  // namespace

TEST_CASE("single-file model", "[hf_dir]") {
  TempDir dir;
  reason::write_safetensors(dir / "model.safetensors", {{"a", ramp(3, 1)}, {"b", ramp(2, 5)}});
  write_file(dir / "config.json", "{\"model_type\": \"llama\"}");
  auto w = WeightStore::open(dir.path);
  CHECK(w->layout() == WeightStore::Layout::Single);
  CHECK(w->dir() == dir.path);
  CHECK(w->names() == std::vector<std::string>{"a", "b"});
  CHECK(w->files().size() == 1);
  CHECK(w->has("a"));
  CHECK(!w->has("c"));
  Tensor a = w->get("a");
  REQUIRE(a.shape() == reason::Shape{3});
  CHECK(a.data<float>()[0] == 1.0f);
  CHECK(a.data<float>()[2] == 3.0f);
  const auto* e = w->find("b");
  REQUIRE(e != nullptr);
  CHECK(e->shape == reason::Shape{2});
  CHECK(w->find("c") == nullptr);
  CHECK(w->file_of("b") == w->files()[0].get());

  Error err = catch_error([&] { w->get("model.norm.weight"); });
  CHECK(err.code() == ErrorCode::Format);
  CHECK_THAT(std::string(err.what()), Contains(dir.path) && Contains("'model.norm.weight'"));
}

TEST_CASE("sharded model with an index", "[hf_dir]") {
  TempDir dir;
  write_sharded(dir);
  auto w = WeightStore::open(dir.path + "/");  // a trailing slash is fine
  CHECK(w->layout() == WeightStore::Layout::Sharded);
  CHECK(w->files().size() == 2);
  CHECK(w->names() == std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                               "model.layers.0.mlp.up_proj.weight", "model.norm.weight"});
  CHECK(w->index_metadata().at("total_size") == 40);
  CHECK(w->get("model.embed_tokens.weight").data<float>()[3] == 3.0f);
  CHECK(w->get("model.layers.0.mlp.up_proj.weight").data<float>()[0] == 10.0f);
  CHECK(w->get("lm_head.weight").data<float>()[1] == 101.0f);
  Tensor norm = w->get("model.norm.weight");
  CHECK(norm.dtype() == DType::BF16);
  CHECK(norm.data<uint16_t>()[1] == 0xc000);
  CHECK_THAT(w->file_of("lm_head.weight")->name(), Contains("model-00002-of-00002.safetensors"));
  CHECK_THAT(w->file_of("model.embed_tokens.weight")->name(), Contains("model-00001-of-00002.safetensors"));

  // Tensors are views that outlive the store.
  Tensor keep = w->get("lm_head.weight");
  w.reset();
  CHECK(keep.data<float>()[0] == 100.0f);
}

TEST_CASE("model.safetensors wins over an index, as in transformers", "[hf_dir]") {
  TempDir dir;
  write_sharded(dir);
  reason::write_safetensors(dir / "model.safetensors", {{"only", ramp(1, 7)}});
  auto w = WeightStore::open(dir.path);
  CHECK(w->layout() == WeightStore::Layout::Single);
  CHECK(w->names() == std::vector<std::string>{"only"});
}

TEST_CASE("other *.safetensors files are not weights", "[hf_dir]") {
  TempDir dir;
  reason::write_safetensors(dir / "expected.safetensors", {{"y", ramp(1, 2)}});
  reason::write_safetensors(dir / "adapter_model.safetensors", {{"x", ramp(1, 1)}});
  Error err = catch_error([&] { WeightStore::open(dir.path); });
  CHECK(err.code() == ErrorCode::Io);
  CHECK_THAT(std::string(err.what()), Contains("no model.safetensors or model.safetensors.index.json"));
  reason::write_safetensors(dir / "model.safetensors", {{"w", ramp(1, 3)}});
  auto w = WeightStore::open(dir.path);
  CHECK(w->names() == std::vector<std::string>{"w"});
}

TEST_CASE("broken model directories are rejected with clear errors", "[hf_dir]") {
  TempDir dir;
  SECTION("empty directory") {
    Error e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK(e.code() == ErrorCode::Io);
    CHECK_THAT(std::string(e.what()), Contains(dir.path + ": no model.safetensors or model.safetensors.index.json"));
  }
  SECTION("directory does not exist") {
    Error e = catch_error([&] { WeightStore::open(dir / "nope"); });
    CHECK(e.code() == ErrorCode::Io);
    CHECK_THAT(std::string(e.what()), Contains(dir / "nope") && Contains("No such file or directory"));
  }
  SECTION("index naming a missing shard") {
    write_sharded(dir);
    fs::remove(dir / "model-00002-of-00002.safetensors");
    Error e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK(e.code() == ErrorCode::Format);
    CHECK_THAT(std::string(e.what()), Contains("model.safetensors.index.json") &&
                                          Contains("'model-00002-of-00002.safetensors'") && Contains("does not exist"));
  }
  SECTION("index naming a tensor that is not in its shard") {
    write_sharded(dir);
    reason::atomic_write_file(dir / "model.safetensors.index.json",
                              index_with(R"({"model.norm.weight": "model-00001-of-00002.safetensors"})"));
    Error e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK(e.code() == ErrorCode::Format);
    CHECK_THAT(std::string(e.what()), Contains("'model.norm.weight'") && Contains("model-00001-of-00002.safetensors") &&
                                          Contains("does not contain it"));
  }
  SECTION("path traversal in weight_map") {
    // A valid shard outside the model directory that the index tries to reach.
    TempDir outside;
    reason::write_safetensors(outside / "x.safetensors", {{"w", ramp(1, 0)}});
    fs::create_directory(dir / "model");
    const std::string model = dir / "model";
    reason::write_safetensors(dir / "x.safetensors", {{"w", ramp(1, 0)}});
    for (const char* shard :
         {"../x.safetensors", "sub/x.safetensors", "..", "/etc/passwd", "..\\\\x.safetensors", ""}) {
      INFO(shard);
      reason::atomic_write_file(model + "/model.safetensors.index.json",
                                index_with(std::string("{\"w\": \"") + shard + "\"}"));
      Error e = catch_error([&] { WeightStore::open(model); });
      CHECK(e.code() == ErrorCode::Format);
      CHECK_THAT(std::string(e.what()), Contains("not a plain file name"));
    }
  }
  SECTION("malformed index") {
    const std::string index = dir / "model.safetensors.index.json";
    write_file(index, "{\"weight_map\": ");
    Error e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK(e.code() == ErrorCode::Format);
    CHECK_THAT(std::string(e.what()), Contains(index) && Contains("not valid JSON"));

    write_file(index, "{\"metadata\": {}}");
    e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK_THAT(std::string(e.what()), Contains("missing 'weight_map'"));

    write_file(index, index_with("[]"));
    e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK_THAT(std::string(e.what()), Contains("'weight_map' is an array, not an object"));

    write_file(index, index_with("{}"));
    e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK_THAT(std::string(e.what()), Contains("'weight_map' is empty"));

    write_file(index, index_with("{\"w\": 3}"));
    e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK_THAT(std::string(e.what()), Contains("tensor 'w' is a number, not a file name"));
  }
  SECTION("a corrupt shard names the shard file") {
    write_sharded(dir);
    write_file(dir / "model-00002-of-00002.safetensors", std::string(5, 'x'));
    Error e = catch_error([&] { WeightStore::open(dir.path); });
    CHECK(e.code() == ErrorCode::Format);
    CHECK_THAT(std::string(e.what()), Contains("model-00002-of-00002.safetensors") && Contains("too small"));
  }
}

TEST_CASE("shard names are checked to stay in the directory", "[hf_dir]") {
  CHECK(reason::is_safe_file_name("model-00001-of-00002.safetensors"));
  CHECK(reason::is_safe_file_name("..weird.safetensors"));
  CHECK(!reason::is_safe_file_name(""));
  CHECK(!reason::is_safe_file_name("."));
  CHECK(!reason::is_safe_file_name(".."));
  CHECK(!reason::is_safe_file_name("../x.safetensors"));
  CHECK(!reason::is_safe_file_name("a/b"));
  CHECK(!reason::is_safe_file_name("a\\b"));
  CHECK(!reason::is_safe_file_name(std::string("a\0b", 3)));
}

TEST_CASE("read_json_file", "[hf_dir][json]") {
  TempDir dir;
  SECTION("reads an object") {
    write_file(dir / "config.json", "{\"hidden_size\": 64, \"rope_theta\": 1e6, \"name\": \"\\u00e9\"}");
    auto j = reason::read_json_file(dir / "config.json");
    CHECK(j.at("hidden_size") == 64);
    CHECK(j.at("rope_theta").get<double>() == 1e6);
    CHECK(j.at("name") == "\xc3\xa9");
  }
  SECTION("missing file") {
    Error e = catch_error([&] { reason::read_json_file(dir / "config.json"); });
    CHECK(e.code() == ErrorCode::Io);
    CHECK_THAT(std::string(e.what()), Contains(dir / "config.json") && Contains("No such file or directory"));
  }
  SECTION("not JSON, with the position") {
    write_file(dir / "config.json", "{\n  \"a\": 1,\n  \"b\": tru, \"c\": 2\n}");
    Error e = catch_error([&] { reason::read_json_file(dir / "config.json"); });
    CHECK(e.code() == ErrorCode::Format);
    CHECK_THAT(std::string(e.what()),
               Contains(dir / "config.json") && Contains("not valid JSON") && Contains("line 3"));
    write_file(dir / "empty.json", "");
    e = catch_error([&] { reason::read_json_file(dir / "empty.json"); });
    CHECK(e.code() == ErrorCode::Format);
  }
  SECTION("size cap") {
    write_file(dir / "big.json", "[" + std::string(100, ' ') + "]");
    Error e = catch_error([&] { reason::read_json_file(dir / "big.json", 50); });
    CHECK(e.code() == ErrorCode::Format);
    CHECK_THAT(std::string(e.what()), Contains("102 bytes") && Contains("50-byte limit"));
    CHECK(reason::read_json_file(dir / "big.json", 102).is_array());
  }
  SECTION("nesting cap") {
    write_file(dir / "deep.json", std::string(100000, '[') + std::string(100000, ']'));
    Error e = catch_error([&] { reason::read_json_file(dir / "deep.json"); });
    CHECK(e.code() == ErrorCode::Format);
    CHECK_THAT(std::string(e.what()), Contains("nests deeper than 256"));
    write_file(dir / "ok.json", std::string(256, '[') + std::string(256, ']'));
    CHECK(reason::read_json_file(dir / "ok.json").is_array());
  }
  SECTION("UTF-8 and depth helpers") {
    CHECK(reason::find_invalid_utf8("plain \xc3\xa9 \xf0\x9f\x98\x80") == std::string_view::npos);
    CHECK(reason::find_invalid_utf8("ab\xc0\xaf") == 2);         // overlong '/'
    CHECK(reason::find_invalid_utf8("\xed\xa0\x80") == 0);       // surrogate
    CHECK(reason::find_invalid_utf8("x\xf4\x90\x80\x80") == 1);  // above U+10FFFF
    CHECK(reason::find_invalid_utf8("\xe2\x82") == 0);           // truncated
    CHECK(reason::json_depth_exceeded_at("[[]]", 2) == std::string_view::npos);
    CHECK(reason::json_depth_exceeded_at("[[[]]]", 2) == 2);
    CHECK(reason::json_depth_exceeded_at("[\"[[[\\\"[[\"]", 1) == std::string_view::npos);
  }
}
