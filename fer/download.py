"""Getting FER-2013: Kaggle's `msambare/fer2013` through kagglehub, checked, linked at data/fer2013.

The files stay in kagglehub's cache (~/.cache/kagglehub, or $KAGGLEHUB_CACHE); the default data
location becomes a symbolic link to them, so there is one copy. Only the default location is ever
filled this way: a path given with --data is used as it is, or refused.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from pathlib import Path

from fer.common import EMOTIONS, FerError, missing_folders, remove_empty

log = logging.getLogger(__name__)

DATASET = "msambare/fer2013"
#: Where fer.train, fer.evaluate and fer.analyze look when --data is not given.
DEFAULT_DATA = Path("data/fer2013")
#: Faces in a complete download: 28,709 Training; PublicTest + PrivateTest in test/.
EXPECTED_FACES = {"train": 28_709, "test": 7_178}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def manual(to: Path = DEFAULT_DATA) -> str:
    """How to get the data without kagglehub, into `to`."""
    then = "" if Path(to) == DEFAULT_DATA else f" and pass --data {shlex.quote(str(to))}"
    return (  # (in data/fer2013 it is found unasked)
        f"get it by hand with `kaggle datasets download {DATASET} -p {shlex.quote(str(to))} "
        f"--unzip`{then}, or "
        "the competition's fer2013.csv with --data PATH"
    )


def reason(e: BaseException) -> str:
    """Why a download failed, in one line: an HTTP library's own cause ("Caused by ...") rather
    than the connection pool and URL around it."""
    text = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    caused = re.search(r"\(Caused by \w+\((.*)\)\)$", text)
    if caused:
        text = caused.group(1).strip("'\"")
    return re.sub(r"^HTTPS?Connection(Pool)?\([^)]*\): ", "", text)


def count_faces(root: Path, to: Path = DEFAULT_DATA) -> dict[str, int]:
    """Image files per split folder of a Kaggle folder layout, checking the seven class folders
    (`to`: where the data was to be linked, for the error's advice)."""
    counts = {}
    for split in EXPECTED_FACES:
        folders = (
            {d.name.lower(): d for d in (root / split).iterdir()} if (root / split).is_dir() else {}
        )
        missing = [e for e in EMOTIONS if e not in folders]
        if missing:
            raise FerError(
                f"the {DATASET} download in {root} is incomplete: {split}/ lacks "
                f"{', '.join(missing)}; delete that folder and run again, or {manual(to)}"
            )
        counts[split] = sum(
            1 for e in EMOTIONS for f in folders[e].iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
        )
    return counts


def fetch(to: Path) -> Path:
    """kagglehub's download of the dataset (its cache folder); errors in one line."""
    try:
        import kagglehub

        return Path(kagglehub.dataset_download(DATASET))
    except ImportError as e:
        raise FerError(
            f"downloading {DATASET} needs kagglehub (pip install kagglehub); or {manual(to)}"
        ) from e
    except Exception as e:  # no network, HTTP errors, a full disk: kagglehub raises many types
        raise FerError(
            f"could not download {DATASET} from Kaggle ({reason(e)}); {manual(to)}"
        ) from e


def download(to: Path = DEFAULT_DATA) -> Path:
    """Download FER-2013 with kagglehub (a progress bar; public, no account needed), check that
    every face arrived, and link `to` to the downloaded folder. Returns `to`. A `to` that could not
    be linked is refused before anything is downloaded."""
    to = Path(to)
    if os.path.lexists(to) and not to.is_symlink():  # a link, even a broken one, is replaced
        raise FerError(
            f"{to} exists and is not a link to a download; move it away or link another folder "
            "(a FER-2013 folder of your own needs no download: train on it with --data PATH)"
        )
    made = missing_folders(to.parent)
    try:
        to.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FerError(
            f"cannot create the folder {to.parent} ({e.strerror}); choose another place"
        ) from e
    try:
        folder = fetch(to)
        counts = count_faces(folder, to)
        if counts != EXPECTED_FACES:
            got = ", ".join(f"{counts[s]:,} {s}" for s in EXPECTED_FACES)
            want = ", ".join(f"{n:,} {s}" for s, n in EXPECTED_FACES.items())
            short = any(counts[s] < n for s, n in EXPECTED_FACES.items())
            raise FerError(
                f"the {DATASET} download in {folder} is "
                f"{'incomplete' if short else 'not the one fer knows'} ({got} faces, expected "
                f"{want}); delete that folder and run again, or {manual(to)}"
            )
    except BaseException:
        remove_empty(made)  # the folders made for the link, left empty
        raise
    before = os.path.realpath(to) if to.is_symlink() else None  # for the log; a loop is fine
    # the new link is made beside the old one and put in its place at once: a failure or an
    # interrupt leaves the old link (or none, where there was none) and nothing half-made; one
    # left by a run killed in between is replaced
    made_link = to.with_name(f".{to.name}.new-link")
    if made_link.is_symlink():
        made_link.unlink()
    try:
        os.symlink(folder.resolve(), made_link, target_is_directory=True)
        os.replace(made_link, to)
    except OSError as e:
        raise FerError(
            f"could not link {to} to the download in {folder} ({e.strerror}); pass --data "
            f"{shlex.quote(str(folder))}"
        ) from e
    finally:  # gone once it took the old link's place
        if os.path.lexists(made_link):
            os.unlink(made_link)
    if before is not None and before != os.path.realpath(folder):
        log.info("%s linked to %s before; now to the download", to, before)
    log.info("FER-2013 (%s) is in %s, linked at %s", DATASET, folder, to)
    return to


def resolve_data(path: str | Path | None) -> str:
    """The data path to read: `path` itself when given (never downloaded); else the default
    location, downloaded there first when it is missing (or a broken link)."""
    if path is not None:
        return str(path)
    if DEFAULT_DATA.is_dir() and not DEFAULT_DATA.is_symlink() and not any(DEFAULT_DATA.iterdir()):
        raise FerError(
            f"{DEFAULT_DATA} holds no FER-2013 data (an empty folder): remove it to download "
            "FER-2013 there, put the data in it by hand, or pass --data PATH"
        )
    if DEFAULT_DATA.exists():
        return str(DEFAULT_DATA)
    log.info("no data at %s: downloading FER-2013 (%s) from Kaggle", DEFAULT_DATA, DATASET)
    return str(download(DEFAULT_DATA))
