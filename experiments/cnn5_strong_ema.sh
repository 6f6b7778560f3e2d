#!/usr/bin/env bash
# As cnn5_strong.sh (five-stage custom CNN, widths 32-64-128-256-512, 4.7M parameters, `strong`
# batched augmentation, 70 epochs, SGD one-cycle peaking at 0.1, label smoothing 0.1, seed 42),
# plus an exponential moving average of the weights (decay 0.999, about 4.5 epochs of steps):
# validation, checkpoint selection and the exported weights all use the average. Selected on
# PublicTest (the validation split) only. On a 2-core CPU with bf16, 109 minutes of fitting in the
# session that first ran it and 64 minutes re-run alone (four to seven times as long in fp32 on a CPU
# without bf16). Evaluates the best checkpoint plain and with flip TTA, then ships
# it (to $OUT, default runs/cnn5_strong_ema/export; OUT=checkpoints would make it the shipped
# model, as it was before the ensemble): float16 weights, with the exported files' own PublicTest
# figures in model.json. It is the first member of the shipped ensemble: experiments/ensemble.sh
# runs this script with OUT=runs/cnn5_strong_ema/export. A run cut short continues where it stopped
# (--ckpt-path last); a finished one is not trained again.
# Usage: bash experiments/cnn5_strong_ema.sh [DATA]   (default data/fer2013)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/train_once.sh"
DATA=${1:-data/fer2013}
ROOT=runs/cnn5_strong_ema
train_once "$ROOT" --model cnn --widths 32 64 128 256 512 --crop 0 --data "$DATA" \
    --max-epochs 70 --batch-size 128 --lr 0.1 --augment strong --label-smoothing 0.1 --ema 0.999 \
    --seed 42
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
bash experiments/ship.sh "${OUT:-$ROOT/export}" "$ROOT" "$DATA" --ckpt "$ROOT" --half
