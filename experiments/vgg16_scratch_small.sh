#!/usr/bin/env bash
# VGG16 from scratch (no ImageNet weights: none can be downloaded on the CPU machine), at a small
# scale, to show the VGG pipeline learns: 3 epochs of 60 batches of 64 faces at 48 px, AdamW.
# This is a smoke-scale result, not a tuned one. Usage: bash experiments/vgg16_scratch_small.sh [DATA]
set -euo pipefail
DATA=${1:-data/fer2013}
python -m fer.train --model vgg --no-pretrained --data "$DATA" --default-root-dir runs/vgg16_scratch_small \
    --image-size 48 --freeze-epochs 0 --max-epochs 3 --limit-train-batches 60 --batch-size 64 \
    --optimizer adamw --lr 3e-4 --weight-decay 0.05 --scheduler cosine --augment light --seed 42 \
    --json runs/vgg16_scratch_small/summary.json
