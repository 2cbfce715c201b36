// Filters, tests, methods and globals of the chat-template Jinja subset (see jinja_builtins.h).
#include "tokenizer/jinja_builtins.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <ctime>

#include "core/error.h"

namespace reason::jinja {

namespace {

using K = Value::Kind;

[[noreturn]] void type_error(const CallArgs& a, const std::string& what) {
  fail(ErrorCode::InvalidArgument, "chat template {}: {}", a.where, what);
}

const std::string& need_str(const Value& v, const CallArgs& a, const char* what) {
  if (!v.is_string()) type_error(a, std::string(what) + " needs a string, not " + v.type_name());
  return v.s;
}

bool is_py_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Python's str.strip family: `chars` undefined/None means whitespace.
std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto drop = [&](unsigned char c) { return chars.is_string() ? chars.s.find(char(c)) != std::string::npos : is_py_space(c); };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && drop(static_cast<unsigned char>(s[b]))) ++b;
  if (right)
    while (e > b && drop(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep.is_string()) {
    if (sep.s.empty()) fail(ErrorCode::InvalidArgument, "chat template: split() with an empty separator");
    size_t start = 0;
    for (int64_t n = 0; maxsplit < 0 || n < maxsplit; ++n) {
      const size_t p = s.find(sep.s, start);
      if (p == std::string::npos) break;
      out.push_back(s.substr(start, p - start));
      start = p + sep.s.size();
    }
    out.push_back(s.substr(start));
    return out;
  }
  size_t i = 0;  // whitespace split: runs of whitespace, no empty strings
  for (int64_t n = 0; i < s.size();) {
    while (i < s.size() && is_py_space(static_cast<unsigned char>(s[i]))) ++i;
    if (i >= s.size()) break;
    if (maxsplit >= 0 && n == maxsplit) {
      out.push_back(strip(s.substr(i), Value::none(), false, true));
      break;
    }
    size_t j = i;
    while (j < s.size() && !is_py_space(static_cast<unsigned char>(s[j]))) ++j;
    out.push_back(s.substr(i, j - i));
    ++n;
    i = j;
  }
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) return s;
  size_t p = 0;
  for (int64_t n = 0; (count < 0 || n < count) && (p = s.find(from, p)) != std::string::npos; ++n) {
    s.replace(p, from.size(), to);
    p += to.size();
  }
  return s;
}

std::string ascii_case(std::string s, bool upper) {
  for (char& c : s) c = char(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string title(const std::string& s) {  // Python's str.title for ASCII letters
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    if (alpha) c = char(prev_cased ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
    prev_cased = alpha;
  }
  return out;
}

// The elements of an iterable value: a list, a dict's keys, a string's characters (code points).
List iterate(const Value& v, const CallArgs& a) {
  switch (v.kind) {
    case K::List: return *v.list;
    case K::Dict: case K::Namespace: {
      List keys;
      for (const auto& kv : *v.dict) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case K::String: {
      List chars;
      for (size_t i = 0; i < v.s.size();) {
        size_t n = 1;
        const unsigned char c = static_cast<unsigned char>(v.s[i]);
        if (c >= 0xF0) n = 4;
        else if (c >= 0xE0) n = 3;
        else if (c >= 0xC0) n = 2;
        chars.push_back(Value::string(v.s.substr(i, n)));
        i += n;
      }
      return chars;
    }
    case K::Undefined: return {};
    default: type_error(a, "'" + v.type_name() + "' object is not iterable");
  }
}

int64_t length(const Value& v, const CallArgs& a) {
  if (v.is_string()) return int64_t(iterate(v, a).size());
  if (v.kind == K::List) return int64_t(v.list->size());
  if (v.is_mapping()) return int64_t(v.dict->size());
  if (v.is_undefined()) return 0;
  type_error(a, "object of type '" + v.type_name() + "' has no len()");
}

Value attribute_of(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const Value* next = cur.get(key);
    cur = next ? *next : Value::undefined(key);
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value tojson(const Value& v, const CallArgs& a) {
  const Value indent = a.get(1, "indent", Value::none());
  const Value seps = a.get(2, "separators", Value::none());
  const bool sort = a.get(3, "sort_keys", Value::boolean(false)).truthy();
  std::string is = ", ", ks = ": ";
  if (!indent.is_none()) is = ",";
  if (seps.kind == K::List && seps.list->size() == 2) {
    is = need_str((*seps.list)[0], a, "tojson separators");
    ks = need_str((*seps.list)[1], a, "tojson separators");
  }
  return Value::string(to_json(v, indent.is_none() ? -1 : int(indent.i), is, ks, sort));
}

Value select_attr(const Value& v, const CallArgs& a, bool keep) {
  List out;
  const std::string attr = need_str(a.get(0, "attr"), a, "selectattr");
  const Value test = a.get(1, "test");
  CallArgs targs{{}, {}, a.where};
  for (size_t i = 2; i < a.pos.size(); ++i) targs.pos.push_back(a.pos[i]);
  for (const Value& x : iterate(v, a)) {
    const Value val = attribute_of(x, attr);
    const bool ok = test.is_undefined() ? val.truthy() : apply_test(need_str(test, a, "selectattr test"), val, targs);
    if (ok == keep) out.push_back(x);
  }
  return Value::make_list(std::move(out));
}

}  // namespace

Value CallArgs::get(size_t i, const char* name, Value dflt) const {
  if (i < pos.size()) return pos[i];
  for (const auto& [k, v] : kw)
    if (k == name) return v;
  return dflt;
}

Value apply_filter(const std::string& name, const Value& v, const CallArgs& a) {
  if (name == "length" || name == "count") return Value::integer(length(v, a));
  if (name == "trim") return Value::string(strip(to_str(v), a.get(0, "chars", Value::none()), true, true));
  if (name == "string") return Value::string(to_str(v));
  if (name == "safe") return v;
  if (name == "lower" || name == "upper") return Value::string(ascii_case(to_str(v), name == "upper"));
  if (name == "title") return Value::string(title(to_str(v)));
  if (name == "capitalize") {
    std::string s = ascii_case(to_str(v), false);
    if (!s.empty()) s[0] = char(std::toupper(static_cast<unsigned char>(s[0])));
    return Value::string(s);
  }
  if (name == "tojson") return tojson(v, a);
  if (name == "default" || name == "d") {
    const bool boolean = a.get(1, "boolean", Value::boolean(false)).truthy();
    return (v.is_undefined() || (boolean && !v.truthy())) ? a.get(0, "default_value", Value::string("")) : v;
  }
  if (name == "join") {
    const Value sep = a.get(0, "d", Value::string(""));
    const Value attr = a.get(1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& x : iterate(v, a)) {
      out += (first ? "" : to_str(sep)) + to_str(attr.is_string() ? attribute_of(x, attr.s) : x);
      first = false;
    }
    return Value::string(out);
  }
  if (name == "first" || name == "last") {
    const List l = iterate(v, a);
    if (l.empty()) return Value::undefined("first/last of an empty sequence");
    return name == "first" ? l.front() : l.back();
  }
  if (name == "list") return Value::make_list(iterate(v, a));
  if (name == "reverse") {
    if (v.is_string()) {
      const List c = iterate(v, a);
      std::string out;
      for (auto it = c.rbegin(); it != c.rend(); ++it) out += it->s;
      return Value::string(out);
    }
    List l = iterate(v, a);
    std::reverse(l.begin(), l.end());
    return Value::make_list(std::move(l));
  }
  if (name == "unique") {
    List out;
    for (const Value& x : iterate(v, a))
      if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return equal(x, y); })) out.push_back(x);
    return Value::make_list(std::move(out));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::make_list();
    return call_method(v, "items", CallArgs{{}, {}, a.where});
  }
  if (name == "replace")
    return Value::string(replace_all(to_str(v), to_str(a.get(0, "old")), to_str(a.get(1, "new")),
                                     a.get(2, "count", Value::none()).is_none() ? -1 : a.get(2, "count").i));
  if (name == "int") {
    if (v.kind == K::Float) return Value::integer(int64_t(v.f));
    if (v.kind == K::Int || v.kind == K::Bool) return Value::integer(v.i);
    try {
      return Value::integer(std::stoll(to_str(v)));
    } catch (...) {
      return a.get(0, "default", Value::integer(0));
    }
  }
  if (name == "float") {
    if (v.is_number()) return Value::number(v.as_double());
    try {
      return Value::number(std::stod(to_str(v)));
    } catch (...) {
      return a.get(0, "default", Value::number(0));
    }
  }
  if (name == "abs") {
    if (v.kind == K::Float) return Value::number(std::fabs(v.f));
    if (v.kind == K::Int && v.i == INT64_MIN) type_error(a, "integer overflow in abs");
    if (v.kind == K::Int) return Value::integer(v.i < 0 ? -v.i : v.i);
    type_error(a, "abs of " + v.type_name());
  }
  if (name == "map") {
    const Value attr = a.get(99, "attribute");
    List out;
    for (const Value& x : iterate(v, a)) {
      if (attr.is_string()) out.push_back(attribute_of(x, attr.s));
      else {
        CallArgs rest{{}, {}, a.where};
        for (size_t i = 1; i < a.pos.size(); ++i) rest.pos.push_back(a.pos[i]);
        out.push_back(apply_filter(need_str(a.get(0, "filter"), a, "map"), x, rest));
      }
    }
    return Value::make_list(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr") return select_attr(v, a, name == "selectattr");
  if (name == "indent") {
    const int64_t width = a.get(0, "width", Value::integer(4)).i;
    const bool first = a.get(1, "first", Value::boolean(false)).truthy();
    const bool blank = a.get(2, "blank", Value::boolean(false)).truthy();
    const std::string pad(size_t(std::max<int64_t>(width, 0)), ' ');
    const std::string s = to_str(v);
    std::string out;
    size_t start = 0;
    for (bool first_line = true;; first_line = false) {
      const size_t nl = s.find('\n', start);
      const std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if ((first_line ? first : true) && (blank || !line.empty())) out += pad;
      out += line;
      if (nl == std::string::npos) break;
      out += "\n";
      start = nl + 1;
    }
    return Value::string(out);
  }
  fail(ErrorCode::Unsupported, "chat template {}: filter '{}' is not supported", a.where, name);
}

bool apply_test(const std::string& name, const Value& v, const CallArgs& a) {
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.kind == K::Int || v.kind == K::Float;
  if (name == "integer") return v.kind == K::Int;
  if (name == "float") return v.kind == K::Float;
  if (name == "boolean") return v.kind == K::Bool;
  if (name == "true") return v.kind == K::Bool && v.b;
  if (name == "false") return v.kind == K::Bool && !v.b;
  if (name == "mapping") return v.is_mapping();
  if (name == "sequence") return v.kind == K::List || v.is_string() || v.is_mapping();
  if (name == "iterable") return v.kind == K::List || v.is_string() || v.is_mapping();
  if (name == "callable") return v.kind == K::Function;
  if (name == "even" || name == "odd") {
    if (v.kind != K::Int) type_error(a, "'" + name + "' test of " + v.type_name());
    return (((v.i % 2) + 2) % 2 == 0) == (name == "even");
  }
  if (name == "eq" || name == "equalto" || name == "==") return equal(v, a.get(0, "other"));
  if (name == "ne" || name == "!=") return !equal(v, a.get(0, "other"));
  if (name == "in") {
    const Value c = a.get(0, "seq");
    for (const Value& x : iterate(c, a))
      if (equal(x, v)) return true;
    return c.is_string() && v.is_string() && c.s.find(v.s) != std::string::npos;
  }
  fail(ErrorCode::Unsupported, "chat template {}: test '{}' is not supported", a.where, name);
}

bool has_method(const Value& obj, const std::string& n) {
  if (obj.is_string())
    return n == "strip" || n == "lstrip" || n == "rstrip" || n == "split" || n == "rsplit" || n == "startswith" ||
           n == "endswith" || n == "upper" || n == "lower" || n == "title" || n == "capitalize" || n == "replace" ||
           n == "find" || n == "count" || n == "join";
  if (obj.kind == K::Dict) return n == "items" || n == "keys" || n == "values" || n == "get";
  return false;
}

Value call_method(const Value& obj, const std::string& n, const CallArgs& a) {
  if (obj.is_string()) {
    const std::string& s = obj.s;
    if (n == "strip" || n == "lstrip" || n == "rstrip")
      return Value::string(strip(s, a.get(0, "chars", Value::none()), n != "rstrip", n != "lstrip"));
    if (n == "split" || n == "rsplit") {
      const int64_t maxsplit = a.get(1, "maxsplit", Value::integer(-1)).i;
      std::vector<std::string> parts;
      if (n == "rsplit" && maxsplit >= 0 && a.get(0, "sep", Value::none()).is_string()) {
        const std::string sep = a.get(0, "sep").s;
        std::string rest = s;
        for (int64_t k = 0; k < maxsplit; ++k) {
          const size_t p = rest.rfind(sep);
          if (p == std::string::npos || sep.empty()) break;
          parts.insert(parts.begin(), rest.substr(p + sep.size()));
          rest.resize(p);
        }
        parts.insert(parts.begin(), rest);
      } else {
        parts = split(s, a.get(0, "sep", Value::none()), maxsplit);
      }
      List l;
      for (auto& p : parts) l.push_back(Value::string(std::move(p)));
      return Value::make_list(std::move(l));
    }
    if (n == "startswith" || n == "endswith") {
      const Value arg = a.get(0, "prefix");
      std::vector<std::string> opts;
      if (arg.kind == K::List) {
        for (const Value& x : *arg.list) opts.push_back(need_str(x, a, n.c_str()));
      } else {
        opts.push_back(need_str(arg, a, n.c_str()));
      }
      for (const std::string& p : opts)
        if (p.size() <= s.size() && (n == "startswith" ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0))
          return Value::boolean(true);
      return Value::boolean(false);
    }
    if (n == "upper" || n == "lower" || n == "title" || n == "capitalize") return apply_filter(n, obj, a);
    if (n == "replace")
      return Value::string(replace_all(s, need_str(a.get(0, "old"), a, "replace"), need_str(a.get(1, "new"), a, "replace"),
                                       a.get(2, "count", Value::integer(-1)).i));
    if (n == "find") {
      const size_t p = s.find(need_str(a.get(0, "sub"), a, "find"));
      return Value::integer(p == std::string::npos ? -1 : int64_t(p));
    }
    if (n == "count") {
      const std::string sub = need_str(a.get(0, "sub"), a, "count");
      int64_t c = 0;
      for (size_t p = 0; !sub.empty() && (p = s.find(sub, p)) != std::string::npos; p += sub.size()) ++c;
      return Value::integer(c);
    }
    if (n == "join") {
      std::string out;
      bool first = true;
      for (const Value& x : iterate(a.get(0, "iterable"), a)) {
        out += (first ? "" : s) + need_str(x, a, "str.join");
        first = false;
      }
      return Value::string(out);
    }
  }
  if (obj.kind == K::Dict) {
    if (n == "items") {
      List l;
      for (const auto& [k, v] : *obj.dict) l.push_back(Value::make_list({Value::string(k), v}));
      return Value::make_list(std::move(l));
    }
    if (n == "keys" || n == "values") {
      List l;
      for (const auto& [k, v] : *obj.dict) l.push_back(n == "keys" ? Value::string(k) : v);
      return Value::make_list(std::move(l));
    }
    if (n == "get") {
      const Value* v = obj.get(to_str(a.get(0, "key")));
      return v ? *v : a.get(1, "default", Value::none());
    }
  }
  fail(ErrorCode::Unsupported, "chat template {}: method '{}' of a {} is not supported", a.where, n, obj.type_name());
}

Value global_function(const std::string& name) {
  if (name == "namespace")
    return Value::function([](CallArgs& a) {
      Dict d;
      for (const Value& p : a.pos)
        if (p.is_mapping()) d.insert(d.end(), p.dict->begin(), p.dict->end());
      for (auto& kv : a.kw) d.push_back(kv);
      return Value::make_namespace(std::move(d));
    });
  if (name == "dict")
    return Value::function([](CallArgs& a) {
      Dict d;
      for (auto& kv : a.kw) d.push_back(kv);
      return Value::make_dict(std::move(d));
    });
  if (name == "range")
    return Value::function([](CallArgs& a) {
      int64_t start = 0, stop = 0, step = 1;
      if (a.pos.size() == 1) stop = a.pos[0].i;
      else if (a.pos.size() >= 2) start = a.pos[0].i, stop = a.pos[1].i;
      if (a.pos.size() >= 3) step = a.pos[2].i;
      if (step == 0) type_error(a, "range() step must not be zero");
      List l;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (l.size() >= 100000) type_error(a, "range() of more than 100,000 values");
        l.push_back(Value::integer(i));
      }
      return Value::make_list(std::move(l));
    });
  if (name == "raise_exception")
    return Value::function([](CallArgs& a) -> Value {
      fail(ErrorCode::InvalidArgument, "chat template raised an exception: {}", to_str(a.get(0, "message")));
    });
  if (name == "strftime_now")
    return Value::function([](CallArgs& a) {
      const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof buf, to_str(a.get(0, "format")).c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  return Value::undefined(name);
}

Value slice(const Value& v, std::optional<int64_t> start, std::optional<int64_t> stop, std::optional<int64_t> step,
            const std::string& where) {
  const int64_t st = step.value_or(1);
  if (st == 0) fail(ErrorCode::InvalidArgument, "chat template {}: slice step cannot be zero", where);
  CallArgs a{{}, {}, where};
  const List items = v.is_string() ? iterate(v, a) : v.kind == K::List ? *v.list : List{};
  if (!v.is_string() && v.kind != K::List) type_error(a, "'" + v.type_name() + "' object is not subscriptable");
  const int64_t n = int64_t(items.size());
  auto norm = [&](std::optional<int64_t> x, int64_t dflt) {
    if (!x) return dflt;
    int64_t i = *x < 0 ? *x + n : *x;
    return st > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = norm(start, st > 0 ? 0 : n - 1), e = norm(stop, st > 0 ? n : -1);
  List out;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) out.push_back(items[size_t(i)]);
  if (!v.is_string()) return Value::make_list(std::move(out));
  std::string s;
  for (const Value& c : out) s += c.s;
  return Value::string(s);
}

Value index(const Value& v, const Value& key, const std::string& where) {
  // jinja2's getitem: what cannot be indexed (None, a list with a string key, ...) is undefined;
  // only an undefined value itself is an error.
  if (v.is_mapping()) {
    const Value* x = key.is_string() ? v.get(key.s) : nullptr;
    return x ? *x : Value::undefined(to_str(key));
  }
  if (v.is_undefined()) fail(ErrorCode::InvalidArgument, "chat template {}: '{}' is undefined", where, v.undefined_name);
  if ((v.kind == K::List || v.is_string()) && (key.kind == K::Int || key.kind == K::Bool)) {
    CallArgs a{{}, {}, where};
    const List items = v.is_string() ? iterate(v, a) : *v.list;
    const int64_t n = int64_t(items.size()), i = key.i < 0 ? key.i + n : key.i;
    if (i < 0 || i >= n) return Value::undefined("index " + std::to_string(key.i));
    return items[size_t(i)];
  }
  return Value::undefined(to_str(key));
}

}  // namespace reason::jinja
