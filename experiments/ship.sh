#!/usr/bin/env bash
# Ship a model: export it to OUT (fer.export with the given arguments, e.g. --ckpt A.ckpt --half,
# or several --ckpt for an ensemble), score the exported files themselves on PublicTest, the
# validation split (plain, with flip TTA, and plain without the PublicTest faces that have an exact
# copy in training, from fer.analyze's leaked.txt), as fer.predict runs them (onnxruntime), and plain
# with the PyTorch backend (the float weights, where --int8 made the ONNX graph 8-bit), into
# WORK/shipped-*, and export again with those figures recorded in OUT/model.json.
# Usage: bash experiments/ship.sh OUT WORK DATA EXPORT_ARGS...
set -euo pipefail
OUT=$1
WORK=$2
DATA=$3
shift 3
python -m fer.export "$@" --out "$OUT"
python -m fer.analyze --data "$DATA" --out "$WORK/analysis" > /dev/null
python -m fer.evaluate --ckpt "$OUT" --data "$DATA" --split val --out "$WORK/shipped-none"
python -m fer.evaluate --ckpt "$OUT" --data "$DATA" --split val --tta flip --out "$WORK/shipped-flip"
python -m fer.evaluate --ckpt "$OUT" --data "$DATA" --split val --skip "$WORK/analysis/leaked.txt" \
    --out "$WORK/shipped-unleaked"
python -m fer.evaluate --ckpt "$OUT" --data "$DATA" --split val --backend torch --out "$WORK/shipped-torch"
python -m fer.export "$@" --out "$OUT" --metrics "$WORK/shipped-none/metrics.json" \
    "$WORK/shipped-flip/metrics.json" "$WORK/shipped-unleaked/metrics.json" \
    "$WORK/shipped-torch/metrics.json"
