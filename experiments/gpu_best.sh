#!/usr/bin/env bash
# The strongest single-model recipe we would run on a GPU (aim: >= 74% on PublicTest with ten-crop TTA):
# a wider VGG-style CNN (64-128-256-512, three convs per stage), strong batched augmentation
# (affine + erasing + jitter), SGD with cosine decay, label smoothing, 250 epochs.
# NOT YET RUN: it needs a GPU (about 250 epochs); its figures will be added when it has run.
# Evaluates the best checkpoint plain, with flip TTA and with ten-crop TTA, and plain without the
# leaked PublicTest faces (experiments/evaluate_best.sh): the plain and flip figures are its
# results row's, ten-crop is the aim's. A run cut short continues where it stopped
# (--ckpt-path last); a finished one is not trained again.
# Usage: bash experiments/gpu_best.sh [DATA]   (default data/fer2013)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/train_once.sh"
DATA=${1:-data/fer2013}
ROOT=runs/gpu_best
train_once "$ROOT" --model cnn --data "$DATA" \
    --widths 64 128 256 512 --crop 0 --depth 3 --dropout 0.4 --max-epochs 250 --batch-size 128 \
    --optimizer sgd --lr 0.05 --scheduler cosine --warmup-epochs 5 --augment strong --label-smoothing 0.1 \
    --accelerator gpu --devices 1 --seed 42
bash experiments/evaluate_best.sh "$ROOT" "$DATA" none flip tencrop
