#!/usr/bin/env bash
# `reason convert` both ways: a GGUF becomes a Hugging Face directory and that directory a GGUF
# again; all three score a text identically (f32 weights, same values). Then `reason generate`
# and `reason info` on a .gguf, and the refusals. Usage: cli_convert.sh REASON FIXTURES_DIR
set -euo pipefail
REASON=$1
FIX=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
G="$FIX/gguf_models/qwen2_moe.gguf"
"$REASON" convert "$G" --out "$WORK/hf" >/dev/null
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
  [ -f "$WORK/hf/$f" ] || { echo "FAIL: convert wrote no $f"; exit 1; }
done
[ ! -e "$WORK/hf/trainer_state.json" ] || { echo "FAIL: a converted directory is not a training checkpoint"; exit 1; }
"$REASON" convert "$WORK/hf" --out "$WORK/back.gguf" --type f32 >/dev/null
score() { "$REASON" score --model "$1" --text "<|im_start|>user
Hello there, what is 12+30?<|im_end|>"; }
a=$(score "$G")
b=$(score "$WORK/hf")
c=$(score "$WORK/back.gguf")
[ "$a" = "$b" ] || { echo "FAIL: the converted directory scores differently"; exit 1; }
[ "$a" = "$c" ] || { echo "FAIL: the GGUF written back scores differently"; exit 1; }
"$REASON" generate --model "$G" --prompt "hello" --max-tokens 4 --temperature 0 --json | grep -q '"token_ids"' ||
  { echo "FAIL: generate on a .gguf"; exit 1; }
"$REASON" info --model "$G" | grep -q '"tokenizer": "gguf metadata"' || { echo "FAIL: info on a .gguf"; exit 1; }
"$REASON" convert "$WORK/hf" --out "$WORK/q8.gguf" --type q8_0 >/dev/null
"$REASON" score --model "$WORK/q8.gguf" --text "hello world" | grep -q sum_logprob || { echo "FAIL: q8_0 file"; exit 1; }
# Refusals: an existing output directory is never replaced; unknown types; a missing source.
out=$("$REASON" convert "$G" --out "$WORK/hf" 2>&1) && { echo "FAIL: replaced an existing directory"; exit 1; }
grep -q "already exists" <<<"$out" || { echo "FAIL: $out"; exit 1; }
out=$("$REASON" convert "$WORK/hf" --out "$WORK/x.gguf" --type q3_k 2>&1) && { echo "FAIL: accepted q3_k"; exit 1; }
grep -q "unknown GGUF output type 'q3_k'" <<<"$out" || { echo "FAIL: $out"; exit 1; }
out=$("$REASON" convert "$WORK/nope" --out "$WORK/x.gguf" 2>&1) && { echo "FAIL: converted a missing directory"; exit 1; }
grep -q "does not exist" <<<"$out" || { echo "FAIL: $out"; exit 1; }
[ ! -e "$WORK/x.gguf" ] || { echo "FAIL: a failed convert left a file"; exit 1; }
echo OK
