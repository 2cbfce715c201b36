#!/usr/bin/env bash
# `reason generate` takes its sampling defaults from the model's generation_config.json where the
# command line sets none, and `reason info` prints them. Usage: cli_generation_defaults.sh REASON MODEL_DIR
set -euo pipefail
REASON=$1
SRC=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$SRC" "$WORK/r1"
cp -r "$SRC" "$WORK/greedy"
echo '{"do_sample": true, "temperature": 0.6, "top_p": 0.95}' >"$WORK/r1/generation_config.json"
echo '{"do_sample": false, "max_new_tokens": 5}' >"$WORK/greedy/generation_config.json"
gen() { "$REASON" generate --prompt "hello world" --seed 11 --json "$@"; }
# The config's settings equal the same settings given as options, on a copy without the file.
cp -r "$SRC" "$WORK/plain"
rm -f "$WORK/plain/generation_config.json"
a=$(gen --model "$WORK/r1" --max-tokens 12)
b=$(gen --model "$WORK/plain" --max-tokens 12 --temperature 0.6 --top-p 0.95)
c=$(gen --model "$WORK/plain" --max-tokens 12)
[ "$a" = "$b" ] || { echo "FAIL: generation_config defaults differ from the same options"; exit 1; }
[ "$a" != "$c" ] || { echo "FAIL: generation_config had no effect"; exit 1; }
# An option on the command line wins over the file.
d=$(gen --model "$WORK/r1" --max-tokens 12 --temperature 1.0 --top-p 1.0)
[ "$d" = "$c" ] || { echo "FAIL: command-line options do not override generation_config"; exit 1; }
# do_sample false: greedy; max_new_tokens from the file.
e=$(gen --model "$WORK/greedy")
f=$(gen --model "$WORK/plain" --temperature 0 --max-tokens 5)
[ "$e" = "$f" ] || { echo "FAIL: do_sample false / max_new_tokens not applied"; exit 1; }
"$REASON" info --model "$WORK/r1" | grep -q '"temperature": 0.6' || { echo "FAIL: info does not show the defaults"; exit 1; }
echo OK
