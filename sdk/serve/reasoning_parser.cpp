#include "serve/reasoning_parser.h"

namespace reason::serve {

namespace {

constexpr std::string_view kOpen = "<think>", kClose = "</think>";

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// The length of the longest suffix of s that is a proper prefix of tag (bytes to hold back).
size_t partial_tag(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

}  // namespace

bool ReasoningParser::prompt_opens_thinking(std::string_view prompt) {
  size_t end = prompt.size();
  while (end > 0 && is_space(prompt[end - 1])) --end;
  return end >= kOpen.size() && prompt.substr(end - kOpen.size(), kOpen.size()) == kOpen;
}

ReasoningParser::Delta ReasoningParser::push(std::string_view piece) {
  Delta d;
  held_.append(piece);
  if (state_ == State::Start) {
    // Leading whitespace, then either `<think>` (a thinking block) or anything else (content).
    size_t i = 0;
    while (i < held_.size() && is_space(held_[i])) ++i;
    const std::string_view rest = std::string_view(held_).substr(i);
    if (rest.size() < kOpen.size() && kOpen.substr(0, rest.size()) == rest) return d;  // undecided yet
    if (rest.substr(0, kOpen.size()) == kOpen) {
      state_ = State::Reasoning;
      held_.erase(0, i + kOpen.size());
    } else {
      state_ = State::Content;
    }
  }
  if (state_ == State::Reasoning) {
    const size_t at = held_.find(kClose);
    if (at != std::string::npos) {
      d.reasoning = held_.substr(0, at);
      state_ = State::Content;
      held_.erase(0, at + kClose.size());
    } else {
      const size_t keep = partial_tag(held_, kClose);
      d.reasoning = held_.substr(0, held_.size() - keep);
      held_.erase(0, held_.size() - keep);
      return d;
    }
  }
  d.content += held_;  // Content: nothing more to find
  held_.clear();
  return d;
}

ReasoningParser::Delta ReasoningParser::flush() {
  Delta d;
  if (state_ == State::Reasoning) d.reasoning = held_;
  else d.content = held_;
  held_.clear();
  return d;
}

}  // namespace reason::serve
