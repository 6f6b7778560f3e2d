#!/usr/bin/env bash
# The first shipped model, until cnn5_strong.sh replaced it: the custom CNN that was fer.train's
# default then (1.2M parameters, widths 32-64-128-256, whole faces), bf16 on CPU, 60 epochs of the "light" batched augmentation
# (flip, rotation, scale, shift), SGD one-cycle peaking at 0.1, label smoothing 0.1, seed 42.
# Selected on PublicTest (the validation split) only. 99 minutes of fitting on a 2-core CPU with
# bf16 (docs/results/cnn_baseline.json). Evaluates the best checkpoint plain and with flip TTA; `bash experiments/ship.sh checkpoints
# runs/cnn_baseline DATA --ckpt runs/cnn_baseline` would make it the shipped model again.
# A run cut short continues where it stopped (--ckpt-path last); a finished one is not trained again.
# Usage: bash experiments/cnn_baseline.sh [DATA]   (default data/fer2013)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/train_once.sh"
DATA=${1:-data/fer2013}
ROOT=runs/cnn_baseline
train_once "$ROOT" --model cnn --widths 32 64 128 256 --crop 0 --data "$DATA" \
    --max-epochs 60 --batch-size 128 --lr 0.1 --augment light --label-smoothing 0.1 --seed 42
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
