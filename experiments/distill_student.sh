#!/usr/bin/env bash
# Knowledge distillation, measured and not shipped: a small CNN (widths 32-64-128-160, `light`
# augmentation) learns both the labels and the class probabilities of a teacher (fer.train
# --teacher, --distill-alpha 0.7, --distill-temperature 2).
#   default: the teacher is the three-network ensemble shipped before, exported again from its
#     members (experiments/ensemble.sh makes them) into runs/teacher3; seed 21, 28 epochs, about
#     17 minutes on a 2-core CPU with bf16, plus 1.5 minutes for the teacher to score the 28,709
#     training faces (cached after). Into runs/student_w160.
#   `shipped`: the teacher is the shipped ensemble (checkpoints/; the figures below were measured
#   with the four-network one shipped until 2026-12-02, before its fine-tuning for photos and before
#   member 2 was left out); seed 23, 30 epochs,
#     about 17 minutes. Into runs/student_ens4.
# Usage: bash experiments/distill_student.sh [DATA] [shipped]   (default data/fer2013)
set -euo pipefail
DATA=${1:-data/fer2013}
if [ "${2:-}" = shipped ]; then
    ROOT=runs/student_ens4 TEACHER=checkpoints OPTIONS=(--seed 23 --max-epochs 30)
else
    ROOT=runs/student_w160 TEACHER=runs/teacher3 OPTIONS=(--seed 21 --max-epochs 28)
    [ -f runs/teacher3/model.json ] || python -m fer.export --ckpt runs/cnn5_strong_ema/export \
        runs/member_w160 runs/member_w192 --flip --half --out runs/teacher3
fi
if [ ! -f "$ROOT/summary.json" ]; then
    resume=()
    compgen -G "$ROOT/lightning_logs/version_*/checkpoints/last.ckpt" > /dev/null && resume=(--ckpt-path last)
    python -m fer.train --model cnn --data "$DATA" --default-root-dir "$ROOT" \
        --batch-size 128 --lr 0.1 --augment light --label-smoothing 0.1 --no-test \
        --widths 32 64 128 160 --crop 0 --teacher "$TEACHER" --json "$ROOT/summary.json" "${OPTIONS[@]}" "${resume[@]}"
fi
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
