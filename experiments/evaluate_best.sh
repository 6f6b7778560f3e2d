#!/usr/bin/env bash
# Evaluate the best checkpoint of a run (the one fer.train --json named in ROOT/summary.json) on
# PublicTest, the validation split, once per TTA mode: ROOT/eval for none, ROOT/eval-<tta> otherwise;
# and plain without the PublicTest faces that have an exact copy in Training: ROOT/eval-unleaked.
# The list of those faces is $LEAKED when set (fer.analyze's leaked.txt for DATA, made once for
# many runs), else fer.analyze makes it in ROOT/analysis.
# Usage: bash experiments/evaluate_best.sh ROOT DATA [TTA ...]   (default TTA: none flip)
set -euo pipefail
ROOT=$1
DATA=$2
shift 2
TTAS=("$@")
[ ${#TTAS[@]} -gt 0 ] || TTAS=(none flip)
for TTA in "${TTAS[@]}"; do
    OUT="$ROOT/eval"
    [ "$TTA" = none ] || OUT="$ROOT/eval-$TTA"
    python -m fer.evaluate --ckpt "$ROOT" --data "$DATA" --split val --tta "$TTA" --out "$OUT"
done
LEAKED=${LEAKED:-$ROOT/analysis/leaked.txt}
[ -f "$LEAKED" ] || python -m fer.analyze --data "$DATA" --out "$(dirname "$LEAKED")" > /dev/null
python -m fer.evaluate --ckpt "$ROOT" --data "$DATA" --split val --skip "$LEAKED" \
    --out "$ROOT/eval-unleaked"
