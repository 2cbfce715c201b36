// Values of the Jinja subset that chat templates use (jinja.h), with Python's semantics where
// templates rely on them: truthiness, ==, str() / repr() of None, bools, numbers, lists and dicts,
// and json.dumps for |tojson. Lists and dicts are shared and immutable once built, except a
// namespace(), whose attributes `set ns.x = ...` changes. One render owns its values: not shared
// between threads.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace reason::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python's dict
struct CallArgs;
using Function = std::function<Value(CallArgs&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Function };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;  // Dict and Namespace
  std::shared_ptr<Function> fn;
  std::string undefined_name;  // what was looked up, for messages

  static Value undefined(std::string name = {});
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value number(double v);
  static Value string(std::string v);
  static Value make_list(List v = {});
  static Value make_dict(Dict v = {});
  static Value make_namespace(Dict v = {});
  static Value function(Function f);
  // JSON objects keep their key order (Python dicts do; tojson and items() show it).
  static Value from_json(const nlohmann::ordered_json& j);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_mapping() const { return kind == Kind::Dict || kind == Kind::Namespace; }
  bool truthy() const;
  double as_double() const;
  // Dict / namespace member, or nullptr.
  const Value* get(const std::string& key) const;
  void set(const std::string& key, Value v);  // dict or namespace
  std::string type_name() const;  // Python's type names: "str", "int", "dict", ...
};

bool equal(const Value& a, const Value& b);
// Python's str(v) (what {{ v }} prints; undefined prints nothing) and repr(v).
std::string to_str(const Value& v);
std::string repr(const Value& v);
// json.dumps(v, ensure_ascii=False, indent=indent, separators=(item_sep, key_sep),
// sort_keys=sort_keys); indent < 0 means None. Throws for values JSON cannot hold.
std::string to_json(const Value& v, int indent, const std::string& item_sep, const std::string& key_sep, bool sort_keys);

}  // namespace reason::jinja
