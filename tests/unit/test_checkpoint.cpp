// Checkpoints: bit-exact round trip with the original names and dtypes, resume gives the same
// next-step loss as not stopping, an interrupted save keeps the previous checkpoint.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const std::string kFx = std::string(REASON_FIXTURES_DIR);

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("reason_ckpt_" + std::to_string(::getpid()) + "_" + std::to_string(rand()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<std::vector<SftExample>> batch(int k) {
  SftExample a{{1, int32_t(2 + k), 3, 4, 5, 6}, {0, 0, 1, 1, 1, 1}};
  SftExample b{{9, 8, int32_t(7 + k), 6}, {0, 1, 1, 1}};
  return {{a, b}};
}

std::set<std::string> names_in(const std::string& file) {
  std::set<std::string> s;
  auto f = SafetensorsFile::open(file);  // keep the mapping alive while iterating
  for (const auto& e : f->entries()) s.insert(e.name);
  return s;
}

void check_same_weights(const Model& a, const Model& b) {
  auto pa = a.parameters(), pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].first);
    CHECK(pa[i].first == pb[i].first);
    REQUIRE(pa[i].second.nbytes() == pb[i].second.nbytes());
    CHECK(std::memcmp(pa[i].second.raw(), pb[i].second.raw(), pa[i].second.nbytes()) == 0);
  }
}

}  // namespace

TEST_CASE("save -> load is bit-exact with the original tensor names and dtypes", "[checkpoint]") {
  TempDir t;
  for (const char* src : {"dense/qwen2_tied", "dense/qwen2_bf16", "dense/llama_mha", "moe/dsv3_qlora_group", "moe/qwen2_moe"}) {
    INFO(src);
    auto m = Model::load(kFx + "/" + src);
    const fs::path ck = t.path / fs::path(src).filename();
    save_checkpoint(ck.string(), *m, nullptr);
    CHECK(checkpoint_complete(ck.string()));
    auto back = Model::load(ck.string());
    check_same_weights(*m, *back);
    // Same names as the source checkpoint (sharded or not), same dtypes.
    std::set<std::string> orig;
    for (const auto& e : fs::directory_iterator(kFx + "/" + src))
      if (e.path().extension() == ".safetensors" && e.path().filename() != "expected.safetensors")
        for (const auto& n : names_in(e.path().string())) orig.insert(n);
    CHECK(names_in((ck / "model.safetensors").string()) == orig);
    auto fo = SafetensorsFile::open((ck / "model.safetensors").string());
    for (const auto& e : fo->entries()) CHECK(*e.dtype == m->stored_dtype(e.name));
    CHECK(fs::exists(ck / "tokenizer.json"));
  }
}

TEST_CASE("resuming from a checkpoint gives the same next-step loss as not stopping", "[checkpoint][resume]") {
  TempDir t;
  TrainerConfig cfg;
  cfg.optim.lr = 5e-3f;
  cfg.optim.weight_decay = 0.01f;
  auto a_model = Model::load(kFx + "/dense/qwen2_tied");
  Trainer a(a_model, cfg);
  std::vector<float> straight;
  for (int k = 0; k < 3; ++k) straight.push_back(a.sft_step(batch(k)).loss);

  auto b_model = Model::load(kFx + "/dense/qwen2_tied");
  Trainer b(b_model, cfg);
  CHECK(b.sft_step(batch(0)).loss == straight[0]);
  const std::string ck = (t.path / "step1").string();
  save_checkpoint(ck, *b_model, &b.optimizer(), {{"data_position", 1}});

  auto c_model = Model::load(ck);
  Trainer c(c_model, cfg);
  auto st = load_optimizer_state(ck, *c_model, c.optimizer());
  CHECK(st["data_position"] == 1);
  CHECK(c.step_count() == 1);
  CHECK(c.sft_step(batch(1)).loss == straight[1]);
  CHECK(c.sft_step(batch(2)).loss == straight[2]);
  check_same_weights(*a_model, *c_model);
}

TEST_CASE("an interrupted save keeps the previous checkpoint", "[checkpoint][atomic]") {
  TempDir t;
  auto m = Model::load(kFx + "/dense/qwen2_tied");
  Trainer tr(m, TrainerConfig{});
  tr.sft_step(batch(0));
  const std::string ck = (t.path / "ck").string();
  save_checkpoint(ck, *m, &tr.optimizer());
  auto before = Model::load(ck);
  tr.sft_step(batch(1));  // weights move on
  for (const char* where : {"config", "model", "optimizer", "state", "marker"}) {
    INFO("crash after " << where);
    SaveOptions so;
    so.on_stage = [&](const std::string& s) {
      if (s == where) throw std::runtime_error("simulated crash");
    };
    CHECK_THROWS(save_checkpoint(ck, *m, &tr.optimizer(), {}, so));
    CHECK(checkpoint_complete(ck));
    check_same_weights(*before, *Model::load(ck));
    for (const auto& e : fs::directory_iterator(t.path)) CHECK(e.path().filename() == "ck");  // no temp dirs left
  }
  save_checkpoint(ck, *m, &tr.optimizer());  // a full save replaces it
  check_same_weights(*m, *Model::load(ck));
  CHECK_THROWS_AS(load_optimizer_state((t.path / "nope").string(), *m, tr.optimizer()), Error);
}
