#!/usr/bin/env bash
# Custom-CNN baseline: fer.train's default CNN (1.2M parameters, widths 32-64-128-256), bf16 on
# CPU, 60 epochs of the "light" batched augmentation (flip, rotation, scale, shift), SGD
# one-cycle, label smoothing 0.1, seed 42. Selected on PublicTest (the validation split).
# Usage: bash experiments/cnn_baseline.sh [DATA]   (default data/fer2013)
set -euo pipefail
DATA=${1:-data/fer2013}
ROOT=runs/cnn_baseline
python -m fer.train --model cnn --data "$DATA" --default-root-dir "$ROOT" \
    --max-epochs 60 --batch-size 128 --lr 0.1 --augment light --label-smoothing 0.1 \
    --seed 42 --json "$ROOT/summary.json"
CKPT=$(python -c "import json; print(json.load(open('$ROOT/summary.json'))['best_checkpoint'])")
python -m fer.evaluate --ckpt "$CKPT" --data "$DATA" --split val --out "$ROOT/eval"
python -m fer.evaluate --ckpt "$CKPT" --data "$DATA" --split val --tta flip --out "$ROOT/eval-flip"
