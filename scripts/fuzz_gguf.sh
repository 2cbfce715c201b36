#!/usr/bin/env bash
# A longer fuzz run of the GGUF parser and dequantiser (CI only replays the committed corpus):
# builds tests/fuzz/fuzz_gguf.cpp as a libFuzzer target with clang (ASan + UBSan) and runs it for
# SECONDS on a copy of tests/fuzz/corpus/fuzz_gguf. New crashing inputs are left in WORK; add the
# interesting ones to the corpus once fixed.
#
#   scripts/fuzz_gguf.sh [SECONDS=300] [WORK=/tmp/reason-fuzz-gguf]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_TO_RUN=${1:-300}
WORK=${2:-/tmp/reason-fuzz-gguf}
CXX=${CXX:-clang++}
mkdir -p "$WORK/corpus"
cp -n "$REPO"/tests/fuzz/corpus/fuzz_gguf/* "$WORK/corpus/" 2>/dev/null || true
"$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$REPO/sdk" -I"$REPO/kernels/include" \
  "$REPO/tests/fuzz/fuzz_gguf.cpp" "$REPO/sdk/io/gguf.cpp" "$REPO/sdk/io/gguf_dequant.cpp" "$REPO/sdk/io/mapped_file.cpp" \
  -lfmt -o "$WORK/fuzz_gguf"
cd "$WORK"
./fuzz_gguf -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -rss_limit_mb=2048 corpus
