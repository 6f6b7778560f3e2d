#!/usr/bin/env bash
# Knowledge distillation, measured and not shipped: a small CNN (widths 32-64-128-160, `light`
# augmentation) learns both the labels and the class probabilities of a teacher (fer.train
# --teacher, --distill-alpha 0.7, --distill-temperature 2).
#   default: the teacher is the three-network ensemble shipped before, exported again from its
#     members (experiments/ensemble.sh makes them) into runs/teacher3; seed 21, 28 epochs, about
#     17 minutes on a 2-core CPU with bf16, plus 1.5 minutes for the teacher to score the 28,709
#     training faces (cached after). Into runs/student_w160.
#   `ens4`: the teacher is the four-network ensemble shipped until 2026-12-02 (before its
#     fine-tuning for photos and before member 2 was left out), taken from git (commit 5ff26c9,
#     so a clone with its history) into runs/ensemble_5ff26c9; seed 23, 30 epochs, about
#     17 minutes. Into runs/student_ens4.
# A run cut short continues where it stopped (--ckpt-path last); a finished one is not trained
# again.
# Usage: bash experiments/distill_student.sh [DATA] [ens4]   (default data/fer2013)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/train_once.sh"
DATA=${1:-data/fer2013}
case ${2:-} in
    ens4)
        ROOT=runs/student_ens4 TEACHER=runs/ensemble_5ff26c9 OPTIONS=(--seed 23 --max-epochs 30)
        from_git 5ff26c9 "$TEACHER"
        ;;
    "")
        ROOT=runs/student_w160 TEACHER=runs/teacher3 OPTIONS=(--seed 21 --max-epochs 28)
        [ -f runs/teacher3/model.json ] || python -m fer.export --ckpt runs/cnn5_strong_ema/export \
            runs/member_w160 runs/member_w192 --flip --half --out runs/teacher3
        ;;
    *)
        echo "error: unknown mode ${2}: give none or ens4 (the teacher shipped until 2026-12-02)" >&2
        exit 2
        ;;
esac
train_once "$ROOT" --model cnn --data "$DATA" --batch-size 128 --lr 0.1 --augment light \
    --label-smoothing 0.1 --widths 32 64 128 160 --crop 0 --teacher "$TEACHER" "${OPTIONS[@]}"
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
