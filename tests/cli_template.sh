#!/usr/bin/env bash
# `reason template` prints a conversation rendered with the model's own chat template, exactly
# (no trailing newline), from a directory holding only tokenizer.json + tokenizer_config.json or
# from a GGUF; `reason generate --chat` prompts with the same text. Usage: cli_template.sh REASON FIXTURES_DIR
set -euo pipefail
REASON=$1
FIX=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/tok"
cp "$FIX/dense/llama_mha/tokenizer.json" "$FIX/dense/llama_mha/tokenizer_config.json" "$WORK/tok/"
printf '[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 12+30?"}]' >"$WORK/m.json"
want=$(printf '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\nX')
got=$("$REASON" template --model "$WORK/tok" --messages "$WORK/m.json"; printf X)
[ "$got" = "$want" ] || { echo "FAIL: template from a directory: $got"; exit 1; }
got=$("$REASON" template --model "$FIX/gguf_models/qwen3_bias_untied.gguf" --messages "$WORK/m.json" --no-generation-prompt; printf X)
[ "$got" = "${want%<|im_start|>assistant*}X" ] || { echo "FAIL: template from a GGUF: $got"; exit 1; }
# Errors: not a messages array; a template that raises; a model without a template.
printf '{"role": "user"}' >"$WORK/bad.json"
out=$("$REASON" template --model "$WORK/tok" --messages "$WORK/bad.json" 2>&1) && { echo "FAIL: accepted a non-array"; exit 1; }
grep -q "messages must be a JSON array" <<<"$out" || { echo "FAIL: $out"; exit 1; }
raising_cfg='{"chat_template": "{{ raise_exception(\"only user turns\") }}"}'
printf '%s' "$raising_cfg" >"$WORK/tok/tokenizer_config.json"
out=$("$REASON" template --model "$WORK/tok" --messages "$WORK/m.json" 2>&1) && { echo "FAIL: ignored raise_exception"; exit 1; }
grep -q "only user turns" <<<"$out" || { echo "FAIL: $out"; exit 1; }
echo OK
