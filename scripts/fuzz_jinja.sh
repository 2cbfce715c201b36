#!/usr/bin/env bash
# A longer fuzz run of the chat-template Jinja interpreter (CI only replays the committed corpus):
# builds tests/fuzz/fuzz_jinja.cpp as a libFuzzer target with clang (ASan + UBSan) and runs it for
# SECONDS on a copy of tests/fuzz/corpus/fuzz_jinja. New crashing inputs are left in WORK; add the
# interesting ones to the corpus once fixed.
#
#   scripts/fuzz_jinja.sh [SECONDS=300] [WORK=/tmp/reason-fuzz-gguf]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_TO_RUN=${1:-300}
WORK=${2:-/tmp/reason-fuzz-gguf}
CXX=${CXX:-clang++}
mkdir -p "$WORK/corpus"
cp -n "$REPO"/tests/fuzz/corpus/fuzz_jinja/* "$WORK/corpus/" 2>/dev/null || true
"$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$REPO/sdk" -I"$REPO/kernels/include" \
  "$REPO/tests/fuzz/fuzz_jinja.cpp" "$REPO/sdk/tokenizer/jinja.cpp" "$REPO/sdk/tokenizer/jinja_builtins.cpp" "$REPO/sdk/tokenizer/jinja_value.cpp" \
  -lfmt -o "$WORK/fuzz_jinja"
cd "$WORK"
./fuzz_jinja -max_total_time="$SECONDS_TO_RUN" -max_len=16384 -rss_limit_mb=2048 corpus
