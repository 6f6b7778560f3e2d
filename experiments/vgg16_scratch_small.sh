#!/usr/bin/env bash
# VGG16 from scratch (no ImageNet weights: none can be downloaded on the CPU machine), at a small
# scale, to show the VGG pipeline learns: 6 epochs of 300 batches of 64 faces (1,800 steps,
# 115,200 faces drawn: about 4 passes over Training) at 48 px, AdamW at 1e-4 with cosine decay. VGG16 has no
# batch normalisation and spends its first few hundred steps on the class prior before it learns.
# This is a smoke-scale result, not a tuned one. A run cut short continues where it stopped
# (--ckpt-path last); a finished one is not trained again.
# Usage: bash experiments/vgg16_scratch_small.sh [DATA]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/train_once.sh"
DATA=${1:-data/fer2013}
ROOT=runs/vgg16_scratch_small
train_once "$ROOT" --model vgg --no-pretrained --data "$DATA" \
    --image-size 48 --freeze-epochs 0 --max-epochs 6 --limit-train-batches 300 --batch-size 64 \
    --optimizer adamw --lr 1e-4 --weight-decay 1e-4 --scheduler cosine --warmup-epochs 0 \
    --augment light --seed 42
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
