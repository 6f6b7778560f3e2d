"""Export a checkpoint for inference: `python -m fer.export --ckpt PATH --out DIR`.

Writes DIR/model.safetensors (weights), DIR/model.json (architecture, class names,
preprocessing, metrics, provenance) and DIR/model.onnx (the graph, whose weights are read from
model.safetensors); none of them needs unpickling to load. model.json records the SHA-256 of model.onnx, which
loading checks. The files are made in a hidden folder inside DIR and take the place of an earlier
export's only once all are complete (model.json last; with --no-onnx, an earlier model.onnx is
removed), so an export that fails or is stopped leaves DIR as it was, and one can be exported
into its own folder. With --half the weights are stored in float16 (half the size) and the
network still computes in float32: loading casts them back.
With --int8 DATA, model.onnx is instead a graph with 8-bit weights and activations of its own
(onnxruntime static quantization, calibrated on training faces of DATA), about three times faster
on a CPU with AVX-512 and 1.8 times on an AVX2-only one (docs/performance.md); the PyTorch
backend still runs the float weights of model.safetensors.
With --flip, the model averages every face with its mirror image; its ONNX graph sees one view a
row, and fer.inference.Classifier gives it both (model.json records `onnx_single_view`).
An ensemble also gets a graph of each member, model.part0.onnx, model.part1.onnx, ... (float
ones read their weights from model.safetensors too; int8 ones are quantized as in model.onnx,
whose answer is their average, and read their weights from the bytes model.onnx holds them in;
model.json records them in `onnx_parts`), so that video can run one member a frame
(fer.recognizer.EmotionTracker).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fer.common import (
    FerError,
    OutputSet,
    Parser,
    Terminated,
    add_debug_flag,
    atomic_path,
    counted,
    file_sha256,
    real_path,
    run_cli,
    write_text,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m fer.export", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--ckpt",
        required=True,
        nargs="+",
        help="Lightning checkpoint from fer.train, a training run's folder (its best checkpoint), "
        "or an exported model; several make one ensemble that averages their probabilities",
    )
    p.add_argument(
        "--flip",
        action="store_true",
        help="average every face with its mirror image, as part of the exported model (the ONNX "
        "graph sees each view as a row of its batch, so video can run one view a frame)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder to write model.safetensors, model.json, model.onnx (and, for an ensemble, "
        "a graph of each member: model.part0.onnx, ...) into",
    )
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX file")
    p.add_argument(
        "--half",
        action="store_true",
        help="store the weights as float16 (half the size; the model still computes in float32)",
    )
    p.add_argument(
        "--int8",
        metavar="DATA",
        help="make model.onnx (and an ensemble's member graphs) int8 graphs calibrated on "
        "training faces of DATA (FER-2013 CSV or folder): about 3x faster on a CPU with "
        "AVX-512, 1.8x with AVX2 only, within a few faces of the float model's accuracy",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="JSON",
        help="metrics.json files from fer.evaluate of the model this export makes (of --out's "
        "export, or of the one --ckpt exported without a --flip it lacks; e.g. plain and flip "
        "TTA), to record in model.json",
    )
    add_debug_flag(p)
    return p


#: Training faces the int8 graph's activation ranges are calibrated on (a seeded random sample).
CALIBRATION_FACES = 512


def _torch_to_onnx(model, path: Path, fold: bool) -> None:
    """The model as ONNX with a dynamic batch axis: input 'faces' (B, 1, 48, 48), output 'logits'."""
    import torch

    with warnings.catch_warnings():  # the tracer's advice on code paths fer's models do not take
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.float().eval(),
            (torch.zeros(2, 1, 48, 48),),
            str(path),
            input_names=["faces"],
            output_names=["logits"],
            dynamic_axes={"faces": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
            do_constant_folding=fold,
        )


def export_onnx(model, path: Path, weights: Path, prefix: str = "") -> None:
    """The model as ONNX whose graph holds no copy of the weights: its tensors point into
    `weights`, the safetensors file beside it (ONNX external data), so the model's files store
    every weight once (the model's weight NAME is `prefix`NAME there)."""
    with atomic_path(path) as tmp:
        # Unfolded, each weight is a tensor of the state dict, which the safetensors file holds;
        # onnxruntime fuses BatchNorm into the convolutions when it loads the graph.
        _torch_to_onnx(model, tmp, fold=False)
        _point_weights_at(tmp, weights, prefix)


def export_parts(
    ensemble, out: Path, write: Callable[[Any, Path, int], None]
) -> list[dict[str, str]]:
    """A graph for each member of `ensemble`, model.partI.onnx in `out`, written by
    `write(member, path, I)` as model.onnx is: [{"file", "sha256"}] in member order."""
    parts = []
    for i, member in enumerate(ensemble.members):
        path = out / f"model.part{i}.onnx"
        write(member, path, i)
        parts.append({"file": path.name, "sha256": file_sha256(path)})
    return parts


def calibration_faces(data: str) -> np.ndarray:
    """CALIBRATION_FACES training faces of `data`, preprocessed as the model sees them (seeded)."""
    import torch

    from fer.common import preprocess
    from fer.data import HOW_TO_GET, load_fer, split_indices

    try:
        fer_data = load_fer(data)
    except FerError as e:  # its advice is about --data, which fer.export does not have
        raise FerError(
            f"--int8 {data}: {str(e).replace(f'; {HOW_TO_GET}', '')}; pass --int8 a "
            "fer2013.csv or a msambare/fer2013 folder"
        ) from None
    train = split_indices(fer_data)[0]["train"]
    if len(train) == 0:
        raise FerError(f"{data} has no training faces to calibrate the int8 model on")
    if len(train) < CALIBRATION_FACES:
        print(
            f"warning: --int8 {data} has {counted(len(train), 'training face')} to calibrate on, "
            f"under the {CALIBRATION_FACES} it takes: the int8 ranges may cut off what other "
            "faces reach; check the export's accuracy",
            file=sys.stderr,
        )
    pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))]
    return preprocess(fer_data.images[pick[:CALIBRATION_FACES]]).numpy()


#: The operators an int8 graph computes in 8 bits: the network up to its logits. An ensemble's
#: softmax and average stay float, so its graph computes exactly the mean of its members' int8
#: graphs (which video runs one at a time), and probabilities are not rounded to 1/256.
INT8_OPS = ["Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"]


def export_int8_onnx(model, path: Path, faces: np.ndarray) -> None:
    """The model as an int8 ONNX graph with its own weights: onnxruntime's static quantization
    (QDQ format, int8 weights per output channel in 7 bits, uint8 activations whose ranges are
    the min-max of `faces`, preprocessed calibration faces) of INT8_OPS, after its pre-processing
    (BatchNorm folded into the convolutions)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"faces": faces[i : i + 64]} for i in range(0, len(faces), 64)])

        def get_next(self):
            return next(self.batches, None)

    quiet = logging.getLogger().level  # the quantizer logs advice for other models' graphs
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmpdir, atomic_path(path) as tmp:
            float_graph, prepared = Path(tmpdir) / "float.onnx", Path(tmpdir) / "prepared.onnx"
            _torch_to_onnx(model, float_graph, fold=True)
            quant_pre_process(str(float_graph), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(tmp),
                Batches(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=INT8_OPS,
                per_channel=True,
                # 7-bit weights: on CPUs without VNNI (AVX2), onnxruntime multiplies uint8 by
                # int8 with VPMADDUBSW, whose int16 sums saturate with 8-bit weights
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        logging.getLogger().setLevel(quiet)


#: safetensors dtype names -> ONNX tensor types, for the weights ONNX can read in place
_ONNX_TYPES = {"F32": 1, "F16": 10}  # TensorProto.FLOAT, TensorProto.FLOAT16


def safetensors_layout(path: Path) -> dict[str, tuple[str, list[int], int, int]]:
    """name -> (dtype, shape, first byte, byte after the last) of each tensor in a safetensors file,
    from its header (8 bytes of little-endian length, then JSON with offsets after the header)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    start = 8 + n
    return {
        k: (v["dtype"], v["shape"], start + v["data_offsets"][0], start + v["data_offsets"][1])
        for k, v in header.items()
        if k != "__metadata__"
    }


def _point_weights_at(path: Path, weights: Path, prefix: str = "") -> None:
    """Replace each float32 initializer of the ONNX file at `path` that `weights` holds (same shape,
    its name there prefixed with `prefix`) by a reference to its bytes there; float16 weights are
    read as such and followed by a Cast to float32, so the graph still computes in float32
    (onnxruntime folds the casts when it loads the file)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)
    layout = safetensors_layout(weights)
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        dtype, shape, first, end = layout.get(prefix + init.name, ("", [], 0, 0))
        if init.data_type != TensorProto.FLOAT or dtype not in _ONNX_TYPES:
            continue
        if list(init.dims) != shape:
            raise FerError(f"{weights} holds {init.name} with shape {shape}, not {list(init.dims)}")
        half = dtype == "F16"
        stored = TensorProto(
            name=init.name + "_fp16" if half else init.name,
            data_type=_ONNX_TYPES[dtype],
            dims=shape,
            data_location=TensorProto.EXTERNAL,
        )
        for key, value in (("location", weights.name), ("offset", first), ("length", end - first)):
            stored.external_data.add(key=key, value=str(value))
        graph.initializer.remove(init)
        graph.initializer.append(stored)
        if half:
            casts.append(helper.make_node("Cast", [stored.name], [init.name], to=TensorProto.FLOAT))
    for i, node in enumerate(casts):  # before every node that reads them: topological order
        graph.node.insert(i, node)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))


def _share_weights_with(path: Path, whole: Path, smallest: int = 64) -> None:
    """Replace each initializer of the ONNX file at `path` (of at least `smallest` bytes) whose
    bytes the file `whole` holds as they are by a reference to them there (ONNX external data): an
    int8 ensemble's member graphs read their quantized weights from its model.onnx, where they are
    the same bytes, rather than storing a second copy."""
    import onnx
    from onnx import TensorProto, numpy_helper

    held = whole.read_bytes()
    model = onnx.load(str(path))
    graph = model.graph
    for init in list(graph.initializer):
        raw = numpy_helper.to_array(init).tobytes()
        offset = held.find(raw) if len(raw) >= smallest else -1
        if offset < 0:
            continue
        stored = TensorProto(
            name=init.name,
            data_type=init.data_type,
            dims=init.dims,
            data_location=TensorProto.EXTERNAL,
        )
        for key, value in (("location", whole.name), ("offset", offset), ("length", len(raw))):
            stored.external_data.add(key=key, value=str(value))
        graph.initializer.remove(init)
        graph.initializer.append(stored)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))


#: What a model.json says of its own files, never of a model exported from it.
_OF_THE_FILES = (
    "export_command",
    "stored_dtype",
    "weights_sha256",
    "safetensors_sha256",
    "onnx_sha256",
    "onnx_int8",
    "onnx_single_view",
    "onnx_parts",
)


def provenance(spec, measured: bool = True) -> dict:
    """Where a model came from, as reading it recorded: its checkpoint, epochs and training options
    (fer.inference.read_checkpoint), or what the model.json of an export already said; with
    measured=False, without that export's metrics, which were measured on its own files (a
    re-export with --int8, --half or --no-onnx computes otherwise, or on another backend)."""
    drop = _OF_THE_FILES + (() if measured else ("metrics",))
    return {k: v for k, v in spec.extra.items() if k not in drop}


def read_members(paths: list[Path], flip: bool):
    """(spec, state, alone) of the model to export from the models at `paths`: the one model, or an
    ensemble that averages them (with `flip`, and their mirror images); `alone` when it computes
    what its one source does (no other network, no mirror the source did not average already).
    Members must share their classes and preprocessing. A member that is itself a mirroring
    ensemble stops mirroring inside a mirroring one: its answer averaged over a face and its mirror
    is the same, in half the work."""
    from fer.inference import ModelSpec, read_weights

    read = [read_weights(p) for p in paths]
    for spec, _, source in read:
        spec.check(str(source))
    mirrors = [s.arch == "ensemble" and bool(s.options.get("flip")) for s, _, _ in read]
    alone = len(read) == 1 and (not flip or mirrors[0])
    if len(read) == 1 and not flip:
        spec, state, _ = read[0]
        spec.extra = provenance(spec, measured=False)  # its metrics: only those of --metrics
        return spec, state, alone
    members = [{"arch": s.arch, "options": dict(s.options)} for s, _, _ in read]
    for member in members:
        if flip and member["arch"] == "ensemble":
            member["options"]["flip"] = False
    spec = ModelSpec("ensemble", {"members": members, "flip": flip})
    spec.extra = {
        "members": [{"source": str(p), **provenance(s)} for p, (s, _, _) in zip(paths, read)]
    }
    state = {f"members.{i}.{k}": v for i, (_, st, _) in enumerate(read) for k, v in st.items()}
    return spec, state, alone


def _of(where: Path, models: set[Path]) -> bool:
    """Whether a model fer.evaluate scored (a checkpoint, an export's folder or one of its model
    files) is one of `models`."""
    return where in models or (where.name.startswith("model.") and where.parent in models)


def read_metrics(
    files: list[str],
    default_backend: str,
    models: Sequence[Path] = (),
    parts: Sequence[Path] = (),
    out: Path | None = None,
) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """The figures of fer.evaluate's metrics.json files, named by split, TTA and, where it is not
    the one the export runs by default, backend; and (file, the model_key it records) for each
    that scored the export in `out` (which check_scored compares with the export made). Two files
    of one name are refused, and so is a file that says it measured one of `parts`, models the
    export reads but does not compute
    alone (an ensemble's members, a network its --flip export averages with its mirror); one that
    says it measured a model other than `models` (what the export computes: the folder written,
    and its one source exported as it computes) and `parts` is recorded with a warning."""
    metrics: dict[str, dict] = {}
    scored_out: list[tuple[str, str]] = []
    named: dict[str, str] = {}  # name -> the file that gave it
    known, read = {real_path(p) for p in models}, {real_path(p) for p in parts}
    for f in files:
        try:
            m = json.loads(Path(f).read_text())
        except (OSError, ValueError) as e:
            raise FerError(f"cannot read metrics file {f}: {e}") from e
        if not isinstance(m, dict) or not isinstance(m.get("accuracy"), (int, float)):
            raise FerError(f"{f} is not a metrics.json of fer.evaluate (it holds no accuracy)")
        keys = ("accuracy", "macro_f1", "samples", "split", "data", "skipped_list")
        summary = {k: m[k] for k in keys if m.get(k) is not None}
        name = f"{m.get('split', 'eval')}_tta_{m.get('tta', 'none')}"
        name += "_skip" if m.get("skipped_list") else ""
        other = m.get("backend", default_backend)
        name += "" if other == default_backend else f"_{other}"
        if name in named:
            raise FerError(
                f"{named[name]} and {f} both hold figures of {m.get('split', 'eval')} with TTA "
                f"{m.get('tta', 'none')} on {other}: pass one of them"
            )
        named[name], metrics[name] = f, summary
        measured = m.get("model")
        if isinstance(measured, str) and measured:
            where = real_path(measured)
            if _of(where, read):
                raise FerError(
                    f"{f} scored {measured}, which this export averages with other networks or "
                    "with its mirror image: not the model this export makes; export it, score "
                    "the export (python -m fer.evaluate --ckpt OUT) and export again with --metrics "
                    "of that"
                )
            if not _of(where, known):
                print(
                    f"warning: {f} was measured on {measured}, not on a model this export reads "
                    "or writes; its figures are recorded as this model's",
                    file=sys.stderr,
                )
            elif out is not None and _of(where, {real_path(out)}) and m.get("model_key"):
                scored_out.append((f, m["model_key"]))
    return metrics, scored_out


def check_scored(folder: Path, out: Path, scored_out: list[tuple[str, str]]) -> None:
    """Refuse figures that scored the model in `out` before this export (another checkpoint, or
    the same one exported otherwise: --int8, --half) for the export made in `folder`: its
    model_key differs from the one they record."""
    from fer.data import model_key

    made = model_key(folder)
    for f, key in scored_out:
        if key != made:
            raise FerError(
                f"{f} scored the model {out} held before, not this export (other weights or "
                "graph): export, score the export (python -m fer.evaluate --ckpt OUT) and export "
                "again with --metrics of that; nothing written"
            )


def write_files(spec, model, folder: Path, args, faces: np.ndarray | None) -> None:
    """The export's files, written into `folder`: model.safetensors, model.onnx (and an
    ensemble's member graphs) and, last, model.json."""
    from safetensors.torch import save_file

    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(
            {
                k: (v.half() if args.half and v.is_floating_point() else v).contiguous()
                for k, v in model.state_dict().items()
            },
            str(tmp),
            metadata={"arch": spec.arch},
        )
    # checked wherever the weights are read (safetensors has no checksum of its own)
    spec.extra["safetensors_sha256"] = file_sha256(folder / "model.safetensors")
    if getattr(model, "flip", False) and not args.no_onnx:
        # the graph sees each face once; fer.inference.Classifier feeds it the face and its mirror
        # as two rows and averages them, or, in video, one of them a frame
        model.flip = False
        spec.extra["onnx_single_view"] = True
    if args.int8:
        whole = folder / "model.onnx"
        export_int8_onnx(model, whole, faces)
        if spec.arch == "ensemble":

            def int8_part(member, path: Path, _) -> None:
                with atomic_path(path) as tmp:
                    export_int8_onnx(member, tmp, faces)
                    _share_weights_with(tmp, whole)

            spec.extra["onnx_parts"] = export_parts(model, folder, int8_part)
    elif not args.no_onnx:
        weights = folder / "model.safetensors"
        export_onnx(model, folder / "model.onnx", weights)
        # model.onnx reads its weights at fixed places in this very file: loading checks it is
        spec.extra["weights_sha256"] = file_sha256(weights)
        if spec.arch == "ensemble":
            spec.extra["onnx_parts"] = export_parts(
                model,
                folder,
                lambda member, path, i: export_onnx(member, path, weights, f"members.{i}."),
            )
    if not args.no_onnx:  # loading checks that model.onnx is the graph written with this file
        spec.extra["onnx_sha256"] = file_sha256(folder / "model.onnx")
    write_text(folder / "model.json", json.dumps(spec.to_json(), indent=2) + "\n")


#: An export's files in its folder (none other is touched there), model.json written last.
EXPORT_OUTPUTS = ("model.json", "model.safetensors", "model.onnx", "model.part[0-9]*.onnx")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer.inference import resolve_model_path, torch_model

    if args.int8 == "":  # ("$DATA" unset): not a float export made without a word
        raise FerError("--int8 is empty (an unset variable?); give the data to calibrate on")
    if args.int8 and args.no_onnx:
        raise FerError("--int8 quantizes the ONNX graph; drop --no-onnx")
    if not args.out:
        raise FerError("--out is empty; give the folder to write the model into")
    out = Path(args.out)
    outputs = OutputSet(out, EXPORT_OUTPUTS, "model.json")  # checked before the models are read
    paths = [Path(c) for c in args.ckpt]
    for path in paths:
        if not path.exists():
            raise FerError(f"checkpoint {path} does not exist")
    paths = [resolve_model_path(p) for p in paths]
    spec, state, alone = read_members(paths, args.flip)
    if args.half:  # round once: the safetensors and ONNX files then hold the same weights
        state = {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}
    model = torch_model(spec, state, paths[0])  # proves the weights fit the architecture
    spec.extra["export_command"] = "python -m fer.export " + " ".join(
        map(shlex.quote, argv if argv is not None else sys.argv[1:])
    )
    backend = "torch" if args.no_onnx else "onnx"
    same, parts = ([*paths, out], []) if alone else ([out], paths)
    metrics, scored_out = read_metrics(args.metrics or [], backend, same, parts, out)
    if metrics:
        spec.extra["metrics"] = metrics
    spec.extra["parameters"] = sum(p.numel() for p in model.parameters())
    if args.half:
        spec.extra["stored_dtype"] = "float16"
    faces = None
    if args.int8:
        faces = calibration_faces(args.int8)  # before anything is written: bad data fails first
        spec.extra["onnx_int8"] = {
            "calibration": f"{len(faces)} training faces of {args.int8} (seed 0)",
            "format": "QDQ, int8 weights per output channel (7 bits), uint8 activations (min-max "
            f"ranges) of {', '.join(INT8_OPS)}; the rest float",
        }
    # the files are made beside those they replace, in a hidden folder: a stopped or failed
    # export leaves the folder as it was (and one into its own folder loses nothing)
    try:
        with outputs as folder:
            write_files(spec, model, folder, args, faces)
            check_scored(folder, out, scored_out)
    except Terminated as e:
        print(f"stopped by {e.name}: nothing written", file=sys.stderr)
        return e.code
    stale = outputs.removed
    members = spec.options.get("members") if spec.arch == "ensemble" else None
    what = spec.arch
    if members and len(members) == 1:  # one network, --flip: no ensemble of several
        what = f"{members[0]['arch']} averaged with its mirror image"
    elif members:
        what = f"ensemble of {len(members)}" + (
            " with mirror images" if spec.options.get("flip") else ""
        )
    print(
        f"exported {what} ({spec.extra['parameters']:,} parameters) from {', '.join(map(str, paths))} to {out}/: model.safetensors, "
        f"model.json{'' if args.no_onnx else ', model.onnx'}"
        + "".join(f", {part['file']}" for part in spec.extra.get("onnx_parts", []))
        + (f"; removed the {', '.join(stale)} of an earlier export" if stale else "")
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
