#!/usr/bin/env bash
# The strongest single-model recipe we would run on a GPU (aim: >= 74% on PublicTest with ten-crop TTA):
# a wider VGG-style CNN (64-128-256-512, three convs per stage), strong batched augmentation
# (affine + erasing + jitter), SGD with cosine decay, label smoothing, 250 epochs.
# NOT YET RUN: it needs a GPU (about 250 epochs); its figures will be added when it has run.
set -euo pipefail
DATA=${1:-data/fer2013}
ROOT=runs/gpu_best
python -m fer.train --model cnn --data "$DATA" --no-test --default-root-dir "$ROOT" \
    --widths 64 128 256 512 --crop 0 --depth 3 --dropout 0.4 --max-epochs 250 --batch-size 128 \
    --optimizer sgd --lr 0.05 --scheduler cosine --warmup-epochs 5 --augment strong --label-smoothing 0.1 \
    --accelerator gpu --devices 1 --seed 42 --json "$ROOT/summary.json"
bash experiments/evaluate_best.sh "$ROOT" "$DATA" tencrop
