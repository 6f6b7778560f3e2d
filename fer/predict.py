"""Predict emotions on photos or folders: `python -m fer.predict PATH... [--model M] [--no-detect]`.

Reads each photo upright (as its EXIF orientation says, the way phones store portraits), finds
every face from 40 px to one filling the photo (YuNet by default, or OpenCV's Haar cascade), levels
it by its eyes, crops it like the training images and prints the top emotions per face; `--json`
/ `--csv` write them for machines, `--save DIR` the photos with their faces drawn. A file that
cannot be read is one line on stderr and the others are still read; the exit code is then 1.
Everything goes through the Python API, fer.recognizer.EmotionRecognizer.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer.common import (
    EMOTIONS,
    PHOTO_EXTENSIONS,
    FerError,
    Parser,
    Stoppable,
    Terminated,
    add_debug_flag,
    add_model_options,
    atomic_path,
    check_outputs,
    counted,
    real_path,
    run_cli,
    to_uint8,
    write_target,
    write_text,
)
from fer.faces import add_face_options, add_photo_options, face_options_given


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m fer.predict", description="Predict facial emotions in images.")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="image files or folders (searched recursively, linked subfolders too)",
    )
    add_model_options(p)
    p.add_argument(
        "--no-detect",
        action="store_true",
        help="treat every image as one cropped face (like FER-2013)",
    )
    add_face_options(p)
    add_photo_options(p)
    p.add_argument("--top-k", type=int, default=3, help="how many emotions to print per face")
    p.add_argument(
        "--tta", default="none", choices=["none", "flip", "tencrop"], help="test-time augmentation"
    )
    p.add_argument(
        "--save",
        metavar="DIR",
        help="write a copy of each photo, upright, with its faces drawn (box, emotion, "
        "probability bars; with --no-detect, the emotion and bars at its top left where they "
        "leave the picture visible, a 48x48 crop copied as it is) into DIR, under the same names (GIF, PGM and such as NAME.png); "
        "DIR is marked as fer's when it starts empty, and a marked folder inside a folder read is "
        "left out; a file in DIR that is not marked fer's is never overwritten",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help="write results as JSON ('-' for stdout); a file is saved as the run goes (every "
        f"{SAVE_EVERY:.0f} s), so a run killed midway keeps what it read",
    )
    p.add_argument("--csv", metavar="FILE", help="write results as CSV ('-' for stdout), as --json")
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on with a run that stopped (Ctrl-C, killed, crashed): the photos --json FILE "
        "already holds are not read again, and FILE gets their records and the others'",
    )
    add_debug_flag(p)
    return p


NOT_A_FILE = "a pipe or a device, not a file: save the photo to a file first"


def gather(
    paths: Sequence[str], leave_out: str | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image file, its name under --save: the path below a folder given, or the file's name) for
    the files named or found under folders, apart from those in the folder `leave_out` (a --save
    folder of fer's own, drawn_into) when the walk comes upon it; and errors for paths that give
    none."""
    files, errors = [], []
    if "" in paths:  # Path("") would be this folder, read whole
        raise FerError("an empty path was given (an unset variable?); name photos or folders")
    for text in paths:
        p = Path(text)
        try:
            is_dir, is_file = p.is_dir(), p.is_file()
        except OSError as e:  # a name too long, a folder on the way that may not be entered
            errors.append(f"{p}: {e.strerror}")
            continue
        if is_dir:
            found, unread, drawn = images_under(p, leave_out=leave_out)
            errors += unread
            for folder in drawn:  # (fer's --save: a run with it leaves it out without a word)
                if not (leave_out and os.path.realpath(folder) == os.path.realpath(leave_out)):
                    print(
                        f"note: left out {folder}, the copies fer.predict --save drew there "
                        "(name it to read them)",
                        file=sys.stderr,
                    )
            if not found and not unread:
                errors.append(f"{p}: no images in this folder")
            files += [(f, f.relative_to(p)) for f in found]
        elif is_file:
            files.append((p, Path(p.name)))
        elif p.exists():  # /dev/stdin, a named pipe
            errors.append(f"{p}: {NOT_A_FILE}")
        else:
            errors.append(f"{p}: no such file or folder")
    # a photo named twice (a folder and a file in it, or a file and a link to it) is read once,
    # under its own name rather than a link's (link_a.jpg, first in name order, to a.jpg beside it)
    once: dict[Path, tuple[Path, Path]] = {}
    for f, n in files:
        key = real_path(f)
        if key not in once or (once[key][0].is_symlink() and not f.is_symlink()):
            once[key] = (f, n)
    return list(once.values()), errors


#: Marks a --save folder as fer's (written where the folder starts empty): a run with that
#: --save leaves it out of the folders it reads, and overwrites the copies in it.
SAVE_MARK = ".fer-predict-save"


def drawn_into(folder: Path) -> bool:
    """Whether --save FOLDER holds only what fer.predict drew (its mark), or nothing yet: the
    walk leaves it out. A folder of the user's own photos is read like any other, and a copy
    that would overwrite one of them is refused."""
    try:
        return (
            not folder.is_dir()
            or (folder / SAVE_MARK).is_file()
            # hidden files (a Finder's .DS_Store), which no walk reads, leave it empty
            or not any(not f.name.startswith(".") for f in folder.iterdir())
        )
    except OSError:
        return False


def images_under(
    folder: Path, leave_out: str | None = None
) -> tuple[list[Path], list[str], list[str]]:
    """(the photos in a folder and its subfolders, what could not be read there, the subfolders
    left out as fer.predict --save's): linked subfolders are read too (a library that links a
    folder in), each folder once: under its own path where the folder holds it, else through the
    first link to it in name order (a link back up the tree ends there). Hidden files and folders
    (a Mac's '._IMG_0001.JPG' metadata, .thumbnails) are left out, as are a subfolder that is the
    folder `leave_out` and one fer.predict --save marked as its own (SAVE_MARK: drawn copies read
    as photos would count each face twice). A folder that cannot be listed and a photo's name
    linked to nothing are errors."""
    found, links, errors, drawn = [], [], [], []
    seen = {os.path.realpath(leave_out)} if leave_out else set()
    seen.discard(os.path.realpath(folder))

    def unreadable(e: OSError) -> None:
        errors.append(f"{e.filename}: {e.strerror}")

    def walk(top: str, follow: bool) -> None:
        for root, dirs, names in os.walk(top, followlinks=follow, onerror=unreadable):
            real = os.path.realpath(root)
            if real in seen:
                dirs.clear()
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            marked = [d for d in dirs if os.path.isfile(os.path.join(root, d, SAVE_MARK))]
            drawn.extend(os.path.join(root, d) for d in marked)
            dirs[:] = [d for d in dirs if d not in marked]
            if not follow:  # the links are followed once every folder's own path is known
                links.extend(
                    os.path.join(root, d) for d in dirs if os.path.islink(os.path.join(root, d))
                )
            for n in names:
                path = Path(root) / n
                if path.suffix.lower() not in PHOTO_EXTENSIONS or n.startswith("."):
                    continue
                if path.is_file():
                    found.append(path)
                elif path.is_symlink() and not path.exists():
                    errors.append(f"{path}: a link to nothing")
                elif path.exists() and not path.is_dir():  # as when named (was: passed over)
                    errors.append(f"{path}: {NOT_A_FILE}")

    walk(str(folder), False)
    for link in sorted(links):
        walk(link, True)
    return sorted(found), errors, drawn


def save_paths(files: list[tuple[Path, Path]], folder: str, ours: bool) -> dict[Path, Path]:
    """Where --save writes each photo (a kind OpenCV does not write as itself, e.g. face.gif, as
    face.gif.png); refused before anything is read when that would overwrite a photo being read
    or a file in a folder not fer's (`ours`, drawn_into), give two photos one name (check_outputs
    refuses a FOLDER where no file can be made; each copy makes the folders it goes in as it is
    written)."""
    out, taken = {}, {}
    inputs = {real_path(f) for f, _ in files}
    for f, name in files:
        path = Path(folder) / name
        if path.suffix.lower() not in SAVE_AS:  # face.gif -> face.gif.png, apart from face.png
            path = path.with_name(path.name + ".png")
        key = real_path(path)
        if key in inputs or (not ours and os.path.lexists(path)):
            hint = (
                ""
                if ours
                else f"; or, if the folder holds only copies an earlier fer drew, delete them or "
                f"create {SAVE_MARK} in it"
            )
            if key in inputs:
                what = f"the photo {path}, which it reads"
            else:
                what = f"{path}, which is not marked as a copy fer drew (no {SAVE_MARK} there)"
            raise FerError(f"--save {folder} would overwrite {what}; choose another folder{hint}")
        if key in taken:
            raise FerError(
                f"--save {folder}: {taken[key]} and {f} would both be saved as {path}; give "
                "their common folder, or save them one folder at a time"
            )
        out[f], taken[key] = path, f
    return out


def _progress(total: int):
    """A progress bar on stderr over many photos (none for a few, nor when stderr is no terminal)."""
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)
    return lambda items: track(
        items,
        total=total,
        description="reading photos",
        transient=True,
        console=console,
        disable=total < 20 or not console.is_terminal,
    )


#: Seconds between two saves of --json and --csv files while photos are read.
SAVE_EVERY = 30.0


def records_to_resume(args: argparse.Namespace) -> list[dict]:
    """--resume: the records of the --json file a stopped run wrote (none when the file is not
    there yet). A file that is not a list of such records is refused."""
    if not args.resume:
        return []
    if args.json in (None, "-"):
        raise FerError("--resume reads back --json FILE: give the file the stopped run wrote")
    path = Path(args.json)
    if not path.exists():
        print(f"{path} is not there yet: reading every photo", file=sys.stderr)
        return []
    try:
        records = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
        if not (isinstance(records, list) and all(map(is_record, records))):
            raise ValueError("not a list of the records of faces")
    except (OSError, ValueError) as e:
        raise FerError(
            f"--resume: {path} is not what fer.predict --json writes ({e}); name another file"
        ) from None
    # the records say whether the stopped run looked for faces: a mix would read as one run's
    faced = {isinstance(r["box"], list) for r in records if "note" not in r}
    if faced and faced != {not args.no_detect}:
        how = "with --no-detect" if args.no_detect else "without --no-detect"
        then = "looked for faces" if True in faced else "read whole images (--no-detect)"
        raise FerError(
            f"--resume: the run that wrote {path} {then}; this one is {how}: resume it with the "
            "options it was run with"
        )
    return records


def is_record(r: object) -> bool:
    """Whether `r` is a record as fer.predict --json writes them: a face of a photo, with its box
    (None with --no-detect) and probabilities, or a photo's note (no face found)."""
    number = (int, float)
    if not (isinstance(r, dict) and isinstance(r.get("file"), str) and "box" in r):
        return False
    box = r["box"]
    if not (box is None or isinstance(box, list) and len(box) == 4):
        return False
    if "note" in r:
        return True
    probs = r.get("probabilities")
    return (
        r.get("emotion") in EMOTIONS
        and isinstance(r.get("confidence"), number)
        and isinstance(probs, dict)
        and sorted(probs) == sorted(EMOTIONS)
        and all(isinstance(v, number) for v in probs.values())
    )


def changed_since(path: str | Path, time_ns: int) -> bool:
    """Whether the file was written, or put in its place, after `time_ns`: by its time of change
    as well as of modification, as a file moved or copied with its times (mv, cp -p, rsync -a,
    unzip) keeps an older time of modification. False for a file gone (its reading says so)."""
    try:
        found = os.stat(path)
    except OSError:
        return False
    return max(found.st_mtime_ns, found.st_ctime_ns) > time_ns


class Earlier:
    """The records of a stopped run (--resume), by photo. A photo of this run is one of them
    when the stopped run gave it the same name, or a name that leads to the same file from this
    folder or from the JSON file's folder (the arguments given from another folder), and the
    photo has not changed since the JSON file was last written (one replaced or edited since is
    read again, its old records dropped; those of one not given that changed are dropped too,
    as the file this run writes would hide the change)."""

    def __init__(self, records: list[dict], json_file: str | None = None):
        self.by_name: dict[str, list[dict]] = {}
        for r in records:
            self.by_name.setdefault(r["file"], []).append(r)
        self.json_file = json_file
        self.names: dict[Path, str] = {}
        self.taken: set[str] = set()

    def match(self, photos: list[Path]) -> None:
        """Find the records of these photos; refused when there are records and none is theirs
        (other photos, or named from a folder that cannot be told), as rewriting the file with
        these photos' records alone would lose them."""
        if not self.by_name:
            return
        bases = [Path.cwd(), real_path(self.json_file).parent]
        places = {real_path(base / name): name for name in self.by_name for base in bases[::-1]}
        written = os.stat(self.json_file).st_mtime_ns  # its last save
        used: set[str] = set()
        for photo in photos:
            name = str(photo) if str(photo) in self.by_name else places.get(real_path(photo))
            if name is not None and name not in used:
                used.add(name)
                if changed_since(photo, written):  # its records are another photo's
                    self.taken.add(name)
                else:
                    self.names[photo] = name
        if stale := len(used) - len(self.names):
            print(
                f"note: {counted(stale, 'photo')} changed since {self.json_file} was written: "
                "read again",
                file=sys.stderr,
            )
        # a photo not given, where each file its name may lead to changed (not one elsewhere)
        others: dict[str, list[Path]] = {}
        for path, name in places.items():
            if name not in used and os.path.exists(path):  # (False for any error)
                others.setdefault(name, []).append(path)
        if dropped := [
            n for n, paths in others.items() if all(changed_since(p, written) for p in paths)
        ]:
            self.taken.update(dropped)
            print(
                f"note: {counted(len(dropped), 'photo')} not given changed since "
                f"{self.json_file} was written: {'its' if len(dropped) == 1 else 'their'} "
                "records dropped, to be read by a run given them",
                file=sys.stderr,
            )
        if not used:
            raise FerError(
                f"--resume: none of the {len(self.by_name)} photos of {self.json_file} is among "
                "those given; give the photos the stopped run was given, from the folder it ran "
                "in, or name another --json file"
            )

    def take(self, photo: Path) -> list[dict]:
        """The photo's records, named as this run names it; none if the run did not read it."""
        name = self.names.get(photo)
        if name is None:
            return []
        self.taken.add(name)
        return [{**r, "file": str(photo)} for r in self.by_name[name]]

    def left(self) -> list[dict]:
        """The records of the photos this run has not come to (or was not given): kept, not lost
        with the file rewritten."""
        return [r for name, rs in self.by_name.items() if name not in self.taken for r in rs]


#: Kinds of file that may hold several pictures (pages of a TIFF, frames of an animation), of
#: which fer reads the first, as OpenCV decodes them.
SEVERAL_PICTURES = {".tif", ".tiff", ".gif", ".webp", ".png", ".apng"}


def page_count(path: Path) -> int:
    """How many pages or frames the file holds, by Pillow's reading of its header (1 where it
    cannot tell)."""
    if path.suffix.lower() not in SEVERAL_PICTURES:
        return 1
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(getattr(image, "n_frames", 1))
    except Exception:  # (Pillow's many errors on a file OpenCV read): it cannot tell
        return 1


#: What --save writes for each input type: the same kind of file, where OpenCV writes it.
SAVE_AS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def save_annotated(pixels: np.ndarray, faces, path: Path) -> None:
    """The photo, upright, as 8-bit BGR with its faces drawn as fer.detect draws a frame, written
    atomically."""
    import cv2

    from fer.annotate import draw

    image = to_uint8(pixels)
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image[:, :, :3].copy()
    draw(image, faces)
    ok, data = cv2.imencode(path.suffix, image)
    if not ok:
        raise FerError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise FerError("--top-k must be at least 1")
    if args.no_detect and (unused := face_options_given(args)):
        raise FerError(
            f"--no-detect reads each image as one face, so {' and '.join(unused)} "
            f"{'has' if len(unused) == 1 else 'have'} nothing to do: give one or the other"
        )
    # a --save folder that is fer's (marked, or starting empty): left out of the folders read,
    # its copies replaced, and marked; a folder of the user's own files takes copies of new names
    ours = bool(args.save) and drawn_into(Path(args.save))
    files, errors = gather(args.paths, args.save if ours else None)
    if not files and errors:  # nothing to read: said before any output is written over
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise FerError(f"{errors[0]}{more}; no photo to read")
    check_outputs(
        {"--json": args.json, "--csv": args.csv}, (f for f, _ in files), {"--save": args.save}
    )
    earlier = Earlier(records_to_resume(args), args.json)
    earlier.match([f for f, _ in files])
    saves = save_paths(files, args.save, ours) if args.save else {}
    mark = Path(args.save) / SAVE_MARK if ours else None
    from fer.inference import FLIP_ADDS_NOTHING
    from fer.recognizer import EmotionRecognizer, as_image

    rec = EmotionRecognizer(
        args.model,
        detector=None if args.no_detect else args.detector,
        min_face=args.min_face,
        align=not args.no_align,
        jitter=not args.no_jitter,
        backend=args.backend,
        tta=args.tta,
    )
    source = {"detector": rec.detector_name} if rec.detector_name else {}
    records: list[dict] = []
    notes: list[str] = []  # said with the errors, after the run
    if args.tta == "flip" and rec.classifier.spec.options.get("flip"):
        notes.append(FLIP_ADDS_NOTHING)
    pending: list[tuple[list[dict], list, np.ndarray, np.ndarray, Path]] = []
    read = resumed = 0
    saved = time.monotonic()

    def flush() -> None:
        """Classify the faces of the pending images in one batch (the model is fastest on many
        faces at once), fill in their records and, with --save, draw them."""
        if not pending:
            return
        probs = rec.classify(np.concatenate([crops for _, _, crops, _, _ in pending]))
        done = 0
        for image_records, faces, crops, pixels, photo in pending:
            results = rec.describe(faces, probs[done : done + len(crops)])
            done += len(crops)
            for record, face in zip(image_records, results):
                record.update(face.to_dict())
            save(pixels, results, photo)
        pending.clear()

    def save(pixels: np.ndarray, faces: list, photo: Path) -> None:
        if args.save:
            try:
                if mark is not None and not mark.is_file():
                    mark.parent.mkdir(parents=True, exist_ok=True)
                    mark.write_text("annotated copies made by python -m fer.predict --save\n")
                save_annotated(pixels, faces, saves[photo])
            except (FerError, OSError) as e:  # the photo's results still count; its copy does not
                errors.append(f"{photo}: annotated copy not saved: {e}")

    def take(f: Path) -> None:
        """Read one photo (or take its records from the run resumed) and find its faces; they
        are classified with those of other photos, in flush."""
        nonlocal read, resumed
        done_before = earlier.take(f)
        if done_before and (not args.save or saves[f].exists()):  # its copy drawn, if asked
            records.extend(done_before)
            resumed += 1
            return
        try:
            pixels = as_image(f)
            if (pages := page_count(f)) > 1:
                notes.append(f"{f} holds {pages} pages or frames: the first is read")
            faces, crops = rec.locate(pixels)
        except (FerError, OSError) as e:
            errors.append(f"{e}, skipped")
            return
        except Exception as e:  # a fault nobody foresaw costs one photo, not the library
            if args.debug:
                raise
            errors.append(
                f"{f}: failed with {type(e).__name__}: {e}, skipped (--debug shows where)"
            )
            return
        read += 1
        if not faces:
            records.append({"file": str(f), "box": None, "note": "no face found"})
            save(pixels, [], f)
            return
        image_records = [{"file": str(f), **source} for _ in faces]
        # pending first: a stop between the two leaves the photo out, not records without faces
        pending.append((image_records, faces, crops, pixels if args.save else None, f))
        records.extend(image_records)

    progress = _progress(len(files))
    why = ""  # what stopped the run, if anything did
    stopped = done = 0  # photos gone through (read, resumed or failed): their results are kept
    save_failed = False  # a periodic save failed (said once)
    with Stoppable() as run:
        try:
            for i, (f, _) in enumerate(progress(files)):
                if time.monotonic() - saved >= SAVE_EVERY:  # a run killed keeps what it read
                    flush()
                    try:
                        # those resumed not come to; a pipe or a stream only once, at the end
                        if so_far := records + earlier.left():
                            save_files(args, so_far, files_only=True)
                    except FerError as e:  # a full disk, say: the run goes on, and tries again
                        if not save_failed:
                            print(f"warning: {e}; the run goes on", file=sys.stderr)
                        save_failed = True
                    saved = time.monotonic()
                take(f)
                done = i + 1  # what flush is stopped in, the flush after the stop completes
                if args.save or sum(len(c) for _, _, c, _, _ in pending) >= 256:
                    flush()  # a decoded photo is not kept waiting for others
            flush()
        except (KeyboardInterrupt, Terminated) as e:
            stopped, why = (e.code, e.name) if isinstance(e, Terminated) else (130, "Ctrl-C")
        # a library read for an hour keeps its results: the photos read are written, whatever
        # arrives now (a second Ctrl-C, SIGTERM)
        run.finishing()
        flush()
        if kept := earlier.left():
            records += kept
            names = len({r["file"] for r in kept})
            print(
                f"{args.json} also keeps the records of {names} photos of the run resumed that "
                "this one did not come to",
                file=sys.stderr,
            )
        write_results(args, records, errors, notes)
    n_faces = sum("emotion" in r for r in records)
    print(
        f"{counted(n_faces, 'face')} in {counted(read + resumed, 'image')}"
        + (f" ({resumed} read by the run resumed)" if resumed else "")
        + (f", {counted(len(errors), 'error')}" if errors else ""),
        file=sys.stderr,
    )
    if not records and (named := [o for o in (args.json, args.csv) if o not in (None, "-")]):
        print(f"no photo was read: {' and '.join(named)} not written", file=sys.stderr)
    if stopped:
        print(
            f"stopped by {why} after {done} of {len(files)} photos; the results of those read are "
            "written",
            file=sys.stderr,
        )
        return stopped
    if not files and not errors:
        raise FerError("no images given")
    return 1 if errors else 0


def write_results(
    args: argparse.Namespace, records: list[dict], errors: list[str], notes: Sequence[str] = ()
) -> None:
    """The notes and errors, then each face's line (on stderr when stdout carries --json or
    --csv), and the --json and --csv files, where there is a record to write."""
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    try:
        print_results(args, records)
    finally:  # also when the reader of stdout left early (`| head`): the files are written
        if records:  # (none: every photo failed, and files of an earlier run are left as they are)
            save_files(args, records)


def print_results(args: argparse.Namespace, records: list[dict]) -> None:
    """Each face's line (on stderr when stdout carries --json or --csv), and --json or --csv
    given as '-'."""
    machine_stdout = "-" in (args.json, args.csv)
    out = sys.stderr if machine_stdout else sys.stdout
    for r in records:
        where = "" if r["box"] is None else " [x={} y={} w={} h={}]".format(*r["box"])
        if "note" in r:
            print(f"{r['file']}: {r['note']}", file=out)
            continue
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[: args.top_k]
        print(
            f"{r['file']}{where}: {r['emotion']} {r['confidence']:.2f}  ("
            + ", ".join(f"{k} {v:.2f}" for k, v in top)
            + ")",
            file=out,
        )
    if args.json == "-":
        sys.stdout.write(json_text(records))
    if args.csv == "-":
        sys.stdout.write(csv_text(records))


def save_files(args: argparse.Namespace, records: list[dict], files_only: bool = False) -> None:
    """The --json and --csv files (not stdout), each written whole or not at all; `files_only`:
    not a pipe, a device or a stream, which takes the records once (the saves as photos are
    read would each add a copy, and a named pipe's reader leaves at the first)."""
    for path, text in ((args.json, json_text), (args.csv, csv_text)):
        if path not in (None, "-") and not (files_only and write_target(path)[1]):
            write_text(path, text(records))


def json_text(records: list[dict]) -> str:
    return json.dumps(records, indent=2) + "\n"


def csv_text(records: list[dict]) -> str:
    """A row a face (or a photo with none: its note), with its box and every probability."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "x", "y", "w", "h", "emotion", "confidence", *EMOTIONS])
    for r in records:
        box = r["box"] or ["", "", "", ""]
        probs_row = [r["probabilities"][e] for e in EMOTIONS] if "probabilities" in r else [""] * 7
        w.writerow(
            [
                r["file"],
                *box,
                r.get("emotion", r.get("note", "")),
                r.get("confidence", ""),
                *probs_row,
            ]
        )
    return buf.getvalue()


if __name__ == "__main__":
    run_cli(main)
