#!/usr/bin/env bash
# A longer fuzz run of one fuzz target (CI only replays its committed corpus): builds
# tests/fuzz/TARGET.cpp as a libFuzzer target with clang (ASan + UBSan) and runs it for SECONDS on
# a copy of tests/fuzz/corpus/TARGET. New crashing inputs are left in WORK; add the interesting
# ones to the corpus once fixed.
#
#   scripts/fuzz.sh fuzz_gguf|fuzz_jinja [SECONDS=300] [WORK=/tmp/reason-TARGET]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${1:?usage: scripts/fuzz.sh fuzz_gguf|fuzz_jinja [SECONDS] [WORK]}
SECONDS_TO_RUN=${2:-300}
WORK=${3:-/tmp/reason-$TARGET}
case "$TARGET" in
  fuzz_gguf) SOURCES=(sdk/io/gguf.cpp sdk/io/gguf_dequant.cpp sdk/io/mapped_file.cpp); MAX_LEN=65536 ;;
  fuzz_jinja) SOURCES=(sdk/tokenizer/jinja.cpp sdk/tokenizer/jinja_builtins.cpp sdk/tokenizer/jinja_value.cpp); MAX_LEN=16384 ;;
  *) echo "scripts/fuzz.sh: unknown target '$TARGET' (fuzz_gguf or fuzz_jinja)" >&2; exit 2 ;;
esac
CXX=${CXX:-clang++}
mkdir -p "$WORK/corpus"
cp -n "$REPO"/tests/fuzz/corpus/"$TARGET"/* "$WORK/corpus/" 2>/dev/null || true
"$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$REPO/sdk" -I"$REPO/kernels/include" \
  "$REPO/tests/fuzz/$TARGET.cpp" "${SOURCES[@]/#/$REPO/}" -lfmt -o "$WORK/$TARGET"
cd "$WORK"
./"$TARGET" -max_total_time="$SECONDS_TO_RUN" -max_len="$MAX_LEN" -rss_limit_mb=2048 corpus
