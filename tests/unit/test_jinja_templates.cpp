// Chat templates rendered by the Jinja interpreter must equal transformers' apply_chat_template
// byte for byte: real templates (DeepSeek-V3, the R1 distills, Qwen2.5, Qwen3, Llama 3.1/3.2/3.3,
// SmolLM2, Mistral-Nemo) over seven conversations, with and without the generation prompt
// (tests/fixtures/make_chat_template_fixtures.py), templates' own raise_exception included.
// Also the interpreter's Jinja semantics on their own, and hostile templates.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "expect_error.h"
#include "io/json_file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja.h"

using namespace reason;
using json = nlohmann::ordered_json;  // key order matters, as in Python dicts

namespace {

const std::string kDir = std::string(REASON_FIXTURES_DIR) + "/chat_templates/";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string render(const std::string& tmpl, const json& ctx = json::object()) {
  return jinja::Template::parse(tmpl, "t")->render(ctx);
}

}  // namespace

TEST_CASE("real chat templates render byte-identical to transformers' apply_chat_template", "[jinja][templates]") {
  const json ex = read_ordered_json_file(kDir + "expected.json");
  size_t rendered = 0, errors = 0;
  for (const auto& c : ex["cases"]) {
    const std::string name = c["template"].get<std::string>();
    const int conv = c["conversation"].get<int>();
    const bool agp = c["add_generation_prompt"].get<bool>();
    INFO(name << " conversation " << conv << " add_generation_prompt " << agp);
    json vars = ex["templates"][name];
    for (const auto& [k, v] : ex["extra"].items()) vars[k] = v;
    const std::string tmpl = slurp(kDir + name);
    const json& msgs = ex["conversations"][size_t(conv)];
    if (c.contains("error")) {
      test::expect_error([&] { render_chat_template(tmpl, name, msgs, agp, vars); }, ErrorCode::InvalidArgument,
                         {c["error"].get<std::string>()});
      ++errors;
    } else {
      CHECK(render_chat_template(tmpl, name, msgs, agp, vars) == c["rendered"].get<std::string>());
      ++rendered;
    }
  }
  CHECK(rendered == 138);
  CHECK(errors == 2);
}

TEST_CASE("Jinja semantics the templates rely on", "[jinja]") {
  // whitespace control, trim_blocks and lstrip_blocks as transformers configures jinja2
  CHECK(render("a\n  {% if true %}\n  b\n  {% endif %}\nc") == "a\n  b\nc");
  CHECK(render("a  {%- if true -%}  b  {%- endif %}") == "ab");
  CHECK(render("{{- ' x ' -}}  ") == " x ");
  CHECK(render("{# note #}\nx") == "x");
  // scoping: set inside a loop does not leak; namespace() does
  CHECK(render("{% set x = 1 %}{% for i in [1,2] %}{% set x = i %}{% endfor %}{{ x }}") == "1");
  CHECK(render("{% set ns = namespace(x=1) %}{% for i in [1,2] %}{% set ns.x = i %}{% endfor %}{{ ns.x }}") == "2");
  // loop variables, else, filters on loops, break / continue
  CHECK(render("{% for x in 'abc' %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}") == "1a,2b,3c");
  CHECK(render("{% for x in [] %}x{% else %}empty{% endfor %}") == "empty");
  CHECK(render("{% for x in [1,2,3,4] if x is even %}{{ x }}{% endfor %}") == "24");
  CHECK(render("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}") == "02");
  CHECK(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}") == "a=1;b=2;");
  // Python semantics: str(), slicing, methods, membership, arithmetic
  CHECK(render("{{ none }} {{ true }} {{ 1.0 }} {{ [1, 'a'] }} {{ {'k': none} }}") == "None True 1.0 [1, 'a'] {'k': None}");
  CHECK(render("{{ 'a</think>b</think>c'.split('</think>')[-1] }}{{ [1,2,3][::-1] }}{{ 'héllo'[1:3] }}") == "c[3, 2, 1]él");
  CHECK(render("{{ '\\n x \\n'.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'ab'.startswith(('x', 'a')) }}") == "x|hi|True");
  CHECK(render("{{ 'b' in 'abc' }}{{ 'k' in {'k': 1} }}{{ 3 not in [1, 2] }}") == "TrueTrueTrue");
  CHECK(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 'ab' * 2 }} {{ 1 ~ 'x' }}") == "3 -4 1 3.5 1024 abab 1x");
  CHECK(render("{{ x if x is defined else 'undef' }} {{ y | default('d') }} {{ (z or 'z') | upper }}") == "undef d Z");
  CHECK(render("{{ m | tojson }}", {{"m", {{"b", 1}, {"a", {"x", nullptr, true, 1.5, "é\"\n"}}}}}) ==
        "{\"b\": 1, \"a\": [\"x\", null, true, 1.5, \"é\\\"\\n\"]}");  // insertion order, as json.dumps
  CHECK(render("{{ m | tojson(indent=2) }}", {{"m", {{"a", {1, 2}}}}}) == "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
  CHECK(render("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}",
               {{"msgs", {{{"role", "user"}, {"content", "a"}}, {{"role", "bot"}, {"content", "b"}}, {{"role", "user"}, {"content", "c"}}}}}) == "a,c");
  CHECK(render("{% set s %}in{{ 1 }}{% endset %}[{{ s }}]") == "[in1]");
  CHECK(render("{% raw %}{{ not parsed }}{% endraw %}") == "{{ not parsed }}");
  CHECK(render("{{ messages[0]['content'] | trim }}", {{"messages", {{{"content", "  hi  "}}}}}) == "hi");
  // Each loop iteration starts afresh (jinja2): a set in one is not seen by the next.
  CHECK(render("{% for m in ['A', 'B'] %}{% if loop.first %}{% set s = m %}{% endif %}[{{ s }}]{% endfor %}") == "[A][]");
  // Python's float repr, in {{ }} and tojson.
  CHECK(render("{{ 10.0 }} {{ 100.0 }} {{ 0.1 }} {{ 1e16 }} {{ 1.5e-05 }} {{ 0.0001 }} {{ 123456789.0 }} {{ -2.5 }}") ==
        "10.0 100.0 0.1 1e+16 1.5e-05 0.0001 123456789.0 -2.5");
  CHECK(render("{{ x | tojson }}", {{"x", {{"maximum", 100.0}, {"min", 0.5}}}}) == "{\"maximum\": 100.0, \"min\": 0.5}");
  // jinja2 defaults: CRLF read as LF; one trailing newline of the template dropped.
  CHECK(render("a\r\n{% if true %}\r\nb{% endif %}\n") == "a\nb");
  CHECK(render("x\n\n") == "x\n");
  // What cannot be indexed is undefined (jinja2's getitem), not an error.
  CHECK(render("{{ 'u' if none['x'] is undefined }}{{ 'v' if [1]['k'] is undefined }}") == "uv");
}

TEST_CASE("bad and hostile templates fail with a clear error", "[jinja][errors]") {
  using test::expect_error;
  expect_error([] { render("{% if x %}"); }, ErrorCode::Format, {"t:1:", "endif"});
  expect_error([] { render("{{ 'abc }}"); }, ErrorCode::Format, {"unclosed tag"});
  expect_error([] { render("{% macro f() %}{% endmacro %}"); }, ErrorCode::Unsupported, {"t:1:", "'macro'"});
  expect_error([] { render("{{ x | frobnicate }}"); }, ErrorCode::Unsupported, {"filter 'frobnicate'"});
  expect_error([] { render("line1\n{{ raise_exception('roles must alternate') }}"); }, ErrorCode::InvalidArgument,
               {"roles must alternate"});
  expect_error([] { render("{{ undefined_thing.attr }}"); }, ErrorCode::InvalidArgument, {"'undefined_thing' is undefined"});
  expect_error([] { render("{{ 'a' + 1 }}"); }, ErrorCode::InvalidArgument, {"unsupported operand types for +"});
  expect_error([] { render("{{ 1 // 0 }}"); }, ErrorCode::InvalidArgument, {"division by zero"});
  expect_error([] { render("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}"); }, ErrorCode::Format, {"nested too deep"});
  expect_error([] { render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"); },
               ErrorCode::InvalidArgument, {"too many steps"});
  expect_error([] { render("{% set s = 'x' * 100000000 %}{{ s }}{{ s }}"); }, ErrorCode::InvalidArgument, {"64 MiB"});
  expect_error([] { render("{{ range(1000001) }}"); }, ErrorCode::InvalidArgument, {"range() of more than 100,000"});
  // Found by review: cycles, deep values, integer overflow, huge intermediate strings.
  expect_error([] { render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"); }, ErrorCode::InvalidArgument,
               {"namespace inside itself"});
  expect_error([] { render("{% set ns = namespace(x=none) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"); },
               ErrorCode::InvalidArgument, {"nested more than 64 deep"});
  expect_error([] { render("{{ (-9223372036854775807 - 1) // -1 }}"); }, ErrorCode::InvalidArgument, {"integer overflow"});
  expect_error([] { render("{{ 9223372036854775807 + 1 }}"); }, ErrorCode::InvalidArgument, {"integer overflow"});
  expect_error([] { render("{{ 3 ** 100 }}"); }, ErrorCode::InvalidArgument, {"integer overflow"});
  CHECK(render("{{ (-9223372036854775807 - 1) % -1 }} {{ 2 ** 62 }} {{ (-1) ** 1000001 }} {{ 2 ** -1 }}") ==
        "0 4611686018427387904 -1 0.5");
  CHECK(render("{{ '' * 9999999999999999 }}|") == "|");
  expect_error([] { render("{{ 'ab' * 9999999999999999 }}"); }, ErrorCode::InvalidArgument, {"64 MiB"});
  expect_error([] { render("{% set ns = namespace(s='xy') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"); },
               ErrorCode::InvalidArgument, {"64 MiB"});
  expect_error([] { render_chat_template("{{ messages }}", "t", json::object(), true, {}); }, ErrorCode::Format,
               {"messages must be a JSON array"});
}
