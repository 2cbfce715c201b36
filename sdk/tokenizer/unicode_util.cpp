#include "tokenizer/unicode_util.h"

#include <cstdlib>
#include <memory>

#include <utf8proc.h>

#include "core/error.h"

namespace reason::tok {
namespace {

// Valid range of the second byte for a lead byte (Unicode Table 3-7); lo > hi means invalid lead.
struct LeadInfo {
  uint8_t len, lo, hi;
};
inline LeadInfo lead_info(uint8_t b) {
  if (b < 0x80) return {1, 1, 0};
  if (b < 0xC2) return {0, 1, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 1, 0};
}

constexpr char kReplacement[] = "\xEF\xBF\xBD";

}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    LeadInfo li = lead_info(p[i]);
    if (li.len == 0 || i + li.len > n) return i;
    if (p[i + 1] < li.lo || p[i + 1] > li.hi) return i;
    for (size_t k = 2; k < li.len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += li.len;
  }
  return kNpos;
}

char32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  size_t len = utf8_seq_len(b0);
  if (len == 1 || i + len > s.size()) {
    ++i;
    return b0;
  }
  char32_t cp = len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t append_lossy_utf8(std::string& out, std::string_view in, bool final) {
  const auto* p = reinterpret_cast<const uint8_t*>(in.data());
  const size_t n = in.size();
  size_t i = 0;
  size_t run = 0;  // start of the current run of valid bytes, copied in one go
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    LeadInfo li = lead_info(p[i]);
    size_t k = 1;  // bytes of the candidate sequence that are valid so far
    if (li.len != 0) {
      if (i + 1 < n && p[i + 1] >= li.lo && p[i + 1] <= li.hi) {
        k = 2;
        while (k < li.len && i + k < n && (p[i + k] & 0xC0) == 0x80) ++k;
      }
      if (k == li.len) {
        i += k;
        continue;
      }
      if (i + k == n && !final) {  // a character still arriving: keep it for later
        out.append(in.data() + run, i - run);
        return i;
      }
    }
    out.append(in.data() + run, i - run);
    out.append(kReplacement, 3);
    i += k;
    run = i;
  }
  out.append(in.data() + run, n - run);
  return n;
}

bool is_white_space(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_alphanumeric(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

std::string normalize(std::string_view s, NormForm form) {
  bool ascii = true;
  for (char c : s) {
    if (static_cast<uint8_t>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii || s.empty()) return std::string(s);
  int opts = UTF8PROC_STABLE;
  switch (form) {
    case NormForm::NFC: opts |= UTF8PROC_COMPOSE; break;
    case NormForm::NFD: opts |= UTF8PROC_DECOMPOSE; break;
    case NormForm::NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormForm::NFKD: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &out,
                                    static_cast<utf8proc_option_t>(opts));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(out, &std::free);
  if (n < 0) {
    if (n == UTF8PROC_ERROR_NOMEM) fail(ErrorCode::OutOfMemory, "tokenizer: out of memory while normalising {} bytes", s.size());
    fail(ErrorCode::InvalidArgument, "tokenizer: Unicode normalisation failed: {}", utf8proc_errmsg(n));
  }
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

}  // namespace reason::tok
