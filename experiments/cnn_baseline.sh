#!/usr/bin/env bash
# The shipped model: fer.train's default custom CNN (1.2M parameters, widths 32-64-128-256), bf16
# on CPU, 60 epochs of the "light" batched augmentation (flip, rotation, scale, shift), SGD
# one-cycle peaking at 0.1, label smoothing 0.1, seed 42. Selected on PublicTest (the validation
# split) only. About 70 minutes alone on a 2-core CPU. Evaluates the best checkpoint plain and
# with flip TTA, then exports it with those metrics to checkpoints/ (replacing the shipped model).
# Usage: bash experiments/cnn_baseline.sh [DATA]   (default data/fer2013)
set -euo pipefail
DATA=${1:-data/fer2013}
ROOT=runs/cnn_baseline
python -m fer.train --model cnn --data "$DATA" --default-root-dir "$ROOT" \
    --max-epochs 60 --batch-size 128 --lr 0.1 --augment light --label-smoothing 0.1 \
    --seed 42 --json "$ROOT/summary.json"
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
CKPT=$(python -c "import json; print(json.load(open('$ROOT/summary.json'))['best_checkpoint'])")
python -m fer.export --ckpt "$CKPT" --out checkpoints \
    --metrics "$ROOT/eval/metrics.json" "$ROOT/eval-flip/metrics.json"
