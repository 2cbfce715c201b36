#include "io/json_file.h"

#include <cstring>

#include "core/error.h"
#include "io/mapped_file.h"

namespace reason {

const char* json_kind(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object:
      return "an object";
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::string:
      return "a string";
    case nlohmann::json::value_t::boolean:
      return "a boolean";
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::binary:
      return "binary data";
    case nlohmann::json::value_t::discarded:
      return "a discarded value";
    default:
      return "a number";
  }
}

size_t json_depth_exceeded_at(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

size_t find_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0)
        lo = 0xa0;  // overlong
      else if (c == 0xed)
        hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0)
        lo = 0x90;  // overlong
      else if (c == 0xf4)
        hi = 0x8f;  // above U+10FFFF
    } else {
      return i;  // continuation byte, overlong 0xc0/0xc1, or 0xf5..0xff
    }
    if (n - i < len) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if ((s[i + k] & 0xc0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

namespace {

template <typename Json>
Json parse_checked(std::string_view text, const std::string& what, size_t max_depth) {
  if (size_t at = find_invalid_utf8(text); at != std::string_view::npos)
    fail(ErrorCode::Format, "{}: not valid UTF-8 (byte {})", what, at);
  if (size_t at = json_depth_exceeded_at(text, max_depth); at != std::string_view::npos)
    fail(ErrorCode::Format, "{}: JSON nests deeper than {} levels (at byte {})", what, max_depth, at);
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line L, column C: ...";
    // keep the human part, which carries the position.
    std::string msg = e.what();
    if (size_t close = msg.find("] "); msg.rfind("[json.exception.", 0) == 0 && close != std::string::npos)
      msg.erase(0, close + 2);
    fail(ErrorCode::Format, "{}: not valid JSON: {}", what, msg);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::Format, "{}: not valid JSON: {}", what, e.what());
  }
}

template <typename Json>
Json read_checked(const std::string& path, size_t max_bytes, size_t max_depth) {
  auto file = MappedFile::open(path);
  if (file->size() > max_bytes)
    fail(ErrorCode::Format, "{}: JSON file is {} bytes, over the {}-byte limit", path, file->size(), max_bytes);
  std::string_view text(reinterpret_cast<const char*>(file->data()), file->size());
  return parse_checked<Json>(text, path, max_depth);
}

}  // namespace

nlohmann::json parse_json_text(std::string_view text, const std::string& what, size_t max_depth) {
  return parse_checked<nlohmann::json>(text, what, max_depth);
}

nlohmann::ordered_json parse_ordered_json_text(std::string_view text, const std::string& what, size_t max_depth) {
  return parse_checked<nlohmann::ordered_json>(text, what, max_depth);
}

nlohmann::ordered_json read_ordered_json_file(const std::string& path, size_t max_bytes, size_t max_depth) {
  return read_checked<nlohmann::ordered_json>(path, max_bytes, max_depth);
}

LineRead read_bounded_line(std::istream& in, std::string& line, size_t max_bytes) {
  line.clear();
  std::streambuf* sb = in.rdbuf();
  if (!sb) return LineRead::End;
  bool any = false;
  for (;;) {
    const int c = sb->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return any ? LineRead::Line : LineRead::End;
    }
    any = true;
    if (c == '\n') return LineRead::Line;
    if (line.size() >= max_bytes) return LineRead::TooLong;
    line.push_back(char(c));
  }
}

nlohmann::json read_json_file(const std::string& path, size_t max_bytes, size_t max_depth) {
  return read_checked<nlohmann::json>(path, max_bytes, max_depth);
}

}  // namespace reason
