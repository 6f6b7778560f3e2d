"""FER-2013 readers (Kaggle CSV variants and folder layout), the split rules, the cache and the DataModule.

Every source is decoded once into one in-memory uint8 tensor of 48x48 faces and cached on disk,
keyed by the source files, so later runs reload it in well under a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shlex
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Sampler

from fer.augment import augment_batch
from fer.choices import DEFAULT_SEED, DEFAULT_VAL_FRACTION, EVAL_BATCH_SIZE, PRESETS
from fer.common import (
    EMOTIONS,
    IMAGE_SIZE,
    NUM_CLASSES,
    FerError,
    atomic_path,
    counted,
    file_sha256,
    normalize,
    read_image,
    to_face48,
)

log = logging.getLogger(__name__)

#: Per-sample origin codes. The first three are Kaggle's `Usage` values; the last two mark
#: samples from a train/ or test/ folder (or train.csv / test.csv) that carry no Usage marker.
USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest", "train", "test")
TRAINING, PUBLIC_TEST, PRIVATE_TEST, UNMARKED_TRAIN, UNMARKED_TEST = range(5)
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv", "train.csv")
CACHE_VERSION = "3"
HOW_TO_GET = (
    "leave out --data to download FER-2013 into data/fer2013 (or run python -m fer.data download), "
    "or pass --data PATH to a fer2013.csv or a msambare/fer2013 folder"
)


@dataclass
class FerData:
    """All faces of one source: images (N, 48, 48) uint8, labels (N,), usage codes (N,), names."""

    images: torch.Tensor
    labels: torch.Tensor
    usage: torch.Tensor
    names: list[str]
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # files that are not readable images
    nonstandard: dict[str, str] = field(
        default_factory=dict
    )  # name -> original "HxWxC" when not 48x48x1

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> FerData:
        index = torch.as_tensor(index, dtype=torch.long)
        names = [self.names[i] for i in index.tolist()]
        return FerData(
            self.images[index], self.labels[index], self.usage[index], names, self.source
        )


# ---------------------------------------------------------------------------------------------
# Locating the data


def resolve_source(path: str | Path) -> tuple[str, list[Path]]:
    """Find FER-2013 at `path`: ('csv', [files]) or ('folder', [root])."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise FerError(f"{p} is not a CSV file; --data takes a FER-2013 CSV or folder")
        files = [p]
        if p.name.lower() == "train.csv":  # its test.csv, however either is capitalised
            files += [f for f in sorted(p.parent.iterdir()) if f.name.lower() == "test.csv"][:1]
        return "csv", files
    if p.is_dir():
        csvs = {f.name.lower(): f for f in sorted(p.iterdir()) if f.is_file()}  # FER2013.csv too
        for name in CSV_NAMES:
            if name in csvs:
                return resolve_source(csvs[name])
        if split_folders(p):
            return "folder", [p]
        raise FerError(
            f"no FER-2013 data in {p}: expected one of {', '.join(CSV_NAMES)} or train/<emotion>/ "
            f"and test/<emotion>/ folders; {HOW_TO_GET}"
        )
    raise FerError(f"data path {p} does not exist; {HOW_TO_GET}")


#: Split folders of other layouts, which fer does not read: a warning names them.
OTHER_SPLIT_FOLDERS = ("val", "valid", "validation", "dev", "eval")


def encloses(folder: str | Path, inner: str | Path) -> bool:
    """Whether `folder` (links followed) is `inner` or holds it: a link to it from inside
    `inner` goes back up the tree."""
    outer, inner = os.path.realpath(folder), os.path.realpath(inner)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def split_folders(root: Path) -> dict[str, Path]:
    """The train/ and test/ folders of a folder dataset, their names matched case-insensitively
    (Train/, TEST/), by split."""
    found = {}
    for d in sorted(root.iterdir()):
        if d.name.lower() in ("train", "test") and d.is_dir():
            first = found.setdefault(d.name.lower(), d)  # a link to the other one: read once
            if os.path.realpath(first) != os.path.realpath(d):
                raise FerError(
                    f"two {d.name.lower()} folders in {root}: {first.name}/ and {d.name}/; move "
                    "their faces into one"
                )
    return found


def _folder_files(root: Path) -> list[tuple[str, int, int, int]]:
    """(relative path, label, size, mtime_ns) of every file in root/{train,test}/<emotion>/;
    hidden folders and files (.ipynb_checkpoints, .DS_Store) are passed over."""
    lookup = {name: i for i, name in enumerate(EMOTIONS)}
    entries, unknown = [], []
    for d in sorted(root.iterdir()):
        if d.name.lower() in OTHER_SPLIT_FOLDERS and d.is_dir():
            log.warning(
                f"{d} is not read: fer reads a folder dataset's train/ and test/ (Kaggle's "
                "layout); move its faces into one of them to use them"
            )
    for top in split_folders(root).values():
        for cls_dir in sorted(d for d in top.iterdir() if d.is_dir()):
            if cls_dir.name.startswith("."):
                continue
            label = lookup.get(cls_dir.name.lower())
            if label is None:
                unknown.append(f"{top.name}/{cls_dir.name}")
                continue
            seen = set()  # linked folders are followed, each once
            for dirpath, dirs, files in os.walk(cls_dir, followlinks=True):
                here = os.path.realpath(dirpath)
                if here in seen:
                    dirs[:] = []
                    continue
                seen.add(here)
                dirs[:] = [
                    d
                    for d in dirs
                    if not d.startswith(".") and not encloses(os.path.join(dirpath, d), cls_dir)
                ]
                for f in sorted(files):
                    if f.startswith("."):
                        continue
                    full = os.path.join(dirpath, f)
                    try:
                        st = os.stat(full)
                        size, mtime = st.st_size, st.st_mtime_ns
                    except OSError:  # a broken link, say: skipped as unreadable when decoded
                        size, mtime = -1, 0
                    entries.append((os.path.relpath(full, root), label, size, mtime))
    if unknown:
        raise FerError(
            f"unknown class folders in {root}: {', '.join(unknown)}; folders must be named "
            f"{', '.join(EMOTIONS)}"
        )
    return entries


def _cache_key(kind: str, files: list[Path], entries: list | None) -> str:
    h = hashlib.sha1(f"{CACHE_VERSION}|{kind}".encode())
    for f in files:  # a name that is not UTF-8 (surrogates in Python) hashed as its bytes
        st = f.stat()
        h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode(errors="surrogateescape"))
    for e in entries or ():
        h.update(f"|{e[0]}|{e[2]}|{e[3]}".encode(errors="surrogateescape"))
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    """FER_CACHE, or ~/.cache/fer where it is unset or empty (an unset shell variable: not ./)."""
    return Path(os.environ.get("FER_CACHE") or Path.home() / ".cache" / "fer")


def cache_folder(cache_dir: str | Path | None) -> Path:
    """The cache folder --cache-dir names, or the default where it names none ('' too: an unset
    shell variable would put the decoded faces in ./)."""
    return Path(cache_dir) if cache_dir not in (None, "") else default_cache_dir()


# ---------------------------------------------------------------------------------------------
# Decoding


def _usage_from_name(name: str, split_folder: str) -> int:
    """A folder dataset's file's usage code: its folder decides train or test, and its Kaggle
    prefix, where it is one of that folder's, which (Training_ in train/; PublicTest_ or
    PrivateTest_ in test/). A file moved to the other folder (faces a user holds out) goes with
    the folder it is in, unmarked."""
    base = os.path.basename(name)
    train = split_folder.lower() == "train"
    for code in (TRAINING,) if train else (PUBLIC_TEST, PRIVATE_TEST):
        if base.startswith(USAGES[code] + "_"):
            return code
    return UNMARKED_TRAIN if train else UNMARKED_TEST


def check_unreadable(bad: list[str], strict: bool) -> None:
    """Files of a folder dataset that did not decode: an error with --strict, else a warning."""
    if not bad:
        return
    if strict:
        raise FerError(
            f"{len(bad)} files are not readable images, first {bad[0]}; remove them or drop --strict"
        )
    log.warning("skipped %d files that are not readable images (first: %s)", len(bad), bad[0])


def read_folder(root: Path, entries: list, strict: bool = False) -> FerData:
    """Decode root/{train,test}/<emotion>/* into a FerData; undecodable files are skipped."""
    if not entries:
        raise FerError(f"no image files under {root}/train or {root}/test; {HOW_TO_GET}")

    def decode(entry):
        img = read_image(root / entry[0])
        return None if img is None else (to_face48(img), img.shape, img.dtype.itemsize)

    from rich.progress import track

    with ThreadPoolExecutor(max(os.cpu_count() or 1, 2)) as pool:
        faces = list(
            track(
                pool.map(decode, entries, chunksize=256),
                total=len(entries),
                description=f"decoding {len(entries)} files",
                transient=True,
                disable=len(entries) < 2000,
            )
        )
    keep = [i for i, f in enumerate(faces) if f is not None]
    bad = [entries[i][0] for i, f in enumerate(faces) if f is None]
    check_unreadable(bad, strict)
    if not keep:
        raise FerError(f"no readable images under {root}; {HOW_TO_GET}")
    images = torch.from_numpy(np.stack([faces[i][0] for i in keep]))
    names = [entries[i][0] for i in keep]
    odd = {  # not 48x48, 8-bit and single-channel: "96x96x3", "48x48 16-bit"
        entries[i][0]: "x".join(map(str, shape)) + (f" {8 * depth}-bit" if depth > 1 else "")
        for i in keep
        for _, shape, depth in [faces[i]]
        if shape not in ((IMAGE_SIZE, IMAGE_SIZE), (IMAGE_SIZE, IMAGE_SIZE, 1)) or depth > 1
    }
    labels = torch.tensor([entries[i][1] for i in keep], dtype=torch.long)
    usage = torch.tensor([_usage_from_name(n, Path(n).parts[0]) for n in names], dtype=torch.uint8)
    return FerData(images, labels, usage, names, str(root), skipped=bad, nonstandard=odd)


def csv_line(path: Path, row: int) -> int:
    """The line number (from 1) in a CSV file of its `row`th data row (from 0) as pandas reads
    it: after the header, blank lines (and lines of spaces) left out. For messages only: it reads
    the file again."""
    seen = -2  # the header is row -1
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == row:
                    return number
    return number


def _parse_pixels(pixels: pd.Series, source: Path) -> np.ndarray:
    """Space-separated pixel strings -> (N, 48, 48) uint8, without a Python loop per pixel."""
    n, size = len(pixels), IMAGE_SIZE * IMAGE_SIZE
    text = pixels.astype(str)
    grid = None
    try:  # numpy's C text parser: about 2 s for the full 35,887-row CSV
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # each row ends with -1, so that a row of one value too few beside one of one too
            # many (the total right) does not shift every face after them by a pixel; 64 bits,
            # where 2**32 would wrap round to 0 at 32 (larger values stop at 2**63 - 1: refused
            # below all the same), twice the memory but faster than a search of the text for them
            flat = np.fromstring(" -1 ".join(text.tolist()) + " -1", dtype=np.int64, sep=" ")
        if flat.size == n * (size + 1):
            grid = flat.reshape(n, size + 1)
    except ValueError:
        pass
    if (
        grid is None
        or (grid[:, size] != -1).any()
        or (n and (grid[:, :size].min() < 0 or grid[:, :size].max() > 255))
    ):
        for row, s in enumerate(text):  # slow path, only to name the bad row
            parts = s.split()
            if len(parts) != size:
                raise FerError(
                    f"{source} line {csv_line(source, row)}: {len(parts)} pixel values, "
                    f"expected {size}"
                )
            if not all(p.isascii() and p.isdigit() and int(p) <= 255 for p in parts):
                raise FerError(
                    f"{source} line {csv_line(source, row)}: pixels must be integers 0..255"
                )
        # every row is right, in a form the fast parser took otherwise (none, say): row by row
        grid = np.array([s.split() for s in text], dtype=np.int32).reshape(n, size)
    return grid[:, :size].astype(np.uint8).reshape(n, IMAGE_SIZE, IMAGE_SIZE)


def header_for(first_line: Sequence[str]) -> str:
    """The end of the error for a CSV whose first line is a face (read as the names of its
    columns): the header line to add, each column named by what its first value is."""

    def name(value: str) -> str | None:
        if len(value.split()) == IMAGE_SIZE * IMAGE_SIZE:
            return "pixels"
        if value.strip() in {str(k) for k in range(NUM_CLASSES)}:
            return "emotion"
        if value.strip().lower() in {u.lower() for u in USAGES}:
            return "Usage"
        return None

    names = [name(v) for v in first_line]
    if "emotion" not in names:
        return (
            " and no emotions: fer reads faces with their emotions (a header line "
            "emotion,pixels or emotion,pixels,Usage)"
        )
    if None in names:
        return ": add a line naming its columns (emotion, pixels and optionally Usage) at its top"
    return f": add the line {','.join(names)} at its top"


def read_csv(files: list[Path]) -> FerData:
    """Read fer2013.csv, icml_face_data.csv, or train.csv (+ test.csv) into a FerData."""
    parts = []
    for f in files:
        try:
            df = pd.read_csv(f, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError as e:
            raise FerError(f"{f} is empty; {HOW_TO_GET}") from e
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise FerError(f"{f} is not a readable CSV ({str(e).splitlines()[0]})") from e
        df.columns = [c.strip().lower() for c in df.columns]  # Kaggle's emotion, pixels, Usage
        if df.columns.duplicated().any():
            raise FerError(f"{f} has two columns of one name: {', '.join(df.columns)}")
        if "pixels" not in df.columns or (
            "emotion" not in df.columns and f.name.lower() != "test.csv"
        ):
            if any(len(c.split()) == IMAGE_SIZE * IMAGE_SIZE for c in df.columns):
                raise FerError(
                    f"{f} has no header line (its first line is a face){header_for(df.columns)}"
                )
            names = ", ".join(c if len(c) <= 40 else f"{c[:37]}..." for c in df.columns[:10])
            more = f" and {len(df.columns) - 10} more" if len(df.columns) > 10 else ""
            raise FerError(
                f"{f} needs the columns emotion and pixels (and optionally Usage); it has "
                f"{names}{more}"
            )
        if "emotion" not in df.columns:
            log.warning("%s has no emotion column (Kaggle's unlabelled test file): not used", f)
            continue
        if df.empty:
            raise FerError(f"{f} has a header but no rows; {HOW_TO_GET}")
        emotion = pd.to_numeric(df["emotion"].str.strip(), errors="coerce")
        bad = emotion.isna() | (emotion < 0) | (emotion >= NUM_CLASSES) | (emotion % 1 != 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise FerError(
                f"{f} line {csv_line(f, row)}: emotion {df['emotion'].iloc[row]!r} is not a "
                f"label 0..{NUM_CLASSES - 1}"
            )
        # the pixels first: a file cut short ends inside them (its last Usage then empty)
        images = _parse_pixels(df["pixels"], f)
        if "usage" in df.columns:
            usage_text = df["usage"].str.strip()
            codes = usage_text.str.lower().map({u.lower(): i for i, u in enumerate(USAGES[:3])})
            if codes.isna().any():
                row = int(np.flatnonzero(codes.isna().to_numpy())[0])
                raise FerError(
                    f"{f} line {csv_line(f, row)}: Usage {usage_text.iloc[row]!r} is not "
                    "Training, PublicTest or PrivateTest"
                )
            usage = codes.to_numpy(np.uint8)
        else:
            code = UNMARKED_TEST if f.name.lower() == "test.csv" else UNMARKED_TRAIN
            usage = np.full(len(df), code, np.uint8)
        names = [f"{f.name}:{i}" for i in range(len(df))]
        parts.append((images, emotion.to_numpy(np.int64), usage, names))
    if not parts:
        raise FerError(f"no labelled rows in {', '.join(map(str, files))}; {HOW_TO_GET}")
    return FerData(
        torch.from_numpy(np.concatenate([p[0] for p in parts])),
        torch.from_numpy(np.concatenate([p[1] for p in parts])),
        torch.from_numpy(np.concatenate([p[2] for p in parts])),
        [n for p in parts for n in p[3]],
        str(files[0]),
    )


def load_fer(
    path: str | Path, cache_dir: str | Path | None = None, strict: bool = False
) -> FerData:
    """Load FER-2013 from a CSV or folder, through an on-disk cache keyed by the source files."""
    kind, files = resolve_source(path)
    entries = _folder_files(files[0]) if kind == "folder" else None
    key = _cache_key(kind, files, entries)
    cache = cache_folder(cache_dir)
    cache_file = cache / f"{files[0].stem}-{key}.safetensors"
    marker = cache_file.with_name(cache_file.name + ".decoding")
    if _local_rank() > 0:  # other processes of a multi-process run on this machine
        _wait_for(cache_file, marker)
    if cache_file.is_file():
        try:
            with safe_open(cache_file, "pt") as f:
                t = {k: f.get_tensor(k) for k in ("images", "labels", "usage")}
                meta = f.metadata()
            data = FerData(
                t["images"],
                t["labels"],
                t["usage"],
                json.loads(meta["names"]),
                str(path),
                json.loads(meta["skipped"]),
                json.loads(meta["nonstandard"]),
            )
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
            log.warning("cache %s is unreadable (%s): rebuilding it", cache_file, e)
        else:
            check_unreadable(data.skipped, strict)  # the same answer as reading the files
            return data
    try:  # tells the other local processes that this one is decoding (see _wait_for)
        cache.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass
    try:
        data = read_csv(files) if kind == "csv" else read_folder(files[0], entries, strict)
        log.info("decoded %d faces from %s", len(data), path)
        data.source = str(path)
        try:
            with atomic_path(cache_file) as tmp:
                tensors = {"images": data.images, "labels": data.labels, "usage": data.usage}
                meta = {
                    k: json.dumps(getattr(data, k)) for k in ("names", "skipped", "nonstandard")
                }
                save_file(tensors, str(tmp), metadata=meta)
        except (FerError, SafetensorError) as e:  # a read-only or full cache only costs speed
            log.warning("could not cache the decoded data: %s", e)
    finally:
        marker.unlink(missing_ok=True)
    return data


def _local_rank() -> int:
    """This process's rank on its machine in a multi-process run (torchrun, Lightning, SLURM)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")) or 0)


def _wait_for(cache_file: Path, marker: Path, start_grace: float = 10.0, limit: float = 1800.0):
    """Let local rank 0 decode the data and write the cache once: wait while it is decoding (its
    marker file exists), or briefly for it to begin; then the cache is read, or, if rank 0 could
    not write one, decoded here after all."""
    start = time.monotonic()
    while not cache_file.is_file():
        waited = time.monotonic() - start
        if waited > limit or (not marker.exists() and waited > start_grace):
            return
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Split rules


def stratified_holdout(
    labels: torch.Tensor, among: torch.Tensor, fraction: float, seed: int
) -> torch.Tensor:
    """Boolean mask picking round(fraction * n_c) of the `among` samples of every class c, and at
    least one of a class of two or more (a small dataset still validates on every class),
    reproducibly."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels[among].unique():
        idx = torch.nonzero((labels == c) & among).flatten()
        k = max(int(round(fraction * len(idx))), int(len(idx) >= 2))
        mask[idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return mask


def usage_of_test(usage) -> int:
    """The origin code of the test split's faces: PrivateTest where there is any (test/ faces
    without a prefix beside them are in no split), else those of test/ or test.csv."""
    return PRIVATE_TEST if (usage == PRIVATE_TEST).any() else UNMARKED_TEST


def split_indices(
    data: FerData, val_fraction: float = 0.1, seed: int = 0
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The canonical split: Training -> train, PublicTest -> val, PrivateTest -> test.

    Without Usage markers, val is a seeded stratified fraction of train and test is the test
    folder (or test.csv). Returns index tensors per split and notes worth telling the user.
    """
    u, notes = data.usage, []
    train = (u == TRAINING) | (u == UNMARKED_TRAIN)
    public = bool((u == PUBLIC_TEST).any())
    if public:
        val = u == PUBLIC_TEST
    else:
        val = stratified_holdout(data.labels, train, val_fraction, seed)
        train &= ~val
        notes.append(
            f"no PublicTest samples: validating on a stratified {val_fraction:.0%} of train (seed {seed})"
        )
    test_code = usage_of_test(u)
    test = u == test_code
    if test_code == PRIVATE_TEST:
        if left := int((u == UNMARKED_TEST).sum()):
            notes.append(
                f"{counted(left, 'face')} of test/ without a PublicTest_ or "
                "PrivateTest_ prefix in no split: the test split is the PrivateTest faces"
            )
    elif not test.any():
        held_out = "PublicTest" if public else "held out from train"
        notes.append(f"no PrivateTest samples: there is no test split (validation is {held_out})")
    splits = {
        name: torch.nonzero(m).flatten()
        for name, m in (("train", train), ("val", val), ("test", test))
    }
    return splits, notes


def evaluation_split(
    data: FerData,
    split: str,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
) -> tuple[torch.Tensor, str, str]:
    """(indices, the split they are, a note on what was taken) for `split` as evaluation reads it.

    `val_fraction` and `seed` must be the ones the model was trained with: without PublicTest
    markers they decide which training faces were held out for validation.
    """
    if split not in ("train", "val", "test"):
        raise FerError(f"unknown split {split!r}; choose train, val or test")
    splits, notes = split_indices(data, val_fraction, seed)
    drawn = not (data.usage == PUBLIC_TEST).any()
    how = f" ({notes[0].split(': ', 1)[1]})" if drawn and notes else ""
    if split == "test" and len(splits["test"]) == 0:
        return (
            splits["val"],
            "val",
            "no test split (no PrivateTest faces, nor a test folder's or test.csv's faces "
            "without Kaggle's markers): evaluating the validation split "
            f"{how.strip() if drawn else '(PublicTest)'} instead",
        )
    if split == "test":
        which = "PrivateTest" if (data.usage == PRIVATE_TEST).any() else "the unmarked test samples"
        return splits["test"], "test", f"evaluating {which}"
    return splits[split], split, f"evaluating the {split} split{how}"


def exclusion_list(path: str | Path) -> Path:
    """The path of a list of faces to leave out, refused where it names no file: checked before
    any data is fetched or decoded."""
    p = Path(path)
    if p.is_dir():
        raise FerError(
            f"exclusion list {p} is a folder; give a list of faces in it, such as the leaked.txt "
            "or exclude.txt python -m fer.analyze writes"
        )
    if not p.is_file():
        raise FerError(f"exclusion list {p} does not exist; create it with python -m fer.analyze")
    return p


#: A CSV face's name (FILE:N, its data row): lists that name faces so record what they hold too.
CSV_FACE = re.compile(r".+\.csv:\d+", re.IGNORECASE)
# a CSV face's line whose tab became spaces: its name, spaces, its digest and, after spaces,
# anything (as after a second tab)
SPACED_DIGEST = re.compile(r"(.+\.csv:\d+)\s+(\S+)(?:\s.*)?", re.IGNORECASE)


def face_digest(data: FerData, i: int) -> str:
    """A short digest of face i: its pixels, label and split. An exclusion list records it beside
    a CSV face's name, which says only where the face is in the file (a leaked face and its
    training copy share their pixels, not their split)."""
    h = hashlib.sha256(np.ascontiguousarray(np.asarray(data.images[i], np.uint8)).tobytes())
    h.update(bytes([int(data.labels[i]), int(data.usage[i])]))
    return h.hexdigest()[:16]


def exclusion_lines(data: FerData, names: Iterable[str]) -> str:
    """The lines of an exclusion list naming `names`: a CSV face's name, a tab and its digest (so
    that the list refuses a file whose rows moved since), a folder face's path alone."""
    where = {n: i for i, n in enumerate(data.names)}
    return "".join(
        f"{n}\t{face_digest(data, where[n])}\n" if CSV_FACE.fullmatch(n) else f"{n}\n"
        for n in names
    )


def read_exclusions(path: str | Path | None, data: FerData | None = None) -> set[str]:
    """Sample names, one per line: the lists `fer.analyze` writes (exclude.txt, leaked.txt). With
    `data`, a CSV face the list records the digest of must still be that face: a list made before
    the file's rows moved (reordered, or some removed) would name other faces, and is refused."""
    if not path:
        return set()
    p = exclusion_list(path)
    listed = {}
    # (utf-8-sig: a list saved by Windows' Notepad starts with a BOM, not its first name)
    text = p.read_text(encoding="utf-8-sig", errors="surrogateescape")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        spaced = "\t" not in line and SPACED_DIGEST.fullmatch(line.strip())
        if spaced:  # an editor turned the tab into spaces
            name, digest = spaced.group(1), spaced.group(2)
        else:  # (a tab left after the digest by an editor, or a note after it)
            name, _, digest = line.partition("\t")
            digest = digest.split("\t")[0]
        name, digest = name.strip(), digest.strip().lower()
        if digest and not re.fullmatch(r"[0-9a-f]{16}", digest):
            raise FerError(
                f"{p}, line {number}: {digest!r} after the name is not a face's digest (16 hex "
                "digits, as fer.analyze writes them); a name alone is a line too"
            )
        listed[name] = digest
    if data is not None:
        where = {n: i for i, n in enumerate(data.names)}
        moved = [
            n for n, d in listed.items() if d and n in where and face_digest(data, where[n]) != d
        ]
        if moved:
            raise FerError(
                f"{len(moved)} of the faces {p} names by their row are not the faces it was made "
                f"from ({moved[0]} holds another face, label or split): the file changed since "
                "(its rows reordered, some removed); make the list again with python -m fer.analyze"
            )
        unchecked = [n for n, d in listed.items() if not d and n in where and CSV_FACE.fullmatch(n)]
        if unchecked:
            log.warning(
                "%s names %d CSV faces by their row alone (a list by hand or by an older fer): "
                "whether they are still the faces it meant cannot be checked; if the file changed "
                "since, make the list again with python -m fer.analyze",
                p,
                len(unchecked),
            )
    return set(listed)


def not_listed(data: FerData, index: torch.Tensor, listed: set[str]) -> np.ndarray:
    """For each face of `index`, whether its name is absent from `listed` (read_exclusions of a
    list): the faces an evaluation with --skip keeps."""
    return np.array([data.names[i] not in listed for i in index.tolist()], dtype=bool)


# ---------------------------------------------------------------------------------------------
# Batches


class BatchSampler(Sampler[torch.Tensor]):
    """Yields whole index batches, sharded across DDP ranks, reshuffled by seed + epoch.

    Training shards are equal in size (every rank must take the same number of optimizer steps);
    evaluation shards are disjoint and cover every sample exactly once, with no padding, so
    metrics synced across ranks count the whole split.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        train: bool,
        seed: int = 0,
        weights: torch.Tensor | None = None,
    ):
        self.n, self.batch_size, self.train, self.seed, self.weights = (
            n,
            batch_size,
            train,
            seed,
            weights,
        )
        self.epoch = 0
        #: the batches of the current epoch already trained on, asked as each pass begins: a run
        #: resumed mid-epoch goes on with the others, in the epoch's own order (Lightning restores
        #: its count, and counts the epoch's end by it), rather than beginning the epoch again
        self.batches_done: Callable[[], int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _order(self) -> torch.Tensor:
        rank, world = self._rank_world()
        if not self.train:  # one fixed shuffle: a share of the batches (--limit-val-batches)
            # holds every class, not the first ones read (faces are read class by class)
            return torch.randperm(self.n, generator=torch.Generator().manual_seed(0))[rank::world]
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            order = torch.randperm(self.n, generator=g)
        per_rank = self.n // world
        return order[rank * per_rank : (rank + 1) * per_rank]

    def __iter__(self):
        order = self._order()
        stop = (
            len(order) - len(order) % self.batch_size
            if self.train and len(order) >= self.batch_size
            else len(order)
        )
        done = self.batches_done() if self.train and self.batches_done else 0
        start = done * self.batch_size if 0 < done < len(self) else 0
        for i in range(start, stop, self.batch_size):
            yield order[i : i + self.batch_size]

    def __len__(self) -> int:
        rank, world = self._rank_world()
        n = self.n // world if self.train else len(range(rank, self.n, world))
        if self.train and n >= self.batch_size:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size


class TensorFaces(torch.utils.data.Dataset):
    """In-memory faces indexed by whole batches: dataset[index_tensor] -> (uint8 x, y), or
    (uint8 x, y, teacher log-probabilities) when those are given."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None = None
    ):
        self.images, self.labels, self.teacher = images, labels, teacher

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = (self.images[index].unsqueeze(1), self.labels[index])
        return batch if self.teacher is None else (*batch, self.teacher[index])


def model_key(model: Path) -> str:
    """What decides a trained model's answers, as fer.inference.load_classifier(model, "auto")
    runs it: a checkpoint's bytes; or an export's network (model.json's architecture, options,
    classes and preprocessing), its weights, and the model.onnx that the auto backend runs
    instead when there is one. (The cache key of a teacher's targets, and what fer.evaluate's
    metrics.json records it scored.)"""
    from fer.inference import read_exported

    if model.suffix == ".ckpt":
        return file_sha256(model)
    spec, folder = read_exported(model)
    network = {
        "arch": spec.arch,
        "options": spec.options,
        "classes": spec.classes,
        "preprocessing": spec.preprocessing,
    }
    weights = folder / "model.safetensors"  # (an int8 graph runs without it)
    parts = [json.dumps(network, sort_keys=True)]
    parts.append(file_sha256(weights) if weights.is_file() else "no model.safetensors")
    if (folder / "model.onnx").is_file():
        parts.append(file_sha256(folder / "model.onnx"))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def teacher_log_probs(
    model: str | Path, images: torch.Tensor, cache_dir: str | Path | None = None
) -> torch.Tensor:
    """log p(class | face) of a trained model (an export or a checkpoint) for every face of
    `images` (N, 48, 48) uint8, as seen plainly: the targets of knowledge distillation. Computed
    once and cached, keyed by the model (model_key) and the faces; a cached answer loads no
    model."""
    from fer.inference import load_classifier, resolve_model_path

    model = resolve_model_path(Path(model))
    digest = hashlib.sha256(model_key(model).encode())
    digest.update(images.numpy().tobytes())
    cache_file = cache_folder(cache_dir) / f"teacher-{digest.hexdigest()[:20]}.pt"
    if cache_file.is_file():
        try:
            return torch.load(cache_file)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:  # cut short
            log.warning("cache %s is unreadable (%s): scoring again", cache_file, e)
    log.info("teacher %s scores the %d training faces", model, len(images))
    classifier = load_classifier(model, backend="auto")
    from rich.progress import track

    chunks = torch.split(images, 2048)
    probs = [
        torch.from_numpy(classifier.predict_proba(chunk))
        for chunk in track(
            chunks, description=f"teacher scoring {len(images)} faces", transient=True
        )
    ]
    out = torch.cat(probs).clamp_min(1e-8).log()
    try:
        with atomic_path(cache_file) as tmp:
            torch.save(out, tmp)
    except (FerError, RuntimeError) as e:  # (torch.save's failed write) it only costs speed
        log.warning("could not cache the teacher's answers: %s", e)
    return out


class FerDataModule(pl.LightningDataModule):
    """FER-2013 from a CSV or folder; batches arrive as uint8 and are augmented on their device."""

    def __init__(
        self,
        data: str = "data/fer2013",
        batch_size: int = 128,
        eval_batch_size: int = EVAL_BATCH_SIZE,
        augment: str = "light",
        val_fraction: float = 0.1,
        seed: int = 0,
        balance: str = "none",
        exclude: str | None = None,
        cache_dir: str | None = None,
        strict: bool = False,
        channels_last: bool = True,
        teacher: str | None = None,
    ):
        super().__init__()
        if augment not in PRESETS:
            raise FerError(
                f"unknown augmentation preset {augment!r}; choose from {', '.join(PRESETS)}"
            )
        if balance not in ("none", "loss", "sampler"):
            raise FerError(f"unknown --balance {balance!r}; choose none, loss or sampler")
        self.save_hyperparameters()
        self.splits: dict[str, FerData] = {}
        self.teacher: torch.Tensor | None = None  # log-probabilities of the training faces

    def prepare_data(self) -> None:
        """Once per node (Lightning calls it on local rank 0 before the others set up): decode and
        cache the data, and have a teacher score the training faces into its cache, which the
        other processes then read instead of scoring them again."""
        load_fer(self.hparams.data, self.hparams.cache_dir, self.hparams.strict)
        if self.hparams.teacher:
            train = self._select()[0]["train"]
            teacher_log_probs(self.hparams.teacher, train.images, self.hparams.cache_dir)

    def _select(self) -> tuple[dict[str, FerData], list[str]]:
        """The splits (training faces without the excluded ones) and notes on how they were made."""
        hp = self.hparams
        data = load_fer(hp.data, hp.cache_dir, hp.strict)
        index, notes = split_indices(data, hp.val_fraction, hp.seed)
        excluded = read_exclusions(hp.exclude, data)
        if excluded:
            if not excluded & set(data.names):  # was: trained on every face, leaks and all
                raise FerError(
                    f"none of the {len(excluded)} names in {hp.exclude} is a face of {hp.data}: "
                    "a list made for other data (the same faces in a file of another name?), or "
                    "its faces were removed from the data (drop --exclude then); make it with "
                    f"python -m fer.analyze --data {shlex.quote(str(hp.data))}"
                )
            keep = torch.tensor(
                [data.names[i] not in excluded for i in index["train"].tolist()], dtype=torch.bool
            )
            if len(keep) and not keep.any():  # (was: "no training samples; download it")
                raise FerError(
                    f"{hp.exclude} lists every training face of {hp.data}: none is left to train "
                    "on (an exclusion list of all the faces, not fer.analyze's exclude.txt?)"
                )
            if keep.all():
                log.warning(
                    "%s names no training face of %s, only validation or test ones (leaked.txt "
                    "lists those; exclude.txt the training faces to leave out)",
                    hp.exclude,
                    hp.data,
                )
            notes = [
                *notes,
                f"excluding {int((~keep).sum())} training samples listed in {hp.exclude}",
            ]
            index["train"] = index["train"][keep]
        splits = {k: data.subset(v) for k, v in index.items() if len(v)}
        if "train" not in splits:
            raise FerError(f"{hp.data} has no training samples; {HOW_TO_GET}")
        return splits, notes

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits, self.notes = self._select()
        for note in self.notes:
            log.info(note)

    def _teacher(self) -> torch.Tensor | None:
        """The teacher's log-probabilities of the training faces, read when the training loader
        is made: by then prepare_data has scored them into the cache on this node."""
        if self.hparams.teacher and self.teacher is None:
            self.teacher = teacher_log_probs(
                self.hparams.teacher, self.splits["train"].images, self.hparams.cache_dir
            )
        return self.teacher

    @property
    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.splits["train"].labels, minlength=NUM_CLASSES)

    def _loader(self, split: str, train: bool) -> DataLoader:
        d = self.splits[split]
        weights = None
        if train and self.hparams.balance == "sampler":
            weights = (1.0 / self.class_counts.clamp(min=1).double())[d.labels]
        bs = self.hparams.batch_size if train else self.hparams.eval_batch_size
        sampler = BatchSampler(len(d), bs, train, self.hparams.seed, weights)
        pin = torch.cuda.is_available()
        # A DataLoader draws its workers' base seed when iterated, from the global RNG unless given a
        # generator; its own keeps that draw from shifting the augmentation and dropout streams,
        # whose position would then depend on when Lightning creates the iterator (it differs on resume).
        faces = TensorFaces(d.images, d.labels, self._teacher() if train else None)
        sampler.batches_done = self._batches_done
        return DataLoader(
            faces, sampler=sampler, batch_size=None, pin_memory=pin, generator=torch.Generator()
        )

    def _batches_done(self) -> int:
        """The batches of the current epoch the trainer has trained on (restored on resume)."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return 0
        return trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.splits:
            raise FerError(
                "this data has no test split (no PrivateTest samples); evaluate on val instead"
            )
        return self._loader("test", False)

    def has_test(self) -> bool:
        return "test" in self.splits

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, *targets = batch
        x = x.float().div_(255.0)
        if self.trainer is not None and self.trainer.training:
            x = augment_batch(x, self.hparams.augment)
        x = normalize(x)
        if self.trainer is not None:  # a *-true precision's weights are bf16, fp16 or fp64
            x = x.to(self.trainer.lightning_module.dtype)
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (x, *targets)


def main(argv=None) -> int:
    """`python -m fer.data download [--to DIR]`: fetch FER-2013 before training."""
    from fer.common import Parser, add_debug_flag
    from fer.download import DATASET, DEFAULT_DATA, download

    p = Parser(prog="python -m fer.data", description="FER-2013 data tools.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "download",
        help=f"download {DATASET} with kagglehub into its cache and link DIR to it",
        description=f"Download {DATASET} with kagglehub (no Kaggle account needed) into kagglehub's "
        "cache, check that every face arrived, and link DIR to it.",
    )
    d.add_argument("--to", default=str(DEFAULT_DATA), help="where to link the data")
    add_debug_flag(d)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"FER-2013 is ready at {download(Path(args.to))}; train with python -m fer.train")
    return 0


if __name__ == "__main__":
    from fer.common import run_cli

    run_cli(main)
