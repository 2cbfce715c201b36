#!/usr/bin/env bash
# `reason quantize` writes a Q4_K_M / Q8_0 GGUF (its tensors are checked byte for byte against
# llama-quantize's in test_quant_model); `--quantize` at load; `reason perplexity` on the file equals
# llama-perplexity's number (tests/fixtures/quant/llama256_llama_cpp.json, final running value) within
# 0.2%; and the refusals. Usage: cli_quantize.sh REASON FIXTURES_DIR
set -euo pipefail
REASON=$1
FIX=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SRC="$FIX/quant/llama256"
TEXT="$FIX/text/ppl_text.txt"
"$REASON" quantize "$SRC" --type q4_k --out "$WORK/q4.gguf" >/dev/null
info=$("$REASON" info --model "$WORK/q4.gguf")
grep -q '"q4_k"' <<<"$info" && grep -q '"q6_k"' <<<"$info" || { echo "FAIL: info of the Q4_K_M file: $info"; exit 1; }
ppl=$("$REASON" --threads 2 perplexity --model "$WORK/q4.gguf" --file "$TEXT" --ctx 128 --chunks 6 --batch 8 |
  sed -n 's/^  "ppl": \([0-9.e+-]*\),*$/\1/p')
# llama-perplexity -c 128 -b 128 --chunks 6 (f32 KV) on llama-quantize's Q4_K_M file: 532.6124
awk -v p="$ppl" 'BEGIN { r = p / 532.6124; exit !(r > 0.998 && r < 1.002) }' ||
  { echo "FAIL: perplexity $ppl, llama.cpp 532.6124"; exit 1; }
# --quantize at load gives the same perplexity as the file (the same bytes).
ppl2=$("$REASON" --threads 2 perplexity --model "$SRC" --quantize q4_k --file "$TEXT" --ctx 128 --chunks 6 --batch 8 |
  sed -n 's/^  "ppl": \([0-9.e+-]*\),*$/\1/p')
[ "$ppl" = "$ppl2" ] || { echo "FAIL: --quantize q4_k gives $ppl2, the file $ppl"; exit 1; }
"$REASON" generate --model "$SRC" --quantize q8_0 --prompt "hello" --max-tokens 4 --temperature 0 --json |
  grep -q '"token_ids"' || { echo "FAIL: generate --quantize q8_0"; exit 1; }
# Refusals: requantising, float types, unknown schemes, a directory as output.
out=$("$REASON" quantize "$WORK/q4.gguf" --type q8_0 --out "$WORK/x.gguf" 2>&1) && { echo "FAIL: requantised"; exit 1; }
grep -q "is already Q" <<<"$out" || { echo "FAIL: $out"; exit 1; }
out=$("$REASON" quantize "$SRC" --type f16 --out "$WORK/x.gguf" 2>&1) && { echo "FAIL: accepted f16"; exit 1; }
grep -q "must be q4_k or q8_0" <<<"$out" || { echo "FAIL: $out"; exit 1; }
out=$("$REASON" generate --model "$SRC" --quantize q3_k --prompt hi 2>&1) && { echo "FAIL: accepted q3_k"; exit 1; }
grep -q "unknown weight quantisation 'q3_k'" <<<"$out" || { echo "FAIL: $out"; exit 1; }
out=$("$REASON" quantize "$SRC" --type q4_k --out "$WORK" 2>&1) && { echo "FAIL: wrote into a directory"; exit 1; }
grep -q "is a directory" <<<"$out" || { echo "FAIL: $out"; exit 1; }
[ ! -e "$WORK/x.gguf" ] || { echo "FAIL: a failed quantize left a file"; exit 1; }
echo OK
