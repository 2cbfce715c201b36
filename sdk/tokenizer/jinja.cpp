// The chat-template Jinja interpreter (see jinja.h): template text -> tags with jinja2's
// whitespace rules (trim_blocks, lstrip_blocks, "-") -> a tree of nodes and expressions ->
// rendered text.
#include "tokenizer/jinja.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <map>
#include <optional>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/jinja_builtins.h"

namespace reason::jinja {

namespace {

constexpr int kMaxDepth = 200;                      // nesting of blocks and expressions
constexpr size_t kMaxOutput = size_t(64) << 20;     // rendered bytes
constexpr int kMaxValueDepth = 64;                  // lists / dicts inside each other
constexpr size_t kMaxItems = 1'000'000;              // elements of one list
constexpr int64_t kMaxSteps = 1'000'000;            // loop iterations + nodes + expressions per render

// ---- lexing the template into text and tags ----

struct Piece {
  enum Kind { Text, Expr, Stmt } kind;
  std::string text;  // the text, or a tag's inside
  size_t pos;        // byte offset in the template
};

struct Source {
  const std::string& src;
  const std::string& name;
  std::string where(size_t pos) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < src.size(); ++i) {
      if (src[i] == '\n') ++line, col = 1;
      else ++col;
    }
    return name + ":" + std::to_string(line) + ":" + std::to_string(col);
  }
  [[noreturn]] void error(ErrorCode code, size_t pos, const std::string& what) const {
    fail(code, "chat template {}: {}", where(pos), what);
  }
};

// End of the tag opened at `open` (index of "{{" / "{%"), skipping string literals: the index of
// its closing "}}" / "%}".
size_t tag_end(const Source& s, size_t open, char close) {
  const std::string& t = s.src;
  for (size_t i = open + 2; i + 1 < t.size(); ++i) {
    const char c = t[i];
    if (c == '\'' || c == '"') {
      for (++i; i < t.size() && t[i] != c; ++i)
        if (t[i] == '\\') ++i;
      continue;
    }
    if (c == close && t[i + 1] == '}') return i;
  }
  s.error(ErrorCode::Format, open, "unclosed tag");
}

std::vector<Piece> lex(const Source& s) {
  const std::string& t = s.src;
  std::vector<Piece> out;
  std::string text;
  size_t text_pos = 0, i = 0;
  bool strip_next = false, trim_newline = false;
  auto flush = [&] {
    if (!text.empty()) out.push_back({Piece::Text, text, text_pos});
    text.clear();
  };
  while (i < t.size()) {
    const bool tag = t[i] == '{' && i + 1 < t.size() && (t[i + 1] == '{' || t[i + 1] == '%' || t[i + 1] == '#');
    if (!tag) {
      if (text.empty()) text_pos = i;
      const char c = t[i++];
      if (strip_next && std::isspace(static_cast<unsigned char>(c))) continue;
      strip_next = false;
      if (trim_newline) {
        trim_newline = false;
        if (c == '\n') continue;
        if (c == '\r' && i < t.size() && t[i] == '\n') {
          ++i;
          continue;
        }
      }
      text += c;
      continue;
    }
    strip_next = trim_newline = false;
    const char kind = t[i + 1];
    const bool block = kind != '{';
    const bool minus_left = i + 2 < t.size() && t[i + 2] == '-', plus_left = i + 2 < t.size() && t[i + 2] == '+';
    if (minus_left) {
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    } else if (block && !plus_left) {  // lstrip_blocks: a tag alone after blanks at a line start
      size_t j = i;
      while (j > 0 && (t[j - 1] == ' ' || t[j - 1] == '\t')) --j;
      if (j == 0 || t[j - 1] == '\n')
        while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.pop_back();
    }
    flush();
    const size_t body = i + 2 + ((minus_left || plus_left) ? 1 : 0);
    size_t end;
    if (kind == '#') {
      end = t.find("#}", body);
      if (end == std::string::npos) s.error(ErrorCode::Format, i, "unclosed comment");
    } else {
      end = tag_end(s, i, kind == '{' ? '}' : '%');
    }
    const bool minus_right = end > body && t[end - 1] == '-', plus_right = end > body && t[end - 1] == '+';
    std::string inside = t.substr(body, end - body - ((minus_right || plus_right) ? 1 : 0));
    if (kind == '%') {
      // {% raw %} ... {% endraw %}: the text between, verbatim.
      size_t a = inside.find_first_not_of(" \t\r\n");
      if (a != std::string::npos && inside.compare(a, 3, "raw") == 0 && inside.find_first_not_of(" \t\r\n", a + 3) == std::string::npos) {
        const size_t close = t.find("endraw", end + 2);
        if (close == std::string::npos) s.error(ErrorCode::Format, i, "{% raw %} without {% endraw %}");
        size_t open = t.rfind("{%", close);
        std::string raw = t.substr(end + 2, open - (end + 2));
        if (t[open + 2] == '-')
          while (!raw.empty() && std::isspace(static_cast<unsigned char>(raw.back()))) raw.pop_back();
        out.push_back({Piece::Text, raw, end + 2});
        end = t.find("%}", close);
        if (end == std::string::npos) s.error(ErrorCode::Format, close, "unclosed endraw tag");
        i = end + 2;
        trim_newline = true;
        continue;
      }
      out.push_back({Piece::Stmt, inside, i});
    } else if (kind == '{') {
      out.push_back({Piece::Expr, inside, i});
    }
    i = end + 2;
    if (minus_right) strip_next = true;
    else if (block && !plus_right) trim_newline = true;  // trim_blocks
  }
  flush();
  return out;
}

// ---- tokens inside a tag ----

struct Tok {
  enum Kind { Name, Str, Int, Float, Op, End } kind;
  std::string s;
  int64_t i = 0;
  double f = 0;
  size_t pos;
};

std::vector<Tok> tokenize(const Source& s, const std::string& in, size_t base) {
  std::vector<Tok> out;
  size_t i = 0;
  static const char* ops2[] = {"**", "//", "==", "!=", "<=", ">="};
  while (i < in.size()) {
    const char c = in[i];
    const size_t pos = base + 2 + i;
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < in.size() && (std::isalnum(static_cast<unsigned char>(in[j])) || in[j] == '_')) ++j;
      out.push_back({Tok::Name, in.substr(i, j - i), 0, 0, pos});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool is_float = false;
      while (j < in.size() && (std::isdigit(static_cast<unsigned char>(in[j])) || in[j] == '_' ||
                               (in[j] == '.' && j + 1 < in.size() && std::isdigit(static_cast<unsigned char>(in[j + 1]))))) {
        if (in[j] == '.') is_float = true;
        ++j;
      }
      if (j < in.size() && (in[j] == 'e' || in[j] == 'E')) {  // exponent: 1e16, 2.5e-3 (jinja2's float literal)
        size_t k = j + 1;
        if (k < in.size() && (in[k] == '+' || in[k] == '-')) ++k;
        if (k < in.size() && std::isdigit(static_cast<unsigned char>(in[k]))) {
          while (k < in.size() && (std::isdigit(static_cast<unsigned char>(in[k])) || in[k] == '_')) ++k;
          j = k;
          is_float = true;
        }
      }
      std::string num;
      for (size_t k = i; k < j; ++k)
        if (in[k] != '_') num += in[k];
      Tok t{is_float ? Tok::Float : Tok::Int, num, 0, 0, pos};
      try {
        if (is_float) t.f = std::stod(num);
        else t.i = std::stoll(num);
      } catch (...) {
        s.error(ErrorCode::Format, pos, "number '" + num + "' out of range");
      }
      out.push_back(t);
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      for (; j < in.size() && in[j] != c; ++j) {
        if (in[j] != '\\' || j + 1 >= in.size()) {
          v += in[j];
          continue;
        }
        const char e = in[++j];
        switch (e) {
          case 'n': v += '\n'; break;
          case 't': v += '\t'; break;
          case 'r': v += '\r'; break;
          case '\\': v += '\\'; break;
          case '\'': v += '\''; break;
          case '"': v += '"'; break;
          case '\n': break;
          default: v += '\\', v += e;
        }
      }
      if (j >= in.size()) s.error(ErrorCode::Format, pos, "unterminated string");
      out.push_back({Tok::Str, v, 0, 0, pos});
      i = j + 1;
    } else {
      bool two = false;
      for (const char* op : ops2)
        if (in.compare(i, 2, op) == 0) {
          out.push_back({Tok::Op, op, 0, 0, pos});
          i += 2;
          two = true;
          break;
        }
      if (two) continue;
      if (std::string("+-*/%~<>=()[]{},.:|!").find(c) == std::string::npos)
        s.error(ErrorCode::Format, pos, std::string("unexpected character '") + c + "'");
      out.push_back({Tok::Op, std::string(1, c), 0, 0, pos});
      ++i;
    }
  }
  out.push_back({Tok::End, "", 0, 0, base + in.size()});
  return out;
}

}  // namespace

// ---- the tree ----

struct Expr {
  enum class K { Literal, Name, List, Dict, Attr, Index, Slice, Call, Filter, Test, Neg, Not, Binary, And, Or, Cond } k;
  size_t pos = 0;
  Value lit;
  std::string name;  // Name, Attr, Filter, Test; Binary: the operator
  bool negate = false;
  std::vector<std::unique_ptr<Expr>> items;  // List/Dict (key, value pairs), Call/Filter/Test positional args
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
  std::unique_ptr<Expr> a, b, c;  // operands; Slice: object, start, stop + items[0] step
};
using ExprP = std::unique_ptr<Expr>;

struct Node {
  enum class K { Text, Output, If, For, Set, SetBlock, Break, Continue, Block } k;
  size_t pos = 0;
  std::string text;
  ExprP expr;                                                  // Output, Set value, For iterable
  std::vector<std::pair<ExprP, std::vector<std::unique_ptr<Node>>>> branches;  // If (null expr: else)
  std::vector<std::string> targets;                           // For / Set names ("ns.attr" for Set)
  ExprP filter;                                                // For ... if
  std::vector<std::unique_ptr<Node>> body, else_body;          // For, SetBlock, Block
};
using NodeP = std::unique_ptr<Node>;

namespace {

class Parser {
 public:
  Parser(const Source& s, std::vector<Piece> pieces) : s_(s), pieces_(std::move(pieces)) {}

  std::vector<NodeP> parse_all() {
    std::string end;
    auto body = parse_block({}, end);
    return body;
  }

 private:
  const Source& s_;
  std::vector<Piece> pieces_;
  size_t pi_ = 0;
  std::vector<Tok> toks_;
  size_t ti_ = 0;
  int depth_ = 0;

  // -- statements --
  // Parses nodes until a {% tag %} whose first word is in `ends`; returns that word in `end`
  // (the rest of its tokens are left for the caller).
  std::vector<NodeP> parse_block(const std::vector<std::string>& ends, std::string& end) {
    if (++depth_ > kMaxDepth) s_.error(ErrorCode::Format, pi_ < pieces_.size() ? pieces_[pi_].pos : 0, "blocks nested too deep");
    std::vector<NodeP> out;
    while (pi_ < pieces_.size()) {
      const Piece& p = pieces_[pi_++];
      if (p.kind == Piece::Text) {
        auto n = std::make_unique<Node>();
        n->k = Node::K::Text;
        n->text = p.text;
        out.push_back(std::move(n));
        continue;
      }
      toks_ = tokenize(s_, p.text, p.pos);
      ti_ = 0;
      if (p.kind == Piece::Expr) {
        auto n = std::make_unique<Node>();
        n->k = Node::K::Output;
        n->pos = p.pos;
        n->expr = expr();
        expect_end();
        out.push_back(std::move(n));
        continue;
      }
      const Tok& w = next();
      if (w.kind != Tok::Name) s_.error(ErrorCode::Format, w.pos, "expected a statement name");
      for (const auto& e : ends)
        if (w.s == e) {
          end = e;
          --depth_;
          return out;
        }
      out.push_back(statement(w));
    }
    if (!ends.empty()) s_.error(ErrorCode::Format, s_.src.size(), "missing {% " + ends.back() + " %}");
    --depth_;
    return out;
  }

  NodeP statement(const Tok& w) {
    auto n = std::make_unique<Node>();
    n->pos = w.pos;
    std::string end;
    if (w.s == "if") {
      n->k = Node::K::If;
      ExprP cond = expr();
      expect_end();
      while (true) {
        auto body = parse_block({"elif", "else", "endif"}, end);
        n->branches.emplace_back(std::move(cond), std::move(body));
        if (end == "endif") break;
        if (end == "else") {
          expect_end();
          n->branches.emplace_back(nullptr, parse_block({"endif"}, end));
          break;
        }
        cond = expr();
        expect_end();
      }
      expect_end();
    } else if (w.s == "for") {
      n->k = Node::K::For;
      do n->targets.push_back(name_tok().s);
      while (accept(","));
      if (!accept_name("in")) s_.error(ErrorCode::Format, peek().pos, "expected 'in' in for");
      n->expr = or_expr();
      if (accept_name("if")) n->filter = or_expr();
      if (accept_name("recursive")) s_.error(ErrorCode::Unsupported, w.pos, "recursive loops are not supported");
      expect_end();
      n->body = parse_block({"else", "endfor"}, end);
      if (end == "else") {
        expect_end();
        n->else_body = parse_block({"endfor"}, end);
      }
      expect_end();
    } else if (w.s == "set") {
      std::string target = name_tok().s;
      if (accept(".")) target += "." + name_tok().s;
      n->targets.push_back(target);
      while (accept(",")) n->targets.push_back(name_tok().s);
      if (accept("=")) {
        n->k = Node::K::Set;
        n->expr = tuple_or_expr();
        expect_end();
      } else {
        n->k = Node::K::SetBlock;
        expect_end();
        n->body = parse_block({"endset"}, end);
        expect_end();
      }
    } else if (w.s == "break" || w.s == "continue") {
      n->k = w.s == "break" ? Node::K::Break : Node::K::Continue;
      expect_end();
    } else if (w.s == "generation") {
      n->k = Node::K::Block;
      expect_end();
      n->body = parse_block({"endgeneration"}, end);
      expect_end();
    } else {
      s_.error(ErrorCode::Unsupported, w.pos, "statement '" + w.s + "' is not supported");
    }
    return n;
  }

  // -- tokens --
  const Tok& peek(size_t k = 0) const { return toks_[std::min(ti_ + k, toks_.size() - 1)]; }
  const Tok& next() {
    const Tok& t = peek();
    if (ti_ < toks_.size() - 1) ++ti_;
    return t;
  }
  bool accept(const char* op) {
    if (peek().kind == Tok::Op && peek().s == op) return ++ti_, true;
    return false;
  }
  bool accept_name(const char* n) {
    if (peek().kind == Tok::Name && peek().s == n) return ++ti_, true;
    return false;
  }
  void expect(const char* op) {
    if (!accept(op)) s_.error(ErrorCode::Format, peek().pos, std::string("expected '") + op + "'");
  }
  void expect_end() {
    if (peek().kind != Tok::End) s_.error(ErrorCode::Format, peek().pos, "unexpected '" + peek().s + "'");
  }
  const Tok& name_tok() {
    if (peek().kind != Tok::Name) s_.error(ErrorCode::Format, peek().pos, "expected a name");
    return next();
  }

  // -- expressions (jinja2's precedence) --
  ExprP node(Expr::K k, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->k = k;
    e->pos = pos;
    return e;
  }
  ExprP binary(const std::string& op, ExprP a, ExprP b, size_t pos) {
    auto e = node(Expr::K::Binary, pos);
    e->name = op;
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& q) : p(q) {
      if (++p.depth_ > kMaxDepth) p.s_.error(ErrorCode::Format, p.peek().pos, "expression nested too deep");
    }
    ~DepthGuard() { --p.depth_; }
  };

  ExprP tuple_or_expr() {  // a, b (a tuple: a list value)
    const size_t pos = peek().pos;
    ExprP first = expr();
    if (peek().kind != Tok::Op || peek().s != ",") return first;
    auto l = node(Expr::K::List, pos);
    l->items.push_back(std::move(first));
    while (accept(",")) l->items.push_back(expr());
    return l;
  }
  ExprP expr() {
    DepthGuard g(*this);
    const size_t pos = peek().pos;
    ExprP a = or_expr();
    if (accept_name("if")) {
      auto c = node(Expr::K::Cond, pos);
      c->b = or_expr();  // condition
      c->a = std::move(a);
      if (accept_name("else")) c->c = expr();
      return c;
    }
    return a;
  }
  ExprP or_expr() {
    ExprP a = and_expr();
    while (peek().kind == Tok::Name && peek().s == "or") {
      const size_t pos = next().pos;
      auto e = node(Expr::K::Or, pos);
      e->a = std::move(a);
      e->b = and_expr();
      a = std::move(e);
    }
    return a;
  }
  ExprP and_expr() {
    ExprP a = not_expr();
    while (peek().kind == Tok::Name && peek().s == "and") {
      const size_t pos = next().pos;
      auto e = node(Expr::K::And, pos);
      e->a = std::move(a);
      e->b = not_expr();
      a = std::move(e);
    }
    return a;
  }
  ExprP not_expr() {
    if (peek().kind == Tok::Name && peek().s == "not") {
      DepthGuard g(*this);
      const size_t pos = next().pos;
      auto e = node(Expr::K::Not, pos);
      e->a = not_expr();
      return e;
    }
    return compare();
  }
  ExprP compare() {
    ExprP a = math1();
    while (true) {
      const Tok& t = peek();
      const size_t pos = t.pos;
      if (t.kind == Tok::Op && (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == ">" || t.s == "<=" || t.s == ">=")) {
        const std::string op = next().s;
        a = binary(op, std::move(a), math1(), pos);
      } else if (t.kind == Tok::Name && t.s == "in") {
        next();
        a = binary("in", std::move(a), math1(), pos);
      } else if (t.kind == Tok::Name && t.s == "not" && peek(1).kind == Tok::Name && peek(1).s == "in") {
        next(), next();
        a = binary("not in", std::move(a), math1(), pos);
      } else {
        return a;
      }
    }
  }
  ExprP math1() {
    ExprP a = concat();
    while (peek().kind == Tok::Op && (peek().s == "+" || peek().s == "-")) {
      const Tok& t = next();
      a = binary(t.s, std::move(a), concat(), t.pos);
    }
    return a;
  }
  ExprP concat() {
    ExprP a = math2();
    while (peek().kind == Tok::Op && peek().s == "~") {
      const size_t pos = next().pos;
      a = binary("~", std::move(a), math2(), pos);
    }
    return a;
  }
  ExprP math2() {
    ExprP a = power();
    while (peek().kind == Tok::Op && (peek().s == "*" || peek().s == "/" || peek().s == "//" || peek().s == "%")) {
      const Tok& t = next();
      a = binary(t.s, std::move(a), power(), t.pos);
    }
    return a;
  }
  ExprP power() {
    ExprP a = unary();
    while (peek().kind == Tok::Op && peek().s == "**") {
      const size_t pos = next().pos;
      a = binary("**", std::move(a), unary(), pos);
    }
    return a;
  }
  ExprP unary() {
    DepthGuard g(*this);
    if (peek().kind == Tok::Op && (peek().s == "-" || peek().s == "+")) {
      const Tok& t = next();
      ExprP v = unary();
      if (t.s == "+") return v;
      auto e = node(Expr::K::Neg, t.pos);
      e->a = std::move(v);
      return filters(std::move(e));
    }
    return filters(postfix(primary()));
  }
  void call_args(Expr& e) {  // after "("
    if (accept(")")) return;
    do {
      if (peek().kind == Tok::Name && peek(1).kind == Tok::Op && peek(1).s == "=") {
        std::string k = next().s;
        next();
        e.kwargs.emplace_back(k, expr());
      } else {
        e.items.push_back(expr());
      }
    } while (accept(","));
    expect(")");
  }
  ExprP primary() {
    const Tok& t = next();
    if (t.kind == Tok::Str) {
      auto e = node(Expr::K::Literal, t.pos);
      std::string s = t.s;
      while (peek().kind == Tok::Str) s += next().s;  // adjacent literals concatenate
      e->lit = Value::string(s);
      return e;
    }
    if (t.kind == Tok::Int || t.kind == Tok::Float) {
      auto e = node(Expr::K::Literal, t.pos);
      e->lit = t.kind == Tok::Int ? Value::integer(t.i) : Value::number(t.f);
      return e;
    }
    if (t.kind == Tok::Name) {
      auto e = node(Expr::K::Literal, t.pos);
      if (t.s == "true" || t.s == "True") e->lit = Value::boolean(true);
      else if (t.s == "false" || t.s == "False") e->lit = Value::boolean(false);
      else if (t.s == "none" || t.s == "None") e->lit = Value::none();
      else {
        e->k = Expr::K::Name;
        e->name = t.s;
      }
      return e;
    }
    if (t.kind == Tok::Op && t.s == "(") {
      ExprP e = tuple_or_expr();
      expect(")");
      return e;
    }
    if (t.kind == Tok::Op && t.s == "[") {
      auto e = node(Expr::K::List, t.pos);
      while (!accept("]")) {
        e->items.push_back(expr());
        if (!accept(",")) {
          expect("]");
          break;
        }
      }
      return e;
    }
    if (t.kind == Tok::Op && t.s == "{") {
      auto e = node(Expr::K::Dict, t.pos);
      while (!accept("}")) {
        e->items.push_back(expr());
        expect(":");
        e->items.push_back(expr());
        if (!accept(",")) {
          expect("}");
          break;
        }
      }
      return e;
    }
    s_.error(ErrorCode::Format, t.pos, t.kind == Tok::End ? "unexpected end of tag" : "unexpected '" + t.s + "'");
  }
  ExprP postfix(ExprP e) {
    while (true) {
      const size_t pos = peek().pos;
      if (accept(".")) {
        auto a = node(Expr::K::Attr, pos);
        a->name = peek().kind == Tok::Int ? std::to_string(next().i) : name_tok().s;
        a->a = std::move(e);
        e = std::move(a);
      } else if (accept("[")) {
        ExprP start, stop, step;
        bool is_slice = false;
        if (!(peek().kind == Tok::Op && peek().s == ":")) start = expr();
        if (accept(":")) {
          is_slice = true;
          if (!(peek().kind == Tok::Op && (peek().s == ":" || peek().s == "]"))) stop = expr();
          if (accept(":") && !(peek().kind == Tok::Op && peek().s == "]")) step = expr();
        }
        expect("]");
        auto x = node(is_slice ? Expr::K::Slice : Expr::K::Index, pos);
        x->a = std::move(e);
        x->b = std::move(start);
        x->c = std::move(stop);
        if (is_slice) x->items.push_back(std::move(step));
        e = std::move(x);
      } else if (accept("(")) {
        auto c = node(Expr::K::Call, pos);
        c->a = std::move(e);
        call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  ExprP filters(ExprP e) {
    while (true) {
      const size_t pos = peek().pos;
      if (accept("|")) {
        auto f = node(Expr::K::Filter, pos);
        f->name = name_tok().s;
        f->a = std::move(e);
        if (accept("(")) call_args(*f);
        e = postfix(std::move(f));
      } else if (peek().kind == Tok::Name && peek().s == "is") {
        next();
        auto t = node(Expr::K::Test, pos);
        t->negate = accept_name("not");
        t->name = peek().kind == Tok::Name ? next().s : peek().kind == Tok::Op && (peek().s == "==" || peek().s == "!=") ? next().s : name_tok().s;
        t->a = std::move(e);
        if (accept("(")) call_args(*t);
        else if (peek().kind == Tok::Str || peek().kind == Tok::Int || peek().kind == Tok::Float ||
                 (peek().kind == Tok::Name && peek().s != "and" && peek().s != "or" && peek().s != "else" && peek().s != "if"))
          t->items.push_back(primary());
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
};

// ---- rendering ----

enum class Flow { Normal, Break, Continue };

class Renderer {
 public:
  Renderer(const Source& s, const nlohmann::ordered_json& ctx) : s_(s) {
    scopes_.emplace_back();
    if (!ctx.is_object()) fail(ErrorCode::InvalidArgument, "chat template context must be a JSON object");
    for (const auto& [k, v] : ctx.items()) scopes_.back()[k] = Value::from_json(v);
  }
  std::string out;

  Flow run(const std::vector<NodeP>& nodes) {
    for (const NodeP& n : nodes) {
      const Flow f = run(*n);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

 private:
  const Source& s_;
  std::vector<std::unordered_map<std::string, Value>> scopes_;
  int64_t steps_ = 0;

  void step(size_t pos) {
    if (++steps_ > kMaxSteps) s_.error(ErrorCode::InvalidArgument, pos, "rendering takes too many steps");
  }
  void emit(const std::string& s, size_t pos) {
    if (out.size() + s.size() > kMaxOutput) s_.error(ErrorCode::InvalidArgument, pos, "rendered text exceeds 64 MiB");
    out += s;
  }
  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
      if (auto f = it->find(name); f != it->end()) return f->second;
    return global_function(name);
  }
  void assign(const std::string& name, Value v) { scopes_.back()[name] = std::move(v); }

  Flow run(const Node& n) {
    step(n.pos);
    switch (n.k) {
      case Node::K::Text: emit(n.text, n.pos); return Flow::Normal;
      case Node::K::Output: emit(to_str(eval(*n.expr)), n.pos); return Flow::Normal;
      case Node::K::If:
        for (const auto& [cond, body] : n.branches)
          if (!cond || eval(*cond).truthy()) return run(body);
        return Flow::Normal;
      case Node::K::For: return run_for(n);
      case Node::K::Set: {
        Value v = eval(*n.expr);
        set_targets(n, std::move(v));
        return Flow::Normal;
      }
      case Node::K::SetBlock: {
        std::string saved;
        saved.swap(out);
        run(n.body);
        std::string captured;
        captured.swap(out);
        out.swap(saved);
        set_targets(n, Value::string(captured));
        return Flow::Normal;
      }
      case Node::K::Break: return Flow::Break;
      case Node::K::Continue: return Flow::Continue;
      case Node::K::Block: return run(n.body);
    }
    return Flow::Normal;
  }

  // True if `v` holds the dict `d` (a namespace about to be stored into itself).
  static bool contains(const Value& v, const Dict* d, int depth) {
    if (depth > kMaxValueDepth) return false;
    if (v.dict && v.dict.get() == d) return true;
    if (v.list)
      for (const Value& x : *v.list)
        if (contains(x, d, depth + 1)) return true;
    if (v.dict)
      for (const auto& kv : *v.dict)
        if (contains(kv.second, d, depth + 1)) return true;
    return false;
  }
  // Values nest at most kMaxValueDepth deep (printing, comparing and freeing them recurse).
  void check_depth(const Value& v, size_t pos) const {
    if (value_depth(v, 0) > kMaxValueDepth)
      s_.error(ErrorCode::InvalidArgument, pos, "values nested more than " + std::to_string(kMaxValueDepth) + " deep");
  }
  static int value_depth(const Value& v, int depth) {
    if (depth > kMaxValueDepth) return depth;
    int m = depth;
    if (v.list)
      for (const Value& x : *v.list) m = std::max(m, value_depth(x, depth + 1));
    if (v.dict)
      for (const auto& kv : *v.dict) m = std::max(m, value_depth(kv.second, depth + 1));
    return m;
  }
  Value text(std::string s, size_t pos) const {
    if (s.size() > kMaxOutput) s_.error(ErrorCode::InvalidArgument, pos, "a string longer than 64 MiB");
    return Value::string(std::move(s));
  }

  void set_targets(const Node& n, Value v) {
    const std::string& t = n.targets[0];
    if (const size_t dot = t.find('.'); dot != std::string::npos) {
      Value ns = lookup(t.substr(0, dot));
      if (ns.kind != Value::Kind::Namespace)
        s_.error(ErrorCode::InvalidArgument, n.pos, "cannot assign attribute on a " + ns.type_name() + " (use namespace())");
      if (contains(v, ns.dict.get(), 0))
        s_.error(ErrorCode::InvalidArgument, n.pos, "cannot store a namespace inside itself");
      check_depth(v, n.pos);
      ns.set(t.substr(dot + 1), std::move(v));
      return;
    }
    if (n.targets.size() == 1) return assign(t, std::move(v));
    if (v.kind != Value::Kind::List || v.list->size() != n.targets.size())
      s_.error(ErrorCode::InvalidArgument, n.pos, "cannot unpack into " + std::to_string(n.targets.size()) + " names");
    for (size_t i = 0; i < n.targets.size(); ++i) assign(n.targets[i], (*v.list)[i]);
  }

  Flow run_for(const Node& n) {
    const Value seq = eval(*n.expr);
    std::shared_ptr<const List> shared;  // the list itself, not a copy
    List items;
    if (seq.kind == Value::Kind::List) shared = seq.list;
    else if (seq.is_mapping()) {
      for (const auto& kv : *seq.dict) items.push_back(Value::string(kv.first));
    } else if (seq.is_string()) {
      CallArgs a{{}, {}, s_.where(n.pos)};
      items = *apply_filter("list", seq, a).list;
    } else if (!seq.is_undefined() && !seq.is_none()) {
      s_.error(ErrorCode::InvalidArgument, n.pos, "'" + seq.type_name() + "' object is not iterable");
    } else if (seq.is_none()) {
      s_.error(ErrorCode::InvalidArgument, n.pos, "'NoneType' object is not iterable");
    }
    scopes_.emplace_back();
    if (!shared) shared = std::make_shared<const List>(std::move(items));
    if (n.filter) {  // "for x in seq if cond": filtered before loop.* is computed
      List kept;
      for (const Value& it : *shared) {
        bind(n, it);
        if (eval(*n.filter).truthy()) kept.push_back(it);
      }
      shared = std::make_shared<const List>(std::move(kept));
    }
    scopes_.pop_back();
    const List& all = *shared;
    const int64_t len = int64_t(all.size());
    Value loop = Value::make_dict({{"index", Value::integer(0)},     {"index0", Value::integer(0)},
                                   {"revindex", Value::integer(0)},  {"revindex0", Value::integer(0)},
                                   {"first", Value::boolean(false)}, {"last", Value::boolean(false)},
                                   {"length", Value::integer(len)},  {"previtem", Value::undefined("loop.previtem")},
                                   {"nextitem", Value::undefined("loop.nextitem")}});
    Dict& fields = *loop.dict;  // one loop object, updated in place (as jinja2's LoopContext)
    for (int64_t i = 0; i < len; ++i) {
      step(n.pos);
      scopes_.emplace_back();  // each iteration starts afresh: a set in one is not seen by the next
      bind(n, all[size_t(i)]);
      fields[0].second.i = i + 1;
      fields[1].second.i = i;
      fields[2].second.i = len - i;
      fields[3].second.i = len - i - 1;
      fields[4].second = Value::boolean(i == 0);
      fields[5].second = Value::boolean(i == len - 1);
      fields[7].second = i > 0 ? all[size_t(i - 1)] : Value::undefined("loop.previtem");
      fields[8].second = i + 1 < len ? all[size_t(i + 1)] : Value::undefined("loop.nextitem");
      assign("loop", loop);
      const Flow f = run(n.body);
      scopes_.pop_back();
      if (f == Flow::Break) break;
    }
    if (len == 0) return run(n.else_body);
    return Flow::Normal;
  }

  void bind(const Node& n, const Value& item) {
    if (n.targets.size() == 1) return assign(n.targets[0], item);
    if (item.kind != Value::Kind::List || item.list->size() != n.targets.size())
      s_.error(ErrorCode::InvalidArgument, n.pos, "cannot unpack a loop item into " + std::to_string(n.targets.size()) + " names");
    for (size_t i = 0; i < n.targets.size(); ++i) assign(n.targets[i], (*item.list)[i]);
  }

  CallArgs args_of(const Expr& e) {
    CallArgs a{{}, {}, s_.where(e.pos)};
    for (const ExprP& x : e.items) a.pos.push_back(eval(*x));
    for (const auto& [k, x] : e.kwargs) a.kw.emplace_back(k, eval(*x));
    return a;
  }

  Value eval(const Expr& e) {
    step(e.pos);
    switch (e.k) {
      case Expr::K::Literal: return e.lit;
      case Expr::K::Name: {
        Value v = lookup(e.name);
        if (v.is_undefined()) v.undefined_name = e.name;
        return v;
      }
      case Expr::K::List: {
        List l;
        for (const ExprP& x : e.items) l.push_back(eval(*x));
        Value v = Value::make_list(std::move(l));
        check_depth(v, e.pos);
        return v;
      }
      case Expr::K::Dict: {
        Value d = Value::make_dict();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) d.set(to_str(eval(*e.items[i])), eval(*e.items[i + 1]));
        return d;
      }
      case Expr::K::Attr: {
        const Value obj = eval(*e.a);
        if (obj.is_undefined())
          s_.error(ErrorCode::InvalidArgument, e.pos, "'" + (obj.undefined_name.empty() ? "value" : obj.undefined_name) +
                                                          "' is undefined (reading ." + e.name + ")");
        if (const Value* v = obj.get(e.name)) return *v;
        if (has_method(obj, e.name)) {  // a bound method, called by the enclosing Call
          Value m = Value::make_list({obj, Value::string(e.name)});
          m.kind = Value::Kind::Function;
          m.fn = nullptr;
          return m;
        }
        return Value::undefined(e.name);
      }
      case Expr::K::Index: return index(eval(*e.a), eval(*e.b), s_.where(e.pos));
      case Expr::K::Slice: {
        const Value obj = eval(*e.a);
        auto opt = [&](const ExprP& x) -> std::optional<int64_t> {
          if (!x) return std::nullopt;
          const Value v = eval(*x);
          if (v.is_none()) return std::nullopt;
          if (v.kind != Value::Kind::Int) s_.error(ErrorCode::InvalidArgument, e.pos, "slice indices must be integers");
          return v.i;
        };
        return slice(obj, opt(e.b), opt(e.c), opt(e.items[0]), s_.where(e.pos));
      }
      case Expr::K::Call: {
        const Value f = eval(*e.a);
        CallArgs a = args_of(e);
        if (f.kind == Value::Kind::Function && !f.fn && f.list) return call_method((*f.list)[0], (*f.list)[1].s, a);
        if (f.kind != Value::Kind::Function || !f.fn)
          s_.error(ErrorCode::InvalidArgument, e.pos,
                   "'" + (f.is_undefined() ? f.undefined_name : f.type_name()) + "' is not callable" +
                       (f.is_undefined() ? " (undefined)" : ""));
        return (*f.fn)(a);
      }
      case Expr::K::Filter: {
        const Value v = eval(*e.a);
        return apply_filter(e.name, v, args_of(e));
      }
      case Expr::K::Test: {
        const Value v = eval(*e.a);
        return Value::boolean(apply_test(e.name, v, args_of(e)) != e.negate);
      }
      case Expr::K::Neg: {
        const Value v = eval(*e.a);
        if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool) {
          if (v.i == INT64_MIN) s_.error(ErrorCode::InvalidArgument, e.pos, "integer overflow in unary -");
          return Value::integer(-v.i);
        }
        if (v.kind == Value::Kind::Float) return Value::number(-v.f);
        s_.error(ErrorCode::InvalidArgument, e.pos, "bad operand type for unary -: " + v.type_name());
      }
      case Expr::K::Not: return Value::boolean(!eval(*e.a).truthy());
      case Expr::K::And: {
        Value a = eval(*e.a);
        return a.truthy() ? eval(*e.b) : a;
      }
      case Expr::K::Or: {
        Value a = eval(*e.a);
        return a.truthy() ? a : eval(*e.b);
      }
      case Expr::K::Cond:
        if (eval(*e.b).truthy()) return eval(*e.a);
        return e.c ? eval(*e.c) : Value::undefined("conditional without else");
      case Expr::K::Binary: return binary(e, eval(*e.a), eval(*e.b));
    }
    return Value::undefined();
  }

  Value binary(const Expr& e, const Value& a, const Value& b) {
    const std::string& op = e.name;
    using VK = Value::Kind;
    auto type_error = [&]() -> Value {
      s_.error(ErrorCode::InvalidArgument, e.pos,
               "unsupported operand types for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'" +
                   (a.is_undefined() && !a.undefined_name.empty() ? " ('" + a.undefined_name + "' is undefined)" : "") +
                   (b.is_undefined() && !b.undefined_name.empty() ? " ('" + b.undefined_name + "' is undefined)" : ""));
    };
    if (op == "==") return Value::boolean(equal(a, b));
    if (op == "!=") return Value::boolean(!equal(a, b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.is_string()) {
        if (!a.is_string()) return type_error();
        found = b.s.find(a.s) != std::string::npos;
      } else if (b.kind == VK::List) {
        for (const Value& x : *b.list) found = found || equal(x, a);
      } else if (b.is_mapping()) {
        found = a.is_string() && b.get(a.s) != nullptr;
      } else if (!b.is_undefined()) {
        return type_error();
      }
      return Value::boolean(found == (op == "in"));
    }
    if (op == "~") return text(to_str(a) + to_str(b), e.pos);
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int cmp;
      if (a.is_number() && b.is_number()) cmp = a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double() ? 1 : 0;
      else if (a.is_string() && b.is_string()) cmp = a.s.compare(b.s);
      else return type_error();
      return Value::boolean(op == "<" ? cmp < 0 : op == ">" ? cmp > 0 : op == "<=" ? cmp <= 0 : cmp >= 0);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) return text(a.s + b.s, e.pos);
      if (a.kind == VK::List && b.kind == VK::List) {
        if (a.list->size() + b.list->size() > kMaxItems) s_.error(ErrorCode::InvalidArgument, e.pos, "a list of more than 1,000,000 items");
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l));
      }
    }
    if (op == "*" && a.is_string() && b.kind == VK::Int) {
      if (a.s.empty() || b.i <= 0) return Value::string("");
      if (uint64_t(b.i) > kMaxOutput / a.s.size())
        s_.error(ErrorCode::InvalidArgument, e.pos, "a string longer than 64 MiB");
      std::string s;
      s.reserve(a.s.size() * size_t(b.i));
      for (int64_t i = 0; i < b.i; ++i) s += a.s;
      return Value::string(s);
    }
    if (!a.is_number() || !b.is_number()) return type_error();
    const bool ints = a.kind != VK::Float && b.kind != VK::Float;
    if (op == "/") {
      if (b.as_double() == 0) s_.error(ErrorCode::InvalidArgument, e.pos, "division by zero");
      return Value::number(a.as_double() / b.as_double());
    }
    if (ints) {  // Python's int semantics within int64; past it an error, never a wrap
      const int64_t x = a.i, y = b.i;
      int64_t r = 0;
      auto overflow = [&]() -> Value { s_.error(ErrorCode::InvalidArgument, e.pos, "integer overflow in " + op); };
      if (op == "+") return __builtin_add_overflow(x, y, &r) ? overflow() : Value::integer(r);
      if (op == "-") return __builtin_sub_overflow(x, y, &r) ? overflow() : Value::integer(r);
      if (op == "*") return __builtin_mul_overflow(x, y, &r) ? overflow() : Value::integer(r);
      if (y == 0 && (op == "//" || op == "%")) s_.error(ErrorCode::InvalidArgument, e.pos, "division by zero");
      if (op == "//") {
        if (y == -1) return x == INT64_MIN ? overflow() : Value::integer(-x);
        return Value::integer(x / y - ((x % y != 0) && ((x < 0) != (y < 0))));
      }
      if (op == "%") {
        if (y == -1) return Value::integer(0);
        r = x % y;
        return Value::integer(r != 0 && ((r < 0) != (y < 0)) ? r + y : r);
      }
      if (op == "**" && y >= 0) {  // (a negative exponent gives a float, below)
        if (x == 0 || x == 1) return Value::integer(y == 0 ? 1 : x);
        if (x == -1) return Value::integer(y % 2 ? -1 : 1);
        r = 1;  // |x| >= 2: overflows within 63 factors
        for (int64_t i = 0; i < y; ++i)
          if (__builtin_mul_overflow(r, x, &r)) return overflow();
        return Value::integer(r);
      }
    }
    const double x = a.as_double(), y = b.as_double();
    if (op == "+") return Value::number(x + y);
    if (op == "-") return Value::number(x - y);
    if (op == "*") return Value::number(x * y);
    if (op == "//") return Value::number(std::floor(x / y));
    if (op == "%") return Value::number(x - std::floor(x / y) * y);
    if (op == "**") return Value::number(std::pow(x, y));
    return type_error();
  }
};

}  // namespace

Template::~Template() = default;

std::shared_ptr<const Template> Template::parse(const std::string& source, const std::string& name) {
  std::shared_ptr<Template> t(new Template());
  t->name_ = name;
  // jinja2's defaults: newlines normalised to "\n", and one trailing newline of the template
  // dropped (keep_trailing_newline=False).
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  t->source_ = std::move(src);
  const Source s{t->source_, t->name_};
  Parser p(s, lex(s));  // (positions in messages count lines of the normalised text)
  t->body_ = p.parse_all();
  return t;
}

std::string Template::render(const nlohmann::ordered_json& context) const {
  const Source s{source_, name_};
  Renderer r(s, context);
  r.run(body_);
  return std::move(r.out);
}

}  // namespace reason::jinja
