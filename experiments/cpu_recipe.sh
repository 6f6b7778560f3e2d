#!/usr/bin/env bash
# The shipped CPU model: fer.train's default custom CNN (1.2M parameters, widths 32-64-128-256),
# bf16 on CPU, batched flip + affine augmentation, SGD one-cycle, label smoothing 0.1.
# Selected on PublicTest (the validation split). Then exports the best checkpoint to checkpoints/.
# Usage: bash experiments/cpu_recipe.sh [DATA]   (default data/fer2013)
set -euo pipefail
DATA=${1:-data/fer2013}
ROOT=runs/cpu_recipe
python -m fer.train --model cnn --data "$DATA" --default-root-dir "$ROOT" \
    --max-epochs 60 --batch-size 128 --lr 0.1 --augment light --label-smoothing 0.1 \
    --seed 42 --json "$ROOT/summary.json"
CKPT=$(python -c "import json; print(json.load(open('$ROOT/summary.json'))['best_checkpoint'])")
python -m fer.export --ckpt "$CKPT" --out checkpoints
python -m fer.evaluate --ckpt checkpoints --data "$DATA" --split val --out "$ROOT/eval"
python -m fer.evaluate --ckpt checkpoints --data "$DATA" --split val --tta flip --out "$ROOT/eval-flip"
