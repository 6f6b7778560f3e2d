#!/usr/bin/env bash
# VGG16 transfer learning for a GPU machine with internet access (ImageNet weights are downloaded
# once into the torch hub cache; offline, add --weights vgg16.pth). Head trained alone for 3 epochs,
# then the whole network at 1/10 of the head's learning rate; faces upscaled to 96 px.
# NOT YET RUN: no GPU and no download were available where this project was developed.
# Evaluates the best checkpoint plain and with flip TTA, and plain without the leaked PublicTest
# faces (experiments/evaluate_best.sh), the figures of its results row. A run cut short continues
# where it stopped (--ckpt-path last); a finished one is not trained again.
# Usage: bash experiments/vgg16_transfer.sh [DATA]   (default data/fer2013)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/train_once.sh"
DATA=${1:-data/fer2013}
ROOT=runs/vgg16_transfer
train_once "$ROOT" --model vgg --data "$DATA" \
    --image-size 96 --freeze-epochs 3 --backbone-lr-ratio 0.1 --max-epochs 40 --batch-size 64 \
    --optimizer sgd --lr 0.01 --scheduler cosine --augment strong --label-smoothing 0.1 \
    --accelerator gpu --devices 1 --precision 16-mixed --seed 42
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
