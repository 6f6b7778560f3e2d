#!/usr/bin/env bash
# Custom CNN with the "strong" batched augmentation (flip, rotation, scale, shift,
# brightness/contrast, random erasing) for 90 epochs; otherwise as cnn_baseline.sh (1.2M
# parameters, bf16 on CPU, SGD one-cycle peaking at 0.1, label smoothing 0.1, seed 42).
# Selected on PublicTest (the validation split) only. About 100 minutes on a 2-core CPU with bf16.
# Result (docs/results.md): no better than the 60-epoch light baseline; the network underfits
# the stronger augmentation in this budget (final train accuracy 0.76).
# A run cut short continues where it stopped (--ckpt-path last); a finished one is not trained again.
# Usage: bash experiments/cnn_strong90.sh [DATA]   (default data/fer2013)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/train_once.sh"
DATA=${1:-data/fer2013}
ROOT=runs/cnn_strong90
train_once "$ROOT" --model cnn --widths 32 64 128 256 --crop 0 --data "$DATA" \
    --max-epochs 90 --batch-size 128 --lr 0.1 --augment strong --label-smoothing 0.1 --seed 42
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
