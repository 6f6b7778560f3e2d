#!/usr/bin/env bash
# Knowledge distillation, measured and not shipped: a small CNN (widths 32-64-128-160, seed 21,
# 28 epochs, `light` augmentation) learns both the labels and the class probabilities of the
# three-network ensemble shipped before (fer.train --teacher, --distill-alpha 0.7,
# --distill-temperature 2). The teacher is that ensemble, exported again from its members
# (experiments/ensemble.sh makes them) into runs/teacher3. About 17 minutes on a 2-core CPU with
# bf16, plus 1.5 minutes for the teacher to score the 28,709 training faces (cached after).
# Usage: bash experiments/distill_student.sh [DATA]   (default data/fer2013)
set -euo pipefail
DATA=${1:-data/fer2013}
ROOT=runs/student_w160
best() { python -c "import json, sys; print(json.load(open(sys.argv[1]))['best_checkpoint'])" "$1/summary.json"; }
[ -f runs/teacher3/model.json ] || python -m fer.export --ckpt runs/cnn5_strong_ema/export \
    "$(best runs/member_w160)" "$(best runs/member_w192)" --flip --half --out runs/teacher3
if [ ! -f "$ROOT/summary.json" ]; then
    resume=()
    compgen -G "$ROOT/lightning_logs/version_*/checkpoints/last.ckpt" > /dev/null && resume=(--ckpt-path last)
    python -m fer.train --model cnn --data "$DATA" --default-root-dir "$ROOT" --max-epochs 28 \
        --batch-size 128 --lr 0.1 --augment light --label-smoothing 0.1 --no-test \
        --widths 32 64 128 160 --seed 21 --teacher runs/teacher3 --json "$ROOT/summary.json" "${resume[@]}"
fi
bash experiments/evaluate_best.sh "$ROOT" "$DATA"
