#!/usr/bin/env bash
# A config.json field the engine does not understand stops `reason` with an error naming it;
# --allow-unknown-config-fields (or REASON_ALLOW_UNKNOWN_CONFIG=1) loads the model anyway.
# Usage: cli_config_fields.sh REASON MODEL_DIR
set -euo pipefail
REASON=$1
SRC=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$SRC" "$WORK/m"
sed -i 's/^{/{\n  "vision_start_token_id": 151652,/' "$WORK/m/config.json"
out=$("$REASON" info --model "$WORK/m" 2>&1) && { echo "FAIL: loaded a config with an unknown field"; exit 1; }
grep -q "field 'vision_start_token_id' is not one the engine understands" <<<"$out" || { echo "FAIL: $out"; exit 1; }
"$REASON" --allow-unknown-config-fields info --model "$WORK/m" | grep -q '"architecture"' || { echo "FAIL: the flag"; exit 1; }
REASON_ALLOW_UNKNOWN_CONFIG=1 "$REASON" info --model "$WORK/m" | grep -q '"architecture"' || { echo "FAIL: the env var"; exit 1; }
echo OK
