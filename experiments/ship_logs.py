"""Copy a training run's record into lightning_logs/NAME/ for shipping with the code, so that
`tensorboard --logdir lightning_logs` shows the shipped model's own curves on a fresh clone.

Keeps every scalar, the hyper-parameters and the confusion-matrix images of every EVERY-th epoch
and of the last one; drops the grids of validation faces (FER-2013 images must not be committed)
and the checkpoints. Copies config.yaml, hparams.yaml, metrics.csv and confusion_val.json.

Usage: python experiments/ship_logs.py RUN_DIR NAME [--every 5] [--logs lightning_logs]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

FACE_IMAGES = ("val/predictions",)  # tags whose images show dataset faces
SKETCHES = ("val/confusion_matrix",)  # image tags thinned to every --every epochs
FILES = ("config.yaml", "hparams.yaml", "metrics.csv", "confusion_val.json")


def ship(run: Path, dest: Path, every: int = 5) -> dict[str, int]:
    """Write the filtered copy of `run` into `dest`; returns how many values were kept per tag."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    files = sorted(run.glob("events.out.tfevents.*"))
    if not files:
        raise SystemExit(f"error: no TensorBoard event files in {run}")
    events = [ev for f in files for ev in LegacyEventFileLoader(str(f)).Load()]
    last_step = {
        v.tag: ev.step
        for ev in events
        if ev.HasField("summary")
        for v in ev.summary.value
        if v.tag in SKETCHES
    }
    # made beside `dest` and put in its place once complete: a run stopped midway, or one that
    # thins a shipped record in place (dest is run), leaves the record as it was; a link is
    # written through
    dest = dest.resolve() if dest.is_symlink() else dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    new.chmod(0o755)  # as a folder made by mkdir (mkdtemp's is the owner's alone)
    old = new.with_name(f"{new.name}.old")
    try:
        kept = _write(run, new, events, last_step, every)
        try:
            if dest.exists():
                dest.rename(old)
            new.rename(dest)
        except BaseException:  # stopped between the two: the record goes back in its place
            if old.exists() and not dest.exists():
                old.rename(dest)
            raise
        if old.exists():
            shutil.rmtree(old)
    finally:
        if new.exists():
            shutil.rmtree(new)
    return kept


def _write(run: Path, dest: Path, events: list, last_step: dict, every: int) -> dict[str, int]:
    """The filtered events and the run's files, into the empty folder `dest`."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(dest))
    kept: dict[str, int] = {}
    for ev in events:
        if ev.HasField("summary"):
            values = [
                v
                for v in ev.summary.value
                if v.tag not in FACE_IMAGES
                and (v.tag not in SKETCHES or ev.step % every == 0 or ev.step == last_step[v.tag])
            ]
            if not values:
                continue
            del ev.summary.value[:]
            ev.summary.value.extend(values)
            for v in values:
                kept[v.tag] = kept.get(v.tag, 0) + 1
        elif ev.HasField("file_version"):
            continue  # the writer starts its file with its own
        writer.add_event(ev)
    writer.close()
    for name in FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    return kept


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run folder, .../lightning_logs/version_N")
    p.add_argument("name", help="folder name under --logs, e.g. shipped_member_w160")
    p.add_argument("--every", type=int, default=5, help="keep confusion images of every N epochs")
    p.add_argument("--logs", type=Path, default=Path("lightning_logs"))
    args = p.parse_args()
    kept = ship(args.run, args.logs / args.name, args.every)
    size = sum(f.stat().st_size for f in (args.logs / args.name).iterdir())
    print(
        f"wrote {args.logs / args.name} ({size / 1e6:.2f} MB): {kept.get('val/acc', 0)} val/acc points, "
        f"{kept.get('val/confusion_matrix', 0)} confusion matrices, no face images"
    )


if __name__ == "__main__":
    main()
