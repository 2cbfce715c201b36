#!/usr/bin/env bash
# `--adapter` and `reason merge` with a PEFT adapter (tests/fixtures/lora): generate, score, info
# and eval run base + adapter; the merged checkpoint scores as base + adapter does (to f32
# rounding: merged weights are summed once, the adapter's term is added per token) and differs
# from the base; refusals. Usage: cli_lora.sh REASON FIXTURES_DIR
set -euo pipefail
REASON=$1
FIX=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BASE="$FIX/dense/qwen2_tied"
A="$FIX/lora/qwen2_tied_all_linear/adapter"
sum() { "$REASON" score "$@" --text "hello world and more" | grep '"sum_logprob"' | tr -dc '0-9.-'; }
with=$(sum --model "$BASE" --adapter "$A")
base=$(sum --model "$BASE")
"$REASON" merge --model "$BASE" --adapter "$A" --out "$WORK/merged" | grep -q '"merged_modules":14' ||
  { echo "FAIL: merge"; exit 1; }
merged=$(sum --model "$WORK/merged")
python3 - "$with" "$merged" "$base" <<'PY' || { echo "FAIL: scores with $with merged $merged base $base"; exit 1; }
import sys
w, m, b = map(float, sys.argv[1:])
assert abs(w - m) <= 1e-3 * max(1.0, abs(w)), (w, m)
assert abs(w - b) > 1.0, (w, b)
PY
"$REASON" generate --model "$BASE" --adapter "$A" --prompt "hello" --max-tokens 4 --temperature 0 --json | grep -q '"token_ids"' ||
  { echo "FAIL: generate with an adapter"; exit 1; }
"$REASON" info --model "$BASE" --adapter "$A" | grep -q '"modules": 14' || { echo "FAIL: info with an adapter"; exit 1; }
printf '{"prompt": "1+1", "answer": "2"}\n' >"$WORK/d.jsonl"
"$REASON" eval --model "$BASE" --adapter "$A" --data "$WORK/d.jsonl" --samples 1 --max-new-tokens 4 --no-greedy >/dev/null ||
  { echo "FAIL: eval with an adapter"; exit 1; }
# Refusals: an existing output, a missing adapter, an adapter of another model.
out=$("$REASON" merge --model "$BASE" --adapter "$A" --out "$WORK/merged" 2>&1) && { echo "FAIL: replaced a directory"; exit 1; }
grep -q "already exists" <<<"$out" || { echo "FAIL: $out"; exit 1; }
out=$("$REASON" score --model "$BASE" --adapter "$WORK/none" --text "hi there" 2>&1) && { echo "FAIL: a missing adapter"; exit 1; }
grep -q "adapter_config.json" <<<"$out" || { echo "FAIL: $out"; exit 1; }
out=$("$REASON" merge --model "$FIX/dense/qwen3_bias_untied" --adapter "$FIX/lora/llama_gqa2_attn_rslora/adapter" \
  --out "$WORK/m2" 2>&1) && { echo "FAIL: merged a foreign adapter"; exit 1; }
grep -q "but the layer is" <<<"$out" || { echo "FAIL: $out"; exit 1; }
[ ! -e "$WORK/m2" ] || { echo "FAIL: a failed merge left a directory"; exit 1; }
echo OK
