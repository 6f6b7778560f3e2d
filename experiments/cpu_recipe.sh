#!/usr/bin/env bash
# The shipped CPU model: fer.train's default custom CNN (1.2M parameters, widths 32-64-128-256),
# bf16 on CPU, 90 epochs of the "strong" batched augmentation (flip, rotation, scale, shift,
# brightness/contrast, random erasing), SGD one-cycle, label smoothing 0.1, seed 42.
# Selected on PublicTest (the validation split) only; about 2 hours on a 2-core CPU.
# Then exports the best checkpoint to checkpoints/ with its PublicTest metrics.
# Usage: bash experiments/cpu_recipe.sh [DATA]   (default data/fer2013)
set -euo pipefail
DATA=${1:-data/fer2013}
ROOT=runs/cpu_recipe
python -m fer.train --model cnn --data "$DATA" --default-root-dir "$ROOT" \
    --max-epochs 90 --batch-size 128 --lr 0.1 --augment strong --label-smoothing 0.1 \
    --seed 42 --json "$ROOT/summary.json"
CKPT=$(python -c "import json; print(json.load(open('$ROOT/summary.json'))['best_checkpoint'])")
python -m fer.evaluate --ckpt "$CKPT" --data "$DATA" --split val --out "$ROOT/eval"
python -m fer.evaluate --ckpt "$CKPT" --data "$DATA" --split val --tta flip --out "$ROOT/eval-flip"
python -m fer.export --ckpt "$CKPT" --out checkpoints \
    --metrics "$ROOT/eval/metrics.json" "$ROOT/eval-flip/metrics.json"
