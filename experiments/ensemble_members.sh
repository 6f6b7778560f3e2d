#!/usr/bin/env bash
# The two new members of the shipped ensemble (see experiments/ensemble.sh): small custom CNNs of
# different shapes and seeds, `light` augmentation, 45 epochs each, SGD one-cycle peaking at 0.1,
# label smoothing 0.1. Each is small enough (0.70 M and 0.66 M parameters) that the whole ensemble,
# the shipped five-stage network included, stays under 25 MB of model files. About 25 minutes each
# on a 2-core CPU with bf16 (about 4x that in fp32). A member whose run was cut short continues
# where it stopped with --ckpt-path last; a finished one is skipped.
# Usage: bash experiments/ensemble_members.sh [DATA]   (default data/fer2013)
set -euo pipefail
DATA=${1:-data/fer2013}
train_member() {  # ROOT, then the member's own options
    local root=$1
    shift
    [ -f "$root/summary.json" ] && return 0
    local resume=()
    compgen -G "$root/lightning_logs/version_*/checkpoints/last.ckpt" > /dev/null && resume=(--ckpt-path last)
    python -m fer.train --model cnn --data "$DATA" --default-root-dir "$root" --max-epochs 45 \
        --batch-size 128 --lr 0.1 --augment light --label-smoothing 0.1 --no-test \
        --json "$root/summary.json" "$@" "${resume[@]}"
}
train_member runs/member_w160 --widths 32 64 128 160 --seed 7
train_member runs/member_w192 --widths 24 48 96 192 --seed 11
