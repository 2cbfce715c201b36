// A Jinja template interpreter for chat templates: the subset real templates use (DeepSeek-R1
// and its distills, Qwen2.5/3, Llama 3.x, SmolLM2, Mistral...), rendered as transformers renders
// them (jinja2 with trim_blocks and lstrip_blocks, loop controls, its tojson / raise_exception /
// strftime_now / namespace globals), so the prompt text is byte-identical to apply_chat_template.
//
// Written by hand: no Debian package provides a C++ Jinja2 (the C++ ports inja and Jinja2Cpp
// lack namespace(), Python's string methods and transformers' globals, which chat templates
// need; llama.cpp wrote its own interpreter for the same reason).
//
// Supported: {{ }}, {% %}, {# #}, "-" whitespace control; if/elif/else, for (loop.*, else,
// "if" filter, tuple unpacking, break/continue), set (incl. ns.attr and block set), generation
// blocks (rendered); literals, lists, dicts, attribute / subscript / slice access, calls,
// arithmetic, ~, comparisons, in / not in, and / or / not, conditional expressions; filters
// length count trim string lower upper title capitalize join default d first last list items
// replace int float abs reverse unique tojson safe map selectattr rejectattr indent; tests
// defined undefined none string number integer float mapping iterable sequence boolean true
// false even odd eq ne; str methods strip lstrip rstrip split rsplit startswith endswith upper
// lower title capitalize replace find count join format-free; dict items keys values get.
// Anything else (macros, includes, other filters) is an error naming it and the line.
//
// Thread rules: a Template is immutable after parse(); render() may run on any number of
// threads at once.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace reason::jinja {

struct Node;

class Template {
 public:
  // Parses `source`; `name` appears in errors. Throws reason::Error(Format) for syntax errors and
  // Unsupported for constructs outside the subset, with the line and column.
  static std::shared_ptr<const Template> parse(const std::string& source, const std::string& name);
  ~Template();
  // Renders with the variables of `context` (a JSON object: messages, add_generation_prompt,
  // bos_token, ...; objects keep their key order, as Python dicts). Throws reason::Error: InvalidArgument for raise_exception() (its message)
  // and for type errors, naming the line.
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  Template() = default;
  std::string name_, source_;
  std::vector<std::unique_ptr<Node>> body_;
};

}  // namespace reason::jinja
