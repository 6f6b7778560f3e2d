#!/usr/bin/env bash
# VGG16 transfer learning for a GPU machine with internet access (ImageNet weights are downloaded
# once into the torch hub cache; offline, add --weights vgg16.pth). Head trained alone for 3 epochs,
# then the whole network at 1/10 of the head's learning rate; faces upscaled to 96 px.
# NOT YET RUN: no GPU and no download were available where this project was developed.
set -euo pipefail
DATA=${1:-data/fer2013}
python -m fer.train --model vgg --data "$DATA" --no-test --default-root-dir runs/vgg16_transfer \
    --image-size 96 --freeze-epochs 3 --backbone-lr-ratio 0.1 --max-epochs 40 --batch-size 64 \
    --optimizer sgd --lr 0.01 --scheduler cosine --augment strong --label-smoothing 0.1 \
    --accelerator gpu --devices 1 --precision 16-mixed --seed 42 --json runs/vgg16_transfer/summary.json
