"""Load a trained classifier for inference, without unpickling anything, and run it on faces.

Accepted model paths: an exported folder (`model.json` + `model.safetensors` [+ `model.onnx`]),
either of those files, a Lightning checkpoint (read with `torch.load(weights_only=True)`), or a
training run's folder, which stands for the best checkpoint its `summary.json` names.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer.common import (
    EMOTIONS,
    IMAGE_SIZE,
    PIXEL_MEAN,
    PIXEL_STD,
    FerError,
    file_sha256,
    run_config_path,
    standardize,
    usable_cores,
)

if TYPE_CHECKING:  # PyTorch is imported where a model runs in it: onnxruntime needs none of it
    import torch


def _shipped() -> Path:
    """Where the model shipped with fer lies: the package fer.checkpoints of an install (setup.cfg
    maps the repository's checkpoints/ to it), else checkpoints/ beside the package, in a clone."""
    package = Path(__file__).resolve().parent
    installed = package / "checkpoints"
    return installed if (installed / "model.json").is_file() else package.parent / "checkpoints"


#: The model shipped with the code, used when no --model / --ckpt is given.
SHIPPED = _shipped()
TTA_MODES = ("none", "flip", "tencrop")
#: Which views of each face a model that averages faces with their mirror images runs: both, or
#: one of them (video alternates them frame by frame; its average over frames joins them).
SIDES = ("both", "face", "mirror")
TENCROP_SIZE = 42


@dataclass
class ModelSpec:
    """What rebuilds a model: architecture, its options, the class order, the preprocessing."""

    arch: str
    options: dict[str, Any]
    classes: list[str] = field(default_factory=lambda: list(EMOTIONS))
    preprocessing: dict[str, Any] = field(
        default_factory=lambda: {
            "size": IMAGE_SIZE,
            "grayscale": True,
            "mean": PIXEL_MEAN,
            "std": PIXEL_STD,
            "scale": 1 / 255,
            "layout": "NCHW (B, 1, 48, 48)",
        }
    )
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "options": self.options,
            "classes": self.classes,
            "preprocessing": self.preprocessing,
            **self.extra,
        }

    def check(self, source: str) -> None:
        """Refuse a model fer cannot run as it was trained: other classes (or another order of
        them), or faces prepared otherwise than fer.common prepares them."""
        if list(self.classes) != list(EMOTIONS):
            raise FerError(f"{source} was trained on classes {self.classes}, not {list(EMOTIONS)}")
        expected = type(self)("", {}).preprocessing
        if self.preprocessing != expected:
            raise FerError(
                f"{source} was trained on faces prepared as {self.preprocessing}, not as fer "
                f"prepares them ({expected})"
            )

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelSpec:
        known = ("arch", "options", "classes", "preprocessing")
        if not isinstance(d, dict):
            raise FerError(
                "model metadata is not a JSON object; re-export it with python -m fer.export"
            )
        missing = [k for k in ("arch", "options") if k not in d]
        if missing:
            raise FerError(
                f"model metadata lacks {', '.join(missing)}; re-export it with python -m fer.export"
            )
        kinds = {"arch": str, "options": dict, "classes": list, "preprocessing": dict}
        for key, kind in kinds.items():
            if key in d and not isinstance(d[key], kind):
                what = {str: "a name", dict: "a mapping", list: "a list"}[kind]
                raise FerError(
                    f"model.json: {key} must be {what}, not {d[key]!r:.40}; re-export it with "
                    "python -m fer.export"
                )
        return cls(
            d["arch"],
            d["options"],
            d.get("classes", list(EMOTIONS)),
            d.get("preprocessing", cls.__dataclass_fields__["preprocessing"].default_factory()),
            {k: v for k, v in d.items() if k not in known},
        )


def read_checkpoint(path: Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """(spec, model state dict) from a Lightning checkpoint, refusing anything that needs unpickling code."""
    import torch

    with open(path, "rb") as f:
        head = f.read(4)
    # what torch.save writes: a zip, or (before PyTorch 1.6) a pickle of protocol 2 or more
    saved = head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"
    try:
        if not saved:  # text (a git-lfs pointer, a web page), or nothing
            raise ValueError("not a file torch.save writes")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler raises many types on garbage; all mean "not loadable"
        if saved and "Weights only load failed" in str(e):
            raise FerError(
                f"{path} holds pickled objects that are not plain tensors; refusing to load it "
                "(only weights-only checkpoints and safetensors are accepted)"
            ) from e
        raise FerError(
            f"{path} is not a readable checkpoint (truncated, a git-lfs pointer, or not a "
            "checkpoint)"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise FerError(
            f"{path} is not a fer Lightning checkpoint (no state_dict / hyper_parameters)"
        )
    hp = ckpt["hyper_parameters"]
    spec = ModelSpec(hp.get("model", "cnn"), dict(hp.get("model_options") or {}))
    # Where it came from, recorded by fer.export; the run's options also give its data split.
    spec.extra["source_checkpoint"] = path.name
    if ckpt.get("epoch") is not None:  # Lightning counts epochs from 0
        spec.extra["trained_epochs"] = ckpt["epoch"] + 1
    config = run_config_path(path)
    if config.is_file():
        import yaml

        spec.extra["training_config"] = yaml.safe_load(config.read_text()) or {}
        spec.extra["training_command"] = f"python -m fer.train --config {shlex.quote(str(config))}"
    else:  # a checkpoint moved away from its run: its module's own hyper-parameters at least
        spec.extra["training_hparams"] = hp
    state = {
        k.removeprefix("model.").removeprefix("_orig_mod."): v
        for k, v in ckpt["state_dict"].items()
        if k.startswith("model.")
    }
    return spec, state


#: The files of an export, which find each other by these names (a graph its weights, say).
EXPORT_FILES = ("model.json", "model.safetensors", "model.onnx")


def read_exported(path: Path) -> tuple[ModelSpec, Path]:
    """(spec, folder) of an export: a folder, or one of its files (EXPORT_FILES)."""
    folder = path if path.is_dir() else path.parent
    if path.is_dir() and not (folder / "model.json").is_file():
        raise FerError(
            f"{path} holds no exported model (model.json); pass an exported folder "
            "(python -m fer.export) or a .ckpt"
        )
    if not path.is_dir() and path.name not in EXPORT_FILES:
        if re.fullmatch(r"model\.part\d+\.onnx", path.name):
            raise FerError(
                f"{path} is the graph of one member of the model in {folder}; pass that folder"
            )
        raise FerError(
            f"{path} is neither a checkpoint (.ckpt) nor a file of an exported model "
            f"({', '.join(EXPORT_FILES)}, which fer finds by these names); pass its folder"
        )
    meta = folder / "model.json"
    if not meta.is_file():
        raise FerError(
            f"no model.json beside {path}; pass an exported folder (python -m fer.export) or a "
            ".ckpt"
        )
    try:
        return ModelSpec.from_json(json.loads(meta.read_text(encoding="utf-8"))), folder
    except ValueError as e:  # not JSON, or not UTF-8
        raise FerError(f"{meta} is not valid JSON: {e}") from e


def resolve_model_path(path: Path) -> Path:
    """A training run's folder (one holding the summary.json fer.train writes into
    lightning_logs/version_N/ and wherever --json puts it) becomes the best checkpoint it names;
    any other path is returned as it is."""
    summary = path / "summary.json"
    if not path.is_dir() or (path / "model.json").is_file():
        return path
    if not summary.is_file():
        saved = sorted(path.glob("checkpoints/*.ckpt"))
        if saved:  # a version_N folder whose run has not finished, or was stopped
            raise FerError(
                f"{path} is a training run with no summary.json yet (unfinished or stopped); "
                f"pass one of its checkpoints: {', '.join(str(c) for c in saved)}"
            )
        return path
    try:
        best = json.loads(summary.read_text()).get("best_checkpoint")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise FerError(f"{summary} is not a fer.train summary: {e}") from e
    if not (isinstance(best, str) and best):
        raise FerError(f"{summary} names no best checkpoint; pass one of the run's .ckpt files")
    best = Path(best)
    # The recorded path is relative to where training ran; the folder may have moved since, so
    # look first for the same version_N/checkpoints/NAME tail under the folder itself.
    tails = [Path(*best.parts[-k:]) for k in range(2, min(len(best.parts), 4) + 1)]
    for candidate in [path / tail for tail in tails] + [best]:
        if candidate.is_file():
            return candidate
    raise FerError(
        f"{summary} names the best checkpoint {best}, which is not there; pass a .ckpt of the run"
    )


#: A float picture holds 0..1; values up to this far outside (the overshoot of cubic or Lanczos
#: resampling of a 0..1 picture, about a tenth) are that scale, clipped (fer.recognizer reads such
#: a picture so); further out, the values are on another scale (0..255, say).
FLOAT_OVERSHOOT = 0.25


class Classifier:
    """A trained emotion classifier: uint8 48x48 faces in, class probabilities out.

    backend 'torch' runs the PyTorch model in fp32 (channels_last); 'onnx' runs the exported ONNX
    graph with onnxruntime, usually the faster of the two on a CPU.

    A model that averages each face with its mirror image (an ensemble exported with --flip) has
    both views run here, as two rows of one batch, rather than inside its network: `mirror` is
    then True, and video can run one view a frame (predict_proba's `side`) at half the cost. The
    ONNX graphs of such models exported before mirror inside themselves (their model.json has no
    `onnx_single_view`): there `mirror` is False and every run sees both views.

    An ensemble's members can also run one at a time (predict_proba's `part`): in PyTorch, and
    through onnxruntime where the export wrote each member's graph (`onnx_parts`); `parts` says
    how many there are (1: the model runs whole), and `views` lists the pieces video runs a frame.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: torch.nn.Module | None = None,
        session=None,
        source: str = "",
        part_makers: Callable[[], list[Any]] | None = None,
    ):
        self.spec, self.model, self.session, self.source = spec, model, session, source
        self.classes = spec.classes
        spec.check(source)
        mirrors = spec.arch == "ensemble" and bool(spec.options.get("flip"))
        if model is not None and mirrors:
            model.flip = False  # the same average, of the two rows predict_proba gives it
        self.mirror = mirrors and (session is None or bool(spec.extra.get("onnx_single_view")))
        # an ensemble's members, each of which can run alone: the PyTorch model's own, or the
        # graphs exported beside model.onnx (`part_makers` makes their sessions; on first use,
        # or load_parts: photos never need them)
        self._make_parts = part_makers if self.mirror or not mirrors else None
        self.part_sessions: list[Any] = []
        members = len(model.members) if model is not None and spec.arch == "ensemble" else 0
        onnx_members = len(spec.extra.get("onnx_parts", [])) if self._make_parts else 0
        self.parts = max(1, members if session is None else onnx_members)

    @property
    def views(self) -> list[tuple[str, int | None]]:
        """The pieces of the model's work, as (side, part) of predict_proba, whose probabilities
        averaged with equal weights are its answer: each member of an ensemble that can run
        alone (`parts` > 1) on the face and, for a model that averages mirror images, on the
        mirror; [("both", None)] for a model that can only run whole."""
        sides = ("face", "mirror") if self.mirror else ("both",)
        parts = range(self.parts) if self.parts > 1 else (None,)
        return [(side, part) for part in parts for side in sides]

    def training_configs(self) -> list[dict | None]:
        """The fer.train options each network of the model was trained with (one for each member
        of an ensemble, and of an ensemble among them), None where the export does not record
        them."""

        def networks(record: dict) -> list[dict | None]:
            members = record.get("members") or []
            return [c for m in members for c in networks(m)] or [record.get("training_config")]

        return networks(self.spec.extra)

    def training_split(self) -> tuple[float, int] | None:
        """(val_fraction, seed) the model was trained with, which decide the validation faces of
        data without PublicTest markers; None when unknown or when ensemble members differ."""
        configs = self.training_configs()
        if not all(configs):
            return None
        found = {(c.get("val_fraction"), c.get("seed")) for c in configs}
        split = found.pop()
        return None if found or None in split else split

    @property
    def backend(self) -> str:
        return "onnx" if self.session is not None else "torch"

    def load_parts(self) -> None:
        """Make the onnxruntime sessions of the members' graphs now, not on their first use (what
        a video does before its first frame)."""
        if self.session is not None and self.parts > 1 and not self.part_sessions:
            self.part_sessions = self._make_parts()

    def _logits(self, x: np.ndarray, part: int | None = None) -> np.ndarray:
        """The network's output (or member `part`'s) for standardised faces (B, 1, 48, 48)."""
        if self.session is not None:
            session = self.session
            if part is not None and self.parts > 1:
                self.load_parts()
                session = self.part_sessions[part]
            return session.run(None, {session.get_inputs()[0].name: x})[0]
        import torch

        model = self.model if part is None or self.parts == 1 else self.model.members[part]
        with torch.inference_mode():
            x = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return model(x).float().numpy()

    def predict_proba(
        self,
        faces: np.ndarray | torch.Tensor,
        tta: str = "none",
        batch_size: int = 256,
        side: str = "both",
        part: int | None = None,
    ) -> np.ndarray:
        """Probabilities (N, 7) for faces (N, 48, 48), uint8 or float scaled to 0..1; TTA averages
        over flips or ten crops. `side` "face" or "mirror" (with tta "none") runs only that view
        of each face: for a model that averages both (`mirror`), half its work, and the average
        of the two sides' probabilities is its answer. `part` (with tta "none") runs only that
        member of an ensemble (0 .. parts - 1); the members' average is the model's answer (see
        `views`)."""
        if tta not in TTA_MODES:
            raise FerError(f"unknown --tta {tta!r}; choose from {', '.join(TTA_MODES)}")
        if side not in SIDES or (side != "both" and tta != "none"):
            raise FerError(f"side must be one of {', '.join(SIDES)}, and both with tta {tta!r}")
        member = isinstance(part, (int, np.integer)) and not isinstance(part, bool)
        if part is not None and (tta != "none" or not member or part not in range(self.parts)):
            raise FerError(f"part must be None or 0..{self.parts - 1}, with tta none")
        count = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
        if not (count and batch_size >= 1):
            raise FerError(f"batch_size must be a count of faces from 1, not {batch_size!r}")
        if hasattr(faces, "detach"):  # a tensor, on any device, gradients tracked or not
            faces = faces.detach().cpu()
            # float32 for the floats: numpy has no bfloat16, which autocast gives
            faces = (faces.float() if faces.dtype.is_floating_point else faces).numpy()
        faces = np.ascontiguousarray(faces)
        if faces.dtype.kind == "f":
            if np.isnan(faces).any():
                raise FerError("float faces hold NaN (not a number): pass faces of pixels 0..1")
            if len(faces) and not (faces.min() >= 0 and faces.max() <= 1):
                low, high = float(faces.min()), float(faces.max())
                near = -FLOAT_OVERSHOOT <= low and high <= 1 + FLOAT_OVERSHOOT
                advice = "clip them to 0..1" if near else "divide them by 255"
                raise FerError(
                    f"float faces must be scaled to 0..1 (these span {low:g}..{high:g}): "
                    f"{advice}, or pass uint8 0..255 faces"
                )
        elif faces.dtype != np.uint8:
            raise FerError(f"faces must be uint8 (0..255) or float in 0..1, not {faces.dtype}")
        if faces.ndim == 2:
            faces = faces[None]
        if len(faces) == 0:
            if faces.ndim > 1:  # the shape checked: an empty batch of 64x64 faces is a mistake
                standardize(faces)  # too ([], a picture's crops where no face was found, is not)
            return np.zeros((0, len(self.classes)), np.float32)
        out = []
        for i in range(0, len(faces), batch_size):
            views = tta_views(standardize(faces[i : i + batch_size]), tta)  # (V, B, 1, 48, 48)
            if side == "mirror":
                views = views[..., ::-1]
            elif side == "both" and self.mirror and tta == "none":  # the others hold mirrors
                views = np.concatenate([views, views[..., ::-1]])
            v, b = views.shape[:2]
            rows = np.ascontiguousarray(views.reshape((v * b,) + views.shape[2:]))
            logits = self._logits(rows, part)
            out.append(softmax(logits).reshape(v, b, -1).mean(0))
        return np.concatenate(out).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


#: Said where --tta flip is asked of a model that averages each face with its mirror image
#: already (an export made with --flip): the same answers, at twice the cost.
FLIP_ADDS_NOTHING = (
    "the model averages each face with its mirror image already: --tta flip adds nothing"
)


def tta_views(x: np.ndarray, tta: str) -> np.ndarray:
    """(V, B, C, 48, 48): the batch itself; plus its mirror ('flip'); or ten crops resized back
    ('tencrop')."""
    if tta == "none":
        return x[None]
    if tta == "flip":
        return np.stack([x, x[..., ::-1]])
    import torch
    import torch.nn.functional as F

    s, c = IMAGE_SIZE, TENCROP_SIZE
    offsets = [(0, 0), (0, s - c), (s - c, 0), (s - c, s - c), ((s - c) // 2, (s - c) // 2)]
    t = torch.from_numpy(np.ascontiguousarray(x))
    crops = [t[..., i : i + c, j : j + c] for i, j in offsets]
    crops = [F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False) for t in crops]
    return torch.stack(crops + [t.flip(-1) for t in crops]).numpy()


def load_classifier(path: str | Path | None = None, backend: str = "torch") -> Classifier:
    """Load a classifier from an export folder, its files, a Lightning checkpoint or a training
    run's folder (default: the shipped model)."""
    path = Path(path) if path else SHIPPED
    if not path.exists():
        hint = (
            "train one with python -m fer.train, or pass --model"
            if path == SHIPPED
            else "check the path"
        )
        raise FerError(f"model {path} does not exist; {hint}")
    path = resolve_model_path(path)
    if path.is_dir() and not (path / "model.json").is_file():
        ckpts = sorted(path.glob("*.ckpt"))
        runs = sorted(path.glob("version_*/"), key=lambda r: (len(r.name), r.name))
        if ckpts:  # a run's checkpoints/
            hint = f"pass one of its checkpoints: {', '.join(map(str, ckpts[:5]))}"
        elif runs:  # lightning_logs/
            hint = f"pass one of its runs: {', '.join(map(str, runs[-5:]))}"
        else:
            hint = (
                "pass a run's lightning_logs/version_N folder, a .ckpt, or a folder python -m "
                "fer.export wrote"
            )
        raise FerError(
            f"{path} holds no exported model (model.json) and no training summary "
            f"(summary.json); {hint}"
        )
    exported = None  # (spec, folder) of an export, read once
    if backend == "auto":  # onnxruntime where the export has a graph its model.json records
        folder = path if path.is_dir() else path.parent
        if path.suffix != ".ckpt" and (folder / "model.onnx").is_file():
            exported = read_exported(path)
        backend = "onnx" if exported and records_graph(exported[0]) else "torch"
    if backend not in ("torch", "onnx"):
        raise FerError(f"unknown backend {backend!r}; choose torch, onnx or auto")
    if path.suffix == ".ckpt" and backend == "onnx":
        raise FerError("--backend onnx needs an exported model; run python -m fer.export first")
    if backend == "onnx":
        spec, folder = exported or read_exported(path)
        onnx_file = folder / "model.onnx"
        if not onnx_file.is_file():
            raise FerError(f"no model.onnx in {folder}; re-export with python -m fer.export")
        session = onnx_session(spec, onnx_file)
        parts = onnx_parts(spec, folder)
        return Classifier(spec, session=session, source=str(onnx_file), part_makers=parts)
    spec, state, source = read_weights(path)
    return Classifier(spec, torch_model(spec, state, source), source=str(source))


def records_graph(spec: ModelSpec) -> bool:
    """Whether an export's model.json records its ONNX graph (its SHA-256, or the weights' a float
    graph reads, or its int8 graph's name): where it does not (an export made with --no-onnx, or
    by a fer from before they were recorded), a model.onnx beside it may be another export's."""
    return bool(
        spec.extra.get("onnx_sha256")
        or spec.extra.get("weights_sha256")
        or spec.extra.get("onnx_int8")
    )


def onnx_session(spec: ModelSpec, onnx_file: Path):
    """An onnxruntime session of an exported graph. It must be the graph model.json describes: the
    SHA-256 of model.onnx it records (`onnx_sha256`) is checked, and a model.json that records
    no graph (`records_graph`) refuses a model.onnx beside it (the auto backend runs PyTorch). A
    float graph reads its weights from model.safetensors, whose recorded SHA-256
    (`weights_sha256`) is checked too, or the weights would be misread. (Exports made before onnx_sha256 was recorded are checked
    by weights_sha256 alone; their int8 graphs, named by `onnx_int8`, are not checked.)"""
    meta = onnx_file.with_name("model.json")
    recorded = spec.extra.get("onnx_sha256")
    if not records_graph(spec):
        raise FerError(
            f"{meta} records no ONNX graph (an export made with --no-onnx, or by a fer from before "
            f"2026-11-26), so {onnx_file} beside it cannot be told from another export's: use "
            "--backend torch, or export again with python -m fer.export"
        )
    if recorded and file_sha256(onnx_file) != recorded:
        raise FerError(
            f"{onnx_file} is not the graph {meta} was exported with (it is left from, or copied "
            "from, another export); export again with python -m fer.export"
        )
    if spec.extra.get("weights_sha256"):  # a float graph, which reads model.safetensors
        check_weight_file(spec, onnx_file.parent)
    whole = _ort_session(onnx_file)
    cores = usable_cores()
    if cores < 2:
        return whole
    return RowSplit(whole, [_ort_session(onnx_file, cores // 2) for _ in range(2)])


class RowSplit:
    """An exported graph (one input, outputs batch-first, as fer exports them) that runs a batch of
    two rows or more as two halves at once, each in its own onnxruntime session with half the
    cores, and a single row in a session with all of them (`whole`). One face is two rows (it and
    its mirror image), and a 48x48 face's layers are too small to keep several cores busy on one
    row: on a 2-core AVX2 CPU the shipped model took 4.10 ms a face so against 4.58 in one session
    (experiments/benchmark.py, docs/benchmark_fp32_cpu.json). Rows are independent, so the answer
    is the same. It is run as an onnxruntime session is: `run`, `get_inputs`."""

    def __init__(self, whole, halves: list):
        self.whole, self.halves = whole, halves
        self._pool, self._pid = None, None

    def get_inputs(self):
        return self.whole.get_inputs()

    def _second(self):
        """The thread pool that runs second halves: made on first use in each process (a forked
        child has none of its parent's threads), one thread a core at most (fer.serve runs
        several faces at once)."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        pool = self._pool
        if self._pid != os.getpid():  # no lock, which a fork could leave held: two threads that
            # meet here each make a pool, and the one not kept ends when its work is done
            pool = ThreadPoolExecutor(usable_cores(), thread_name_prefix="fer-onnx")
            self._pool, self._pid = pool, os.getpid()
        return pool

    def run(self, names, feed: dict) -> list:
        ((name, x),) = feed.items()
        if len(x) < 2:
            return self.whole.run(names, feed)
        half = (len(x) + 1) // 2
        second = self._second().submit(self.halves[1].run, names, {name: x[half:]})
        first = self.halves[0].run(names, {name: x[:half]})
        return [np.concatenate(pair) for pair in zip(first, second.result())]


def onnx_parts(spec: ModelSpec, folder: Path) -> Callable[[], list[Any]] | None:
    """What makes onnxruntime sessions of the members' graphs an export recorded (`onnx_parts`),
    or None (the model runs whole: as right, and slower in video) when any of them is missing or
    is not the graph model.json records (its SHA-256), e.g. a folder copied without them or over
    an older export's. Making them checks that the part graphs, and the files they read their
    weights from, are still the files checked when the model was loaded (not, say, those of a
    later export into the folder)."""
    recorded = spec.extra.get("onnx_parts", [])
    files = [folder / part["file"] for part in recorded]

    def changed() -> list[Path]:
        return [
            f
            for f, part in zip(files, recorded)
            if not (f.is_file() and file_sha256(f) == part["sha256"])
        ]

    if not recorded or changed():
        return None
    # the files the parts read their weights from: a float part model.safetensors, an int8 one
    # model.onnx (the whole int8 graph, which holds the same quantized weights)
    read = [
        (folder / name, spec.extra[key])
        for name, key in (("model.safetensors", "weights_sha256"), ("model.onnx", "onnx_sha256"))
        if spec.extra.get(key)
    ]

    def make() -> list[Any]:
        stale = changed()
        stale += [f for f, sha in read if not (f.is_file() and file_sha256(f) == sha)]
        if stale:
            raise FerError(
                f"{stale[0]} is gone or changed since the model was loaded; load it again"
            )
        return [_ort_session(f) for f in files]

    return make


def _ort_session(onnx_file: Path, threads: int = 0):
    """An onnxruntime session of the graph on the CPU, with `threads` threads (0: onnxruntime's
    choice, one a core)."""
    import onnxruntime as ort

    weights = onnx_file.with_name("model.safetensors")
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # no busy-waiting between runs: the face detector and, in fer.serve, the browser share
        # the cores (on 2 cores: the same speed, about an eighth less CPU a video frame)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        missing = "" if weights.is_file() else f" (it reads its weights from {weights}, missing)"
        raise FerError(
            f"{onnx_file} is not a valid ONNX model{missing}: {str(e).splitlines()[0][:100]}"
        ) from e


def check_weight_file(spec: ModelSpec, folder: Path) -> Path:
    """The export's model.safetensors, once it is the file its model.json records (its SHA-256:
    `safetensors_sha256`, or for a float graph's exports before 2026-12-04 `weights_sha256`):
    bytes changed in the tensors would load as other weights or NaN, and a float graph reads
    them at fixed offsets."""
    weights = folder / "model.safetensors"
    expected = spec.extra.get("safetensors_sha256") or spec.extra.get("weights_sha256")
    if expected and weights.is_file() and file_sha256(weights) != expected:
        raise FerError(
            f"{weights} is damaged or is not the weight file {folder / 'model.json'} records (its "
            "SHA-256 differs); export the model again with python -m fer.export, or copy it again"
        )
    return weights


def read_weights(path: Path) -> tuple[ModelSpec, dict[str, torch.Tensor], Path]:
    """(spec, state dict, file read) of a Lightning checkpoint or an export (folder or its files)."""
    if path.suffix == ".ckpt":
        return (*read_checkpoint(path), path)
    spec, folder = read_exported(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = check_weight_file(spec, folder)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as e:
        raise FerError(f"{weights} is not a readable safetensors file: {e}") from e
    return spec, state, weights


def torch_model(spec: ModelSpec, state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    """The spec's network with `state` loaded (float32, eval mode, channels-last)."""
    import torch

    from fer.models import build_model

    spec.check(str(source))  # other classes: said so, not as the head's size mismatch
    model = build_model(spec.arch, num_classes=len(spec.classes), **spec.options)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise FerError(  # torch's first line only names the class: the next says what differs
            f"{source} does not fit a {spec.arch} model with options {spec.options}: "
            f"{lines[1 if len(lines) > 1 else 0][:160] if lines else e}"
        ) from e
    return model.eval().to(memory_format=torch.channels_last)
