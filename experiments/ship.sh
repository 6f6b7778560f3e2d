#!/usr/bin/env bash
# Ship a run's best checkpoint (the one fer.train --json wrote to ROOT/summary.json): export it to
# OUT (default checkpoints/) with float16 weights, score the exported files themselves on
# PublicTest, the validation split, plain and with flip TTA (ROOT/shipped-none, ROOT/shipped-flip),
# and export again with those figures recorded in OUT/model.json.
# Usage: bash experiments/ship.sh ROOT DATA [OUT]
set -euo pipefail
ROOT=$1
DATA=$2
OUT=${3:-checkpoints}
CKPT=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['best_checkpoint'])" "$ROOT/summary.json")
python -m fer.export --ckpt "$CKPT" --out "$OUT" --half
for TTA in none flip; do
    python -m fer.evaluate --ckpt "$OUT" --data "$DATA" --split val --tta "$TTA" --out "$ROOT/shipped-$TTA"
done
python -m fer.export --ckpt "$CKPT" --out "$OUT" --half \
    --metrics "$ROOT/shipped-none/metrics.json" "$ROOT/shipped-flip/metrics.json"
