#!/usr/bin/env bash
# Evaluate the best checkpoint of a run (the one fer.train --json wrote to ROOT/summary.json) on
# PublicTest, the validation split, once per TTA mode: ROOT/eval for none, ROOT/eval-<tta> otherwise;
# and plain without the PublicTest faces that have an exact copy in Training (the leaked.txt of
# fer.analyze, run once into ROOT/analysis): ROOT/eval-unleaked.
# Usage: bash experiments/evaluate_best.sh ROOT DATA [TTA ...]   (default TTA: none flip)
set -euo pipefail
ROOT=$1
DATA=$2
shift 2
TTAS=("$@")
[ ${#TTAS[@]} -gt 0 ] || TTAS=(none flip)
CKPT=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['best_checkpoint'])" "$ROOT/summary.json")
for TTA in "${TTAS[@]}"; do
    OUT="$ROOT/eval"
    [ "$TTA" = none ] || OUT="$ROOT/eval-$TTA"
    python -m fer.evaluate --ckpt "$CKPT" --data "$DATA" --split val --tta "$TTA" --out "$OUT"
done
[ -f "$ROOT/analysis/leaked.txt" ] || python -m fer.analyze --data "$DATA" --out "$ROOT/analysis" > /dev/null
python -m fer.evaluate --ckpt "$CKPT" --data "$DATA" --split val --skip "$ROOT/analysis/leaked.txt" \
    --out "$ROOT/eval-unleaked"
