// JSONL datasets are untrusted files: each line is bounded in length (checked while reading, so a
// file with no newline is never held whole), UTF-8 and nesting are checked before the parser
// runs (the hardening of io/json_file.h that every JSON reader shares), and errors name the file
// and line.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "expect_error.h"
#include "core/error.h"
#include "io/json_file.h"
#include "rl/dataset.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& tag) {
    path = fs::temp_directory_path() / ("reason_jsonl_" + tag + "_" + std::to_string(::getpid()) + ".jsonl");
  }
  ~TempFile() { fs::remove(path); }
  const TempFile& write(const std::string& s) const {
    std::ofstream(path, std::ios::binary) << s;
    return *this;
  }
};

const std::string kGood = "{\"prompt\": \"1+1?\", \"answer\": \"2\"}\n";

void expect_invalid(const TempFile& f, const std::vector<std::string>& words, const JsonlLimits& limits = {}) {
  test::expect_error([&] { load_jsonl_dataset(f.path.string(), "d", {}, DatasetUse::PromptsAndAnswers, limits); },
                     ErrorCode::InvalidArgument, words);
}

}  // namespace

TEST_CASE("JSONL lines are bounded in length", "[dataset][jsonl]") {
  TempFile f("long");
  const std::string where2 = f.path.string() + ":2";
  SECTION("the default limit is 16 MiB") {
    REQUIRE(kJsonlMaxLineBytes == size_t(16) << 20);
    // A line one byte over, with no newline at all: refused without reading it whole.
    std::string big = "{\"prompt\": \"" + std::string(kJsonlMaxLineBytes, 'x') + "\", \"answer\": \"2\"}";
    f.write(kGood + big);
    expect_invalid(f, {where2, "longer than 16777216 bytes"});
  }
  SECTION("a smaller limit, exactly at and one past it") {
    JsonlLimits lim;
    lim.max_line_bytes = kGood.size() - 1;  // the line without its '\n'
    f.write(kGood + kGood + "\n" + kGood);
    Dataset d = load_jsonl_dataset(f.path.string(), "d", {}, DatasetUse::PromptsAndAnswers, lim);
    CHECK(d.records.size() == 3);
    CHECK(d.records[2].line == 4);
    lim.max_line_bytes -= 1;
    expect_invalid(f, {f.path.string() + ":1:", "longer than"}, lim);
  }
  SECTION("read_bounded_line") {
    std::istringstream in("ab\n\ncdef\nxyz");
    std::string line;
    CHECK(read_bounded_line(in, line, 3) == LineRead::Line);
    CHECK(line == "ab");
    CHECK(read_bounded_line(in, line, 3) == LineRead::Line);
    CHECK(line.empty());
    CHECK(read_bounded_line(in, line, 3) == LineRead::TooLong);
    CHECK(line.size() == 3);
    std::istringstream last("xyz");
    CHECK(read_bounded_line(last, line, 3) == LineRead::Line);  // no final newline
    CHECK(line == "xyz");
    CHECK(read_bounded_line(last, line, 3) == LineRead::End);
  }
}

TEST_CASE("JSONL lines: UTF-8 and nesting are checked before parsing", "[dataset][jsonl]") {
  TempFile f("hard");
  const std::string where2 = f.path.string() + ":2";
  SECTION("invalid UTF-8") {
    f.write(kGood + "{\"prompt\": \"caf\xC3\x28\", \"answer\": \"2\"}\n");
    expect_invalid(f, {where2, "not valid UTF-8", "byte 15"});
    f.write(kGood + "{\"prompt\": \"\xED\xA0\x80\", \"answer\": \"2\"}\n");  // a surrogate
    expect_invalid(f, {where2, "not valid UTF-8"});
  }
  SECTION("deep nesting") {
    f.write(kGood + "{\"prompt\": \"p\", \"answer\": \"2\", \"x\": " + std::string(100000, '[') + "\n");
    expect_invalid(f, {where2, "nests deeper than 256 levels"});
    JsonlLimits lim;
    lim.max_depth = 3;
    f.write(kGood + "{\"prompt\": \"p\", \"answer\": \"2\", \"x\": [[[1]]]}\n");
    expect_invalid(f, {where2, "nests deeper than 3 levels"}, lim);
    lim.max_depth = 4;
    CHECK(load_jsonl_dataset(f.path.string(), "d", {}, DatasetUse::PromptsAndAnswers, lim).records.size() == 2);
  }
  SECTION("not JSON, with the position") {
    f.write(kGood + "{\"prompt\": \"p\",, }\n");
    expect_invalid(f, {where2, "not valid JSON", "line 1, column"});
  }
  SECTION("the same checks as parse_json_text") {
    const std::string bad = "{\"prompt\": \"\xFF\"}";
    f.write(bad + "\n");
    std::string direct;
    try {
      parse_json_text(bad, f.path.string() + ":1");
    } catch (const Error& e) {
      direct = e.what();
    }
    REQUIRE_FALSE(direct.empty());
    expect_invalid(f, {direct});
  }
}
