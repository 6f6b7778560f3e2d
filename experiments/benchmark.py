"""Speed benchmark: the usual FER training pipeline against fer's, plus inference, detection and loading.

    python experiments/benchmark.py [--data data/fer2013] [--json docs/benchmark.json]

All figures come from this one run, on this machine:
  (a) reference training: torchvision ImageFolder + per-image PIL transforms (flip, rotation, crop)
      + DataLoader with 2 workers + fp32;
  (b) fer training: in-memory uint8 batches + batched tensor augmentation + bf16 autocast (where the
      CPU has it) + channels_last; same `cnn` model, batch size and optimizer;
  inference images/s at batch 256 and single-face latency; for each face detector, on a 640x480
  video of PublicTest faces: faces found, label accuracy, frames/s of detection alone and of the
  whole fer.detect process; first load and cached reload of the folder dataset; full-size CSV parse.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.augment import augment_batch  # noqa: E402
from fer.common import (  # noqa: E402
    EMOTIONS,
    FerError,
    cpu_has_bf16,
    machine,
    normalize,
    run_cli,
    write_text,
)
from fer.faces import DETECTORS  # noqa: E402
from fer.models import build_model  # noqa: E402


def train_throughput(
    batches, model, steps: int, warmup: int, autocast_dtype=None, channels_last=False
) -> float:
    """Images per second of forward + backward + SGD step over `steps` batches after `warmup`."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    it = iter(batches)
    seen, start = 0, None
    for i in range(warmup + steps):
        if i == warmup:
            start, seen = time.perf_counter(), 0
        x, y = next(it)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def reference_batches(root: Path, batch_size: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.Grayscale(),
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(10),
            transforms.RandomResizedCrop(48, scale=(0.8, 1.0)),
            transforms.ToTensor(),
            transforms.Normalize([0.5], [0.25]),
        ]
    )
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    while True:
        yield from DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=True,
            num_workers=2,
            drop_last=True,
            persistent_workers=False,
        )


def fer_batches(data: str, batch_size: int):
    from fer.data import FerDataModule

    dm = FerDataModule(data, batch_size=batch_size, augment="light")
    dm.setup("fit")
    while True:
        for x, y in dm.train_dataloader():
            yield normalize(augment_batch(x.float().div_(255), "light")), y


def score_frames(lines: list[str], truth: list, labels: np.ndarray) -> tuple[int, int]:
    """(frames where fer.detect --json found the face, those where it also read its label) of the
    video fer.demo.face_video(faces, hold=10) made, from its true boxes and the faces' labels:
    each face held 10 frames, and the first again after the last where the data held fewer faces
    than the frames asked for."""
    from fer.faces import iou

    found = right = 0
    for i, (line, box) in enumerate(zip(lines, truth)):
        r = json.loads(line)
        hits = [k for k, b in enumerate(r["boxes"]) if iou(tuple(b), box) >= 0.3]
        if hits:
            found += 1
            right += r["labels"][hits[0]] == EMOTIONS[labels[(i // 10) % len(labels)]]
    return found, right


def detection_figures(data, args) -> dict[str, float]:
    """For each detector, on one generated 640x480 video of args.frames // 10 PublicTest faces
    (150-230 px, 10 frames each): the share of frames where the face was found (IoU >= 0.3), the
    label accuracy on those, frames/s of the detector alone, and of the whole `python -m
    fer.detect --smooth 1` process (start-up included); beside the model's accuracy on the 48x48
    originals."""
    import subprocess

    import cv2

    from fer.data import PUBLIC_TEST
    from fer.demo import face_video
    from fer.faces import make_detector, to_gray
    from fer.inference import load_classifier

    n_faces = max(args.frames // 10, 1)
    index = (data.usage == PUBLIC_TEST).nonzero().flatten()  # held out: main checked there are
    pick = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(0))[:n_faces]]
    faces, labels = data.images[pick].numpy(), data.labels[pick].numpy()
    out: dict[str, float] = {}
    clf = load_classifier(args.model, backend="auto")
    out["detect_original_acc"] = float((clf.predict_proba(faces).argmax(1) == labels).mean())
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "faces.mp4"
        truth = face_video(video, list(faces), frames=10 * n_faces, size=(150, 230), hold=10)
        cap = cv2.VideoCapture(str(video))
        grays = []
        while (ok_frame := cap.read())[0]:
            grays.append(to_gray(ok_frame[1]))
        for name in DETECTORS:
            detector = make_detector(name)
            detector.detect(grays[0])
            t = time.perf_counter()
            for g in grays:
                detector.detect(g)
            out[f"detect_{name}_detect_fps"] = len(grays) / (time.perf_counter() - t)
            if name == "yunet" and hasattr(cv2, "FaceDetectorYN"):  # the same network in OpenCV
                h, w = grays[0].shape
                yn = cv2.FaceDetectorYN.create(str(detector.model), "", (w, h), 0.6, 0.3, 5000)
                t = time.perf_counter()
                for g in grays:
                    yn.detect(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR))
                out["detect_yunet_opencv_detect_fps"] = len(grays) / (time.perf_counter() - t)
            # as a user runs it (default smoothing), writing the annotated video and the JSON lines
            cmd = [sys.executable, "-m", "fer.detect", "--source", str(video), "--detector", name]
            cmd += ["--output", str(Path(tmp) / "out.mp4"), "--json", str(Path(tmp) / "out.jsonl")]
            cmd += ["--model", args.model] if args.model else []
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            out[f"detect_{name}_default_fps"] = len(grays) / (time.perf_counter() - t)
            jsonl = Path(tmp) / f"{name}.jsonl"
            cmd = [sys.executable, "-m", "fer.detect", "--source", str(video), "--json", str(jsonl)]
            # --smooth 1: each frame judged on its own, as fer.evaluate judges each face (the
            # default smoothing would carry a face's probabilities into the next face's frames)
            cmd += ["--detector", name, "--smooth", "1"]
            cmd += ["--model", args.model] if args.model else []
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            out[f"detect_{name}_fps"] = len(grays) / (time.perf_counter() - t)
            found, right = score_frames(jsonl.read_text().splitlines(), truth, labels)
            out[f"detect_{name}_found"] = found / len(truth)
            out[f"detect_{name}_label_acc"] = right / found if found else None  # (JSON null)
            print(
                f"detect {name}: face found in {found}/{len(truth)} frames, label right on "
                f"{share(out[f'detect_{name}_label_acc'])} of them (model on the originals: "
                f"{out['detect_original_acc']:.1%}); detection alone "
                f"{out[f'detect_{name}_detect_fps']:.0f} FPS, whole process "
                f"{out[f'detect_{name}_fps']:.1f} FPS (--smooth 1), "
                f"{out[f'detect_{name}_default_fps']:.1f} FPS (default, writing --output, --json)",
                flush=True,
            )
    return out


def share(value: float | None) -> str:
    """A share as a percentage; n/a for none (a label accuracy on no face found)."""
    return "n/a" if value is None else f"{value:.1%}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", default="data/fer2013", help="FER-2013 folder layout (train/<emotion>/)"
    )
    p.add_argument("--model", help="exported model for inference/detect (default: the shipped one)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40, help="timed training steps per pipeline")
    p.add_argument(
        "--json",
        default="runs/benchmark.json",
        help="the figures (the docs' records: docs/benchmark*.json)",
    )
    p.add_argument(
        "--csv-rows", type=int, default=35887, help="rows of the CSV to parse (the full Kaggle CSV)"
    )
    p.add_argument(
        "--frames", type=int, default=900, help="frames of the detection video (10 per face)"
    )
    args = p.parse_args(argv)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)  # runs/ on a fresh clone
    root = Path(args.data)
    results: dict[str, float | str] = {
        "machine": f"{machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }

    # Loading: first decode into a fresh cache, then the cached reload; the CSV parse.
    from fer.data import PUBLIC_TEST, load_fer

    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        data = load_fer(root, cache)
        results["load_first_s"] = time.perf_counter() - t
        if not (data.usage == PUBLIC_TEST).any():  # the detection video's faces are held out
            raise FerError(
                f"{root} has no PublicTest faces (a test/ folder, or CSV rows so marked): the "
                "detection figures are measured on faces the model was not trained on"
            )
        t = time.perf_counter()
        load_fer(root, cache)
        results["load_cached_s"] = time.perf_counter() - t
        n = args.csv_rows  # written from the folder faces, repeated to reach it
        idx = np.arange(n) % len(data)
        csv = Path(cache) / "fer2013.csv"
        flat = data.images.numpy().reshape(len(data), -1)
        usage = np.array(["Training", "PublicTest", "PrivateTest"])[
            np.minimum(data.usage.numpy(), 2)
        ]
        with open(csv, "w") as f:
            f.write("emotion,pixels,Usage\n")
            for i in idx:
                f.write(f"{int(data.labels[i])},{' '.join(map(str, flat[i]))},{usage[i]}\n")
        t = time.perf_counter()
        parsed = load_fer(csv, Path(cache) / "csv-cache")
        results["csv_parse_s"] = time.perf_counter() - t
        results["csv_rows"] = n
        assert len(parsed) == n
    print(
        f"loading: first {results['load_first_s']:.1f} s, cached {results['load_cached_s']:.2f} s, "
        f"CSV ({n} rows) {results['csv_parse_s']:.2f} s",
        flush=True,
    )

    # Training throughput, same model and optimizer.
    torch.manual_seed(0)
    ref = train_throughput(
        reference_batches(root, args.batch_size), build_model("cnn"), args.steps, 5
    )
    print(f"training (a) reference: {ref:.0f} img/s", flush=True)
    dtype = torch.bfloat16 if cpu_has_bf16() else None
    torch.manual_seed(0)
    ours = train_throughput(
        fer_batches(str(root), args.batch_size),
        build_model("cnn").to(memory_format=torch.channels_last),
        args.steps,
        5,
        autocast_dtype=dtype,
        channels_last=True,
    )
    results.update(train_reference_img_s=ref, train_fer_img_s=ours, train_speedup=ours / ref)
    print(f"training (b) fer: {ours:.0f} img/s ({ours / ref:.1f}x)", flush=True)

    # The network alone on one fixed batch (no data path): the ceiling each pipeline can reach.
    def same_batch():
        x, y = torch.rand(args.batch_size, 1, 48, 48), torch.randint(0, 7, (args.batch_size,))
        while True:
            yield x, y

    torch.manual_seed(0)
    bare32 = train_throughput(same_batch(), build_model("cnn"), args.steps, 5)
    torch.manual_seed(0)
    bare_fast = train_throughput(
        same_batch(),
        build_model("cnn").to(memory_format=torch.channels_last),
        args.steps,
        5,
        autocast_dtype=dtype,
        channels_last=True,
    )
    results.update(train_model_only_fp32_img_s=bare32, train_model_only_fer_img_s=bare_fast)
    print(
        f"network alone: fp32 {bare32:.0f} img/s, {'bf16 + ' if dtype else ''}channels-last {bare_fast:.0f} img/s",
        flush=True,
    )

    # Inference.
    from fer.inference import RowSplit, load_classifier

    faces = data.images[:2048].numpy()
    for backend in ("torch", "onnx"):
        clf = load_classifier(args.model, backend=backend)
        clf.predict_proba(faces[:256])
        t = time.perf_counter()
        clf.predict_proba(faces, batch_size=256)
        results[f"infer_{backend}_img_s"] = len(faces) / (time.perf_counter() - t)
        one = faces[:1]
        for _ in range(5):
            clf.predict_proba(one)
        # onnx on 2 cores or more: the face's two rows (it and its mirror) run as two halves at
        # once (fer.inference.RowSplit), timed in turns against all rows in one session
        runs = {"single": clf.session}
        if isinstance(clf.session, RowSplit):
            runs["single_one_session"] = clf.session.whole
        spent = dict.fromkeys(runs, 0.0)
        for _ in range(4):
            for key, session in runs.items():
                clf.session = session
                t = time.perf_counter()
                for _ in range(50):
                    clf.predict_proba(one)
                spent[key] += time.perf_counter() - t
        clf.session = runs["single"]
        for key, seconds in spent.items():
            results[f"infer_{backend}_{key}_ms"] = seconds / 200 * 1000
        t = time.perf_counter()
        for _ in range(200):  # the face without its mirror image
            clf.predict_proba(one, side="face")
        results[f"infer_{backend}_single_view_ms"] = (time.perf_counter() - t) / 200 * 1000
        # what video runs on a face a frame: one piece of the model (one member network on the
        # face or its mirror), piece after piece
        pieces = []
        for side, part in clf.views:
            clf.predict_proba(one, side=side, part=part)
            t = time.perf_counter()
            for _ in range(100):
                clf.predict_proba(one, side=side, part=part)
            pieces.append((time.perf_counter() - t) / 100 * 1000)
        results[f"infer_{backend}_piece_ms"] = float(np.mean(pieces))
        results[f"infer_{backend}_piece_max_ms"] = max(pieces)
        print(
            f"inference {backend}: {results[f'infer_{backend}_img_s']:.0f} img/s at batch 256, "
            f"{results[f'infer_{backend}_single_ms']:.2f} ms for one face, "
            f"{results[f'infer_{backend}_single_view_ms']:.2f} ms for one view of it, "
            f"{np.mean(pieces):.2f} ms (at most {max(pieces):.2f}) for one of the "
            f"{len(pieces)} pieces video runs a frame",
            flush=True,
        )

    # Detection on a 640x480 video of PublicTest faces (validation split), one at a time.
    results.update(detection_figures(data, args))

    rows = [
        ("training, reference pipeline (a)", f"{results['train_reference_img_s']:.0f} img/s"),
        ("training, fer pipeline (b)", f"{results['train_fer_img_s']:.0f} img/s"),
        ("speed-up (b)/(a)", f"{results['train_speedup']:.1f}x"),
        (
            "network alone, no data path (fp32 / fer)",
            f"{bare32:.0f} / {bare_fast:.0f} img/s",
        ),
        (
            "inference, batch 256 (torch / onnx)",
            f"{results['infer_torch_img_s']:.0f} / {results['infer_onnx_img_s']:.0f} img/s",
        ),
        (
            "single-face latency (torch / onnx)",
            f"{results['infer_torch_single_ms']:.2f} / {results['infer_onnx_single_ms']:.2f} ms",
        ),
        (
            "one view of a face (torch / onnx)",
            f"{results['infer_torch_single_view_ms']:.2f} / "
            f"{results['infer_onnx_single_view_ms']:.2f} ms",
        ),
        (
            "one piece of a face, what video runs a frame: mean, max (onnx)",
            f"{results['infer_onnx_piece_ms']:.2f}, {results['infer_onnx_piece_max_ms']:.2f} ms",
        ),
        *(
            (
                f"detect {d}: faces found / label accuracy on them (48x48 originals)",
                f"{results[f'detect_{d}_found']:.1%} / {share(results[f'detect_{d}_label_acc'])} "
                f"({results['detect_original_acc']:.1%})",
            )
            for d in DETECTORS
        ),
        *(
            (
                f"detect {d}: detection alone / whole process, --smooth 1 / default, writing files",
                f"{results[f'detect_{d}_detect_fps']:.0f} / {results[f'detect_{d}_fps']:.1f} / "
                f"{results[f'detect_{d}_default_fps']:.1f} FPS",
            )
            for d in DETECTORS
        ),
        (
            "YuNet alone through OpenCV's FaceDetectorYN (fer runs it with onnxruntime)",
            f"{results.get('detect_yunet_opencv_detect_fps', float('nan')):.0f} FPS",
        ),
        ("folder dataset, first load", f"{results['load_first_s']:.1f} s"),
        ("folder dataset, cached reload", f"{results['load_cached_s']:.2f} s"),
        (f"CSV parse ({n:,} rows)", f"{results['csv_parse_s']:.2f} s"),
    ]
    if "infer_onnx_single_one_session_ms" in results:  # beside the single-face row
        at = next(i for i, r in enumerate(rows) if r[0].startswith("single-face")) + 1
        one_session = f"{results['infer_onnx_single_one_session_ms']:.2f} ms"
        rows.insert(at, ("single-face latency, onnx, all rows in one session", one_session))
    width = max(len(r[0]) for r in rows)
    print(f"\n{results['machine']}\n" + "\n".join(f"| {a:<{width}} | {b:>16} |" for a, b in rows))
    results["classes"] = ",".join(EMOTIONS)
    write_text(
        args.json,
        json.dumps(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}, indent=2
        )
        + "\n",
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_cli(main)
