// The filters, tests, methods and global functions of the chat-template Jinja subset (jinja.h).
// Stateless; safe from any thread.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace reason::jinja {

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  std::string where;  // "template:LINE:COL" for messages
  // Argument `i` by position, or by keyword `name`, or `dflt`.
  Value get(size_t i, const char* name, Value dflt = Value::undefined()) const;
};

// `value | name(args)`. Throws Unsupported for an unknown filter, InvalidArgument for bad types.
Value apply_filter(const std::string& name, const Value& value, const CallArgs& args);
// `value is name(args)`.
bool apply_test(const std::string& name, const Value& value, const CallArgs& args);
// `obj.name(args)`: Python's str, dict and list methods that templates call.
Value call_method(const Value& obj, const std::string& name, const CallArgs& args);
// True if obj.name is a method call_method() knows.
bool has_method(const Value& obj, const std::string& name);
// The globals transformers defines: namespace, range, dict, raise_exception, strftime_now.
Value global_function(const std::string& name);

// Python slicing of strings (by code point? no: by UTF-8 code points) and lists.
Value slice(const Value& v, std::optional<int64_t> start, std::optional<int64_t> stop, std::optional<int64_t> step,
            const std::string& where);
// Python's v[i] for lists (negative from the end) and strings (one code point).
Value index(const Value& v, const Value& key, const std::string& where);

}  // namespace reason::jinja
