"""What every part of fer shares: the class names, the face preprocessing, errors and safe writes.

This module is the single source of truth for the emotion order and for how a face becomes a
model input; training, evaluation, prediction and export all call these functions.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import errno
import functools
import hashlib
import io
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # imported where a tensor is made: inference runs without PyTorch
    import torch

#: Kaggle's label order: index i of a logit vector is EMOTIONS[i].
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
IMAGE_SIZE = 48

#: Pixel statistics of the FER-2013 training faces (0..1 scale), used to standardise inputs.
PIXEL_MEAN = 0.5077
PIXEL_STD = 0.2550

#: File name endings read as images, by the folder dataset reader and by fer.predict.
IMAGE_EXTENSIONS = {
    ".png",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".gif",
}
#: Files fer.predict looks at in folders: those OpenCV reads, phones' HEIC (which pillow-heif
#: decodes) and AVIF (which builds with libavif, such as the 4.14 wheels, read; where one does not,
#: each is said to be unreadable rather than passed over in silence).
PHOTO_EXTENSIONS = IMAGE_EXTENSIONS | {".heic", ".heif", ".avif"}

#: fer.train's record of every option of a run, in the run's version folder.
RUN_CONFIG = "config.yaml"


def run_config_path(ckpt: str | Path) -> Path:
    """Where fer.train recorded the options of the run a checkpoint belongs to
    (version_N/checkpoints/x.ckpt -> version_N/config.yaml); absent for a checkpoint moved away."""
    # (absolute first: a last.ckpt named from its own folder has no parents of its own)
    return Path(os.path.abspath(ckpt)).parent.parent / RUN_CONFIG


class FerError(Exception):
    """A problem the user can fix; CLIs print it as one line instead of a traceback."""


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An image as 8 bits. Other integers are scaled by the range of the bit depth their values
    use: 8, 10, 12, 14, 16 or 24 bits (8-bit values kept in a wider type, and what cameras' raw
    data and 16-bit files hold), read from the brightest pixel, so that a 12-bit picture stored in
    16 bits is not nearly black and a full 16-bit one is shown as a viewer shows it, or else the
    type's own range (negative values are black); floats by 255 (0..1). Every path from a picture
    (a file, its bytes, a PIL image, an array) to the detector, the model and a drawn copy goes
    through it."""
    if image.dtype == np.uint8:
        return image
    scale = 255.0
    if image.dtype.kind in "ui":
        top = int(image.max()) if image.size else 0
        width = image.dtype.itemsize * 8 - (image.dtype.kind == "i")  # bits a value can use
        bits = next((b for b in (8, 10, 12, 14, 16, 24) if top < 2**b and b < width), width)
        scale = 255.0 / (2**bits - 1)
    return np.clip(image.astype(np.float32) * scale + 0.5, 0, 255).astype(np.uint8)


def to_face48(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR or BGRA, any size, 8 or 16 bit) -> 48x48 uint8 grayscale."""
    image = to_uint8(image)
    if image.ndim == 3:
        code = {1: None, 3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}[image.shape[2]]
        image = image[:, :, 0] if code is None else cv2.cvtColor(image, code)
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        # INTER_AREA is the right filter for shrinking faces; upscaling uses bilinear.
        shrink = image.shape[0] > IMAGE_SIZE or image.shape[1] > IMAGE_SIZE
        image = cv2.resize(
            image,
            (IMAGE_SIZE, IMAGE_SIZE),
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
        )
    return np.ascontiguousarray(image)


def read_image(path: str | Path, upright: bool = False) -> np.ndarray | None:
    """Decode an image file (None when it is not a decodable image): as stored, with every channel
    and its bit depth; or `upright`, turned the way its EXIF Orientation tag says a viewer shows
    it, as phones store portraits (bit depth kept, alpha dropped). HEIC is read by pillow-heif,
    always as shown, in 8 bits."""
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    return decode_image(buf, upright)


def decode_image(data: bytes | np.ndarray, upright: bool = False) -> np.ndarray | None:
    """read_image for an encoded image held in memory (bytes or a uint8 array)."""
    buf = (
        np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    )
    if buf.size == 0:
        return None
    # OpenCV applies the EXIF orientation for any flags but IMREAD_UNCHANGED; not AVIF's, which
    # its container holds (rotation and mirror boxes): Pillow reads that as an EXIF orientation
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if upright else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(buf, flags)
    except cv2.error:  # a header claiming more than OpenCV decodes (OPENCV_MAX_SIDE...), say
        image = None
    brand = bytes(buf[8:12]) if bytes(buf[4:8]) == b"ftyp" else b""
    if upright and image is not None and brand in AVIF_BRANDS:
        image = turned_upright(image, avif_orientation(buf))
    if image is None and brand in HEIF_BRANDS:
        image = decode_heif(buf, upright)
    return image


@functools.cache
def heif_decoder():
    """pillow-heif, with HEIC/HEIF registered as a format Pillow opens (once), or None where it
    is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    return pillow_heif


def decode_heif(buf: np.ndarray, upright: bool = False) -> np.ndarray | None:
    """A HEIC/HEIF image (what phones save photos as; OpenCV does not decode it) by pillow-heif:
    8-bit gray or BGR, or BGRA where it has alpha and not `upright` (10- and 12-bit ones brought
    to 8). It is always as a viewer shows it: libheif applies the container's rotation and mirror
    boxes, where HEIF keeps the orientation (pillow-heif writes a phone's EXIF orientation there).
    None where pillow-heif is not installed or the file does not decode."""
    heif = heif_decoder()
    if heif is None:
        return None
    try:
        pixels = np.asarray(heif.open_heif(io.BytesIO(buf.tobytes()), convert_hdr_to_8bit=True))
    except (ValueError, RuntimeError, OSError):  # damaged or cut short
        return None
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        return None
    if pixels.ndim == 2:  # gray, as OpenCV gives a gray JPEG
        return pixels
    if pixels.shape[2] not in (3, 4):
        return None
    if pixels.shape[2] == 4 and not upright:
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    return cv2.cvtColor(pixels[:, :, :3], cv2.COLOR_RGB2BGR)


def avif_orientation(buf: np.ndarray) -> int:
    """The EXIF orientation (1-8) of an AVIF image, from its container, as Pillow gives it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(buf.tobytes())) as image:
            return int(image.getexif().get(0x0112, 1))
    except (OSError, ValueError, SyntaxError):  # a Pillow without AVIF: as stored
        return 1


def turned_upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """An image stored with this EXIF orientation, as a viewer shows it."""
    turn = {3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE, 8: cv2.ROTATE_90_COUNTERCLOCKWISE}
    if orientation in (2, 4):  # mirrored left-right, or top-bottom
        return cv2.flip(image, 1 if orientation == 2 else 0)
    if orientation in (5, 7):  # mirrored across a diagonal
        return (
            cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
            if orientation == 7
            else cv2.transpose(image)
        )
    return cv2.rotate(image, turn[orientation]) if orientation in turn else image


def why_unreadable(path: str | Path) -> str:
    """Why read_image gave nothing for a file, from its first bytes, for a one-line error."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    return why_undecodable(head)


#: The first bytes of an encoded image that why_undecodable reads (its size is in them).
HEADER_BYTES = 1 << 16
#: The largest image OpenCV decodes: 2^20 px a side, 2^30 pixels (its CV_IO_MAX_IMAGE_* defaults).
OPENCV_MAX_SIDE, OPENCV_MAX_PIXELS = 1 << 20, 1 << 30
#: The first bytes of the formats a truncated file is recognised by, for one-line errors.
IMAGE_MAGIC = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"RIFF", "WebP"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
BMP_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)  # the DIB headers of BMP files (bytes 14-18)
AVIF_BRANDS = (b"avif", b"avis")  # the brands of an ISO file (its bytes 8-12) that hold AVIF
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")  # HEIC
SEQUENCE_BRANDS = (b"avis", b"hevc", b"hevx", b"msf1")  # of those, the brands of moving pictures


def image_kind(head: bytes) -> str | None:
    """The image format an encoded image's first bytes announce (of IMAGE_MAGIC's, AVIF where
    OpenCV reads it and HEIC where pillow-heif is installed), or None."""
    if head[4:8] == b"ftyp" and head[8:12] in AVIF_BRANDS and opencv_reads_avif():
        return "AVIF"
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS and heif_decoder():
        return "HEIC/HEIF"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in BMP_HEADER_SIZES:
        return "BMP"  # "BM", then a DIB header of a size BMP knows: not any text such as "BMW..."
    if head[:4] == b"RIFF" and head[8:12] != b"WEBP":
        return None  # another RIFF file: an AVI video, a WAV sound
    return next((kind for magic, kind in IMAGE_MAGIC if head.startswith(magic)), None)


def opencv_reads_avif() -> bool:
    """Whether this OpenCV build decodes AVIF (builds with libavif, such as the 4.14 wheels, do)."""
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name == "AVIF":
            return value.strip().upper() not in ("", "NO")
    return False


def why_undecodable(head: bytes, unknown: str = "is not an image file OpenCV can decode") -> str:
    """Why an encoded image whose first bytes are `head` could not be decoded; `unknown` where
    they are of no image format fer knows."""
    if not head:
        return "is empty"
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    if brand in HEIF_BRANDS and not heif_decoder():
        return (
            "is HEIC/HEIF, which needs pillow-heif (pip install pillow-heif), or convert it to "
            "JPEG or PNG"
        )
    if brand in AVIF_BRANDS and not opencv_reads_avif():
        return "is AVIF, which this OpenCV build cannot decode; convert it to JPEG or PNG"
    if kind := image_kind(head):
        if claim := oversized(head):
            return (
                f"has a header claiming {claim}: damaged, or larger than OpenCV decodes "
                f"({OPENCV_MAX_SIDE:,} px a side, {OPENCV_MAX_PIXELS / 1e6:,.0f} megapixels)"
            )
        return f"is a truncated or damaged {kind} file"
    return unknown


#: Held while Pillow's warnings are held back: warnings.catch_warnings swaps the process's
#: filters, so two threads in it at once (fer.serve's) could leave "ignore all" in place for good.
_QUIET_WARNINGS = threading.Lock()


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) as an encoded image's header gives them, read by Pillow without decoding
    the pixels; Pillow's errors raised (DecompressionBombError over twice its pixel limit, others
    for a header it cannot read), its warnings (a large image, "Corrupt EXIF") kept quiet."""
    from PIL import Image

    with _QUIET_WARNINGS, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as header:
            return header.size


def oversized(head: bytes) -> str | None:
    """What an encoded image's header (its first HEADER_BYTES) claims of its size, as
    "WxH pixels" (or "N megapixels", as Pillow's refusal of a very large one says), where that is
    more than OpenCV decodes; else None."""
    from PIL import Image

    try:
        w, h = header_size(head)
    except Image.DecompressionBombError as e:  # over twice Pillow's limit, far below OpenCV's
        said = re.search(r"\((\d+) pixels\)", str(e))
        pixels = int(said.group(1)) if said else 0
        return f"{pixels / 1e6:,.0f} megapixels" if pixels > OPENCV_MAX_PIXELS else None
    except Exception:  # any plugin's error on a damaged header: no claim read
        return None
    if max(w, h) > OPENCV_MAX_SIDE or w * h > OPENCV_MAX_PIXELS:
        return f"{w}x{h} pixels"
    return None


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 or 0..1 float faces (B, 1, 48, 48) -> standardised float model input, on the tensor's
    device (training); `standardize` is the same arithmetic in numpy."""
    import torch

    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return (x - PIXEL_MEAN) / PIXEL_STD


def standardize(faces: np.ndarray) -> np.ndarray:
    """48x48 faces, uint8 or 0..1 float, (48, 48), (B, 48, 48) or (B, 1, 48, 48) -> float32 model
    input (B, 1, 48, 48), in numpy: what inference runs, without importing PyTorch."""
    x = np.asarray(faces)
    if not (x.ndim in (2, 3) or (x.ndim == 4 and x.shape[1] == 1)) or x.shape[-2:] != (
        IMAGE_SIZE,
        IMAGE_SIZE,
    ):
        raise FerError(
            f"faces must be gray, (48, 48), (N, 48, 48) or (N, 1, 48, 48), not of shape {x.shape}"
        )
    x = x.astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x.astype(np.float32)
    x = x.reshape((-1, 1) + x.shape[-2:])
    return (x - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_STD)


def preprocess(faces: np.ndarray | torch.Tensor) -> torch.Tensor:
    """48x48 uint8 faces, (48, 48), (B, 48, 48) or (B, 1, 48, 48) -> model input (B, 1, 48, 48)."""
    import torch

    x = torch.from_numpy(standardize(np.asarray(faces)))
    return x.contiguous(memory_format=torch.channels_last)


def default_precision(accelerator: str = "auto") -> str:
    """bf16 mixed precision where the hardware runs it natively, 16-bit on CUDA, else fp32."""
    import torch

    cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if cuda:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("auto", "cpu") and cpu_has_bf16():
        return "bf16-mixed"
    return "32-true"


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX)."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def machine(cpuinfo: str | None = None) -> str:
    """This machine as benchmark records name it: the CPU's model name with its family and model
    numbers where /proc/cpuinfo (or `cpuinfo`, its text) gives them (virtual machines may name
    different CPUs alike, "AMD EPYC", and run at different speeds), its cores and whether it has
    native bf16 (cpu_has_bf16)."""
    import platform

    if cpuinfo is None:
        proc = Path("/proc/cpuinfo")
        cpuinfo = proc.read_text(errors="replace") if proc.exists() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():  # the first processor's fields that have a value
        key, _, value = line.partition(":")
        if value.strip():
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.machine()
    if fields.get("cpu family") and fields.get("model"):
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    bf16 = "native bf16" if cpu_has_bf16() else "no native bf16"
    return f"{name}, {os.cpu_count()} cores, {bf16}"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS says, as a container or
    `taskset` limits it; else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def same_data(recorded: str, given: str | Path) -> bool:
    """Whether the data a model's run recorded (as given to fer.train, often relative to where it
    ran) are the data at `given`: the same file or folder from here, or, relative, the end of its
    path (data/fer2013 recorded, /home/me/fer/data/fer2013 given)."""
    here = Path(os.path.realpath(given))
    if os.path.realpath(recorded) == str(here):
        return True
    parts = Path(os.path.normpath(recorded)).parts
    return (
        not Path(recorded).is_absolute()
        and ".." not in parts
        and here.parts[-len(parts) :] == parts
    )


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


#: The names of a process's open streams: written in place, wherever they lead.
STREAM_PATH = re.compile(r"/dev/(stdout|stderr|fd/\d+)|/proc/(self|\d+)/fd/\d+")


def write_target(path: str | Path) -> tuple[Path, bool]:
    """Where writing `path` goes, and whether it is written in place: a device, a pipe or a socket
    (/dev/null, a named pipe) and a process's own streams (/dev/stdout, /dev/fd/1, wherever the
    shell sends them: a file too, appended to with >>) are written as they are, never replaced
    by a file; through a symbolic link, the file it names is written (the link is kept)."""
    path = Path(path)
    if STREAM_PATH.fullmatch(str(path.absolute())):
        return path, True
    try:
        mode = path.stat().st_mode  # through links
    except OSError:  # not there yet (or a link to nothing)
        mode = 0
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return path, True
    return (Path(os.path.realpath(path)) if path.is_symlink() else path), False


def umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, for every thread): from
    /proc where Linux gives it, else the usual 022."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0o022


@contextlib.contextmanager
def _in_place(path: Path) -> Iterator[Path]:
    try:
        yield path
    except OSError as e:
        raise FerError(f"could not write {path}: {e.strerror}") from e


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only when the block succeeds.
    A device or a pipe is yielded itself, and a link leads to the file it names (write_target)."""
    path, in_place = write_target(path)
    if in_place:
        with _in_place(path) as same:
            yield same
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # (its name cut: a name the system takes, up to 255 bytes, still gets its temporary file;
        # 40 characters are at most 160 bytes)
        prefix = f".{path.name[:40]}."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise FerError(
            f"cannot write to {path.parent}: {e.strerror}; choose a writable folder"
        ) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:  # a file replaced keeps its mode (one kept private stays so); a new one the umask's
            mode = path.stat().st_mode & 0o777
        except OSError:
            mode = 0o666 & ~umask()
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except OSError as e:
        raise FerError(
            f"could not write {path}: {e.strerror}; check free space and permissions"
        ) from e
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically, as UTF-8; a file name that is not UTF-8 (held by Python as
    surrogates) is written back as the bytes it was read from."""
    target, in_place = write_target(path)
    if in_place:  # a stream or a pipe: appended to, as a shell's >> leaves it
        with _in_place(target), open(target, "a", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def counted(n: int, noun: str) -> str:
    """'1 face', '2 faces'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def real_path(path: str | Path) -> Path:
    """`path` absolute, with its links followed: what names one file however it is spelled.
    (Path.resolve raises RuntimeError on a link that leads back to itself; this leaves it.)"""
    return Path(os.path.realpath(path))


def check_outputs(
    outputs: dict[str, str | Path | None],
    inputs: Iterable[Path] = (),
    folders: dict[str, str | Path | None] | None = None,
) -> None:
    """Refuse, before any work, the output files (option -> path; None and '-' for stdout are
    left alone) that could not be written: an empty name, a folder, one in a place no file can be made, one
    that is an input file, or two options naming one file (stdout too), or a file and an output
    folder (`folders`, option -> path), and output folders where no file can be made. Makes no
    folder: those a file goes in are made when it is written, so a run refused later leaves none
    behind."""
    for option, path in [*outputs.items(), *(folders or {}).items()]:
        if path is not None and str(path) == "":  # Path("") would be this folder
            kind = "folder" if option in (folders or {}) else "file"
            raise FerError(f"{option} is empty (an unset variable?); give the {kind} to write")
    for option, path in [*outputs.items(), *(folders or {}).items()]:
        if path is not None and str(path) != "-":
            try:
                os.stat(path)
            except OSError as e:  # not there yet is fine; a link leading back to itself is not
                if e.errno == errno.ELOOP:
                    raise FerError(f"{option} {path}: {e.strerror}") from None

    read = {real_path(p) for p in inputs}
    named = {real_path(p): option for option, p in (folders or {}).items() if p is not None}
    to_stdout = [option for option, path in outputs.items() if str(path) == "-"]
    if len(to_stdout) > 1:
        raise FerError(f"{' and '.join(to_stdout)} would both write to stdout; give one a file")
    for option, path in outputs.items():
        if path is None or str(path) == "-":
            continue
        path = Path(path)
        if path.is_dir():
            raise FerError(f"{option} {path} is a folder; give the name of a file to write")
        key = real_path(path)
        if key in read:
            raise FerError(f"{option} {path} would overwrite an input; choose another name")
        if key in named:
            raise FerError(f"{named[key]} and {option} both name {path}; give each its own file")
        named[key] = option
        target, in_place = write_target(path)
        if in_place:  # /dev/null, a pipe: written as it is
            if not os.access(target, os.W_OK):
                raise FerError(f"cannot write {option} {path}: permission denied")
            continue
        _check_can_make(option, path, target.absolute().parent)
    for option, folder in (folders or {}).items():
        if folder is not None:
            if Path(folder).exists() and not Path(folder).is_dir():
                raise FerError(f"{option} {folder} is not a folder; give a folder to write in")
            _check_can_make(option, folder, Path(folder).absolute())


def _check_can_make(option: str, path: str | Path, folder: Path) -> None:
    """Refuse `option`'s `path` where files cannot be written in `folder`: the nearest folder of
    it there is must be a folder (not a file, nor a link to nothing) that takes a file."""
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent  # the folders below it are made when a file is written
    try:
        if folder.is_symlink() and not folder.exists():
            raise FileNotFoundError(errno.ENOENT, f"{folder} is a link to nothing")
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file, not a folder")
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise FerError(
            f"cannot write {option} {path}: {e.strerror}; choose a writable folder"
        ) from None


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically, then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(
            tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png"
        )
    plt.close(fig)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Says '(default: X)' after an option's help, or as its help when it has none, where it tells
    something: not for switches, options left unset (None) or required ones, nor where the help
    already says what the default is."""

    def _format_action(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.option_strings
            and not action.required
            and action.default is not None
            and action.default is not False
            and action.default is not argparse.SUPPRESS
            and "default" not in text.lower()
        ):
            action = copy.copy(action)
            action.help = f"{text} (default: %(default)s)".strip()
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `error: <problem> (see --help)`, exit code 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and --backend, shared by fer.predict, fer.detect and fer.serve."""
    parser.add_argument(
        "--model",
        help="exported model folder/file, .ckpt or training run folder (default: the shipped "
        "model in checkpoints/)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: onnxruntime when the model folder has the model.onnx its model.json records "
        "(faster on a CPU), else torch",
    )


def count(text: str) -> int:
    """argparse type: a whole number 0 or more (faces to show, grey levels, a seed)."""
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


class Terminated(BaseException):
    """SIGTERM (kill, timeout, docker stop) or SIGHUP (the terminal closed) arrived: stop the work
    as Ctrl-C does, keeping what was done. `name` is the signal's, `code` the exit status a shell
    reports for a process it ended (128 + its number)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.name, self.code = signal.Signals(signum).name, 128 + int(signum)


def stdout_gone() -> None:
    """Stdout's reader left (`| head`): what is still printed goes nowhere, without the
    BrokenPipeError each write (and Python's own flush at exit) would raise."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class Stoppable:
    """A run that Ctrl-C and SIGTERM (kill, timeout, docker stop) stop keeping what was done:
    inside `with Stoppable() as run:`, SIGTERM raises Terminated as Ctrl-C raises
    KeyboardInterrupt; from `run.finishing()` on, both are ignored while the results are written,
    whatever arrives (a second Ctrl-C); on leaving, their handlers are put back. Off the main
    thread, where Python cannot catch signals, it changes nothing."""

    #: raised as Terminated: SIGTERM (kill, timeout, docker stop) and SIGHUP (the terminal or
    #: ssh session closed), where the system has it
    ENDING = (signal.SIGTERM,) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())
    SIGNALS = (signal.SIGINT, *ENDING)

    def __enter__(self) -> Stoppable:
        self.before: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self.before = {s: signal.getsignal(s) for s in self.SIGNALS}
            for s in self.ENDING:
                # a signal the process was started ignoring stays ignored: `nohup` (SIGHUP) runs
                # on after the terminal closes
                if self.before[s] is not signal.SIG_IGN:
                    signal.signal(s, self._stop)
        return self

    @staticmethod
    def _stop(signum, frame):
        raise Terminated(signum)

    def finishing(self) -> None:
        for s in self.before:
            signal.signal(s, signal.SIG_IGN)

    def __exit__(self, *exc) -> None:
        for s, handler in self.before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _this_host() -> str:
    """Six hex digits naming this machine, in the hidden folders of OutputSet: a process id means
    something only on the machine (and in the process namespace) that gave it."""
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


#: The hidden folder of an OutputSet: .new-PID-HOST- and mkdtemp's eight characters.
RUN_FOLDER = re.compile(r"\.new-(\d{1,10})-([0-9a-f]{6})-[a-z0-9_]{8}")


def remove_dead_runs_folders(out: Path) -> None:
    """Remove the hidden folders that OutputSets of processes of this machine no longer running
    left in `out` (killed outright: SIGKILL, a power cut); those of runs still going, of other
    machines (a shared folder) and every other folder stay. POSIX only (on Windows os.kill(pid,
    0) would stop the process)."""
    if os.name != "posix":
        return
    for folder in out.glob(".new-*"):
        m = RUN_FOLDER.fullmatch(folder.name)
        if not (m and m.group(2) == _this_host() and folder.is_dir() and not folder.is_symlink()):
            continue
        pid = int(m.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, OverflowError):  # a process of another user: running; no such pid
            pass


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those above it that are not there yet (the deepest first): the folders a run
    that makes `folder` makes, for `remove_empty` to take away again when it fails."""
    return [f for f in [folder, *folder.parents] if not os.path.lexists(f)]


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove the folders `missing_folders` listed, deepest first, up to one that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


class OutputSet:
    """The outputs of one run, made in a hidden folder inside `out` (`with OutputSet(...) as
    folder:`) and put in the place of an earlier run's (the files of `out` the glob patterns
    `owned` name) together, once the block has ended well: `last`, the file that says a set is
    complete, is removed first and put in last, and the earlier outputs this run did not make are
    removed (their names in `removed`); an output that is a link is written through (as
    `atomic_path` writes it). A block that fails or is stopped (Ctrl-C, or SIGTERM, raised as
    Terminated inside it) leaves `out` as it was, and no folder it made; one killed outright
    leaves its hidden folder, which the next set made in `out` removes. Making the set checks
    `out` as `check_outputs` checks the folder `option` names, and refuses an output name (without
    wildcards) that is a folder there: make it before the work. Folder names are checked again
    before anything is replaced; while the files are put in place or the hidden folder is
    removed, Ctrl-C and SIGTERM are ignored."""

    def __init__(self, out: str | Path, owned: Sequence[str], last: str, option: str = "--out"):
        self.out, self.owned, self.last = Path(out), tuple(owned), last
        self.removed: list[str] = []
        check_outputs({}, folders={option: out})  # '' too, which Path makes this folder
        self._refuse_folders(n for n in self.owned if not any(c in n for c in "*?["))

    def __enter__(self) -> Path:
        out = self.out
        self._made = missing_folders(out)
        self._run = Stoppable().__enter__()
        try:
            out.mkdir(parents=True, exist_ok=True)
            remove_dead_runs_folders(out)
            prefix = f".new-{os.getpid()}-{_this_host()}-"
            self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=out))
        except BaseException:
            self._leave(failed=True)
            raise
        return self.folder

    def __exit__(self, kind, value, traceback) -> None:
        failed = kind is not None
        try:
            self._run.finishing()
            if not failed:
                self._put_in_place()
        except BaseException:
            failed = True
            raise
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._leave(failed)

    def _refuse_folders(self, names: Iterable[str]) -> None:
        for name in names:
            if (self.out / name).is_dir():
                raise FerError(
                    f"{self.out / name} is a folder, where this writes a file; move it away or "
                    "choose another folder"
                )

    def _put_in_place(self) -> None:
        new = {f.name for f in self.folder.iterdir()}
        old = {f.name for pattern in self.owned for f in self.out.glob(pattern)}
        self._refuse_folders(new | old)
        last = self.out / self.last
        try:
            if not last.is_symlink():  # a link is written through, last
                last.unlink(missing_ok=True)
            for name in sorted(new - {self.last}):
                self._put(name)
            self.removed = sorted(old - new)
            for name in self.removed:
                (self.out / name).unlink(missing_ok=True)
            if self.last in new:
                self._put(self.last)
        except OSError as e:
            raise FerError(f"cannot replace the files in {self.out}: {e.strerror}") from e

    def _put(self, name: str) -> None:
        made, there = self.folder / name, self.out / name
        if there.is_symlink() or write_target(there)[1]:  # a link, a device, a pipe
            with atomic_path(there) as tmp:
                shutil.copyfile(made, tmp)
        else:
            os.replace(made, there)

    def _leave(self, failed: bool) -> None:
        if failed:
            remove_empty(self._made)  # the folders this run made, left empty
        self._run.__exit__(None, None, None)


#: What writing a file can meet where the fault is the disk's, not the program's.
FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


#: Threads left blocked in a library's call (an OpenCV read of a stalled stream, which cannot be
#: interrupted): where one is still alive as a CLI ends, the process ends at once (os._exit), its
#: streams flushed, as the interpreter's shutdown would stop the thread inside OpenCV's C++ code
#: when its call returns, which aborts the process (SIGABRT, exit 134, a core dump).
ABANDONED: list[threading.Thread] = []


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> None:
    """Run a CLI entry point: FerError, bad files and files the system refuses (OSError naming a
    file) become one line on stderr and exit code 2; --debug shows the traceback. Where a thread
    of ABANDONED is still alive at the end, the process ends there with the same exit status (1,
    its traceback printed, after an error left to Python: --debug, or one fer does not name)."""
    try:
        _run_cli(main, argv)
    except BaseException as e:
        if any(thread.is_alive() for thread in ABANDONED):
            if not isinstance(e, SystemExit):
                import traceback

                traceback.print_exc()
                code = 1
            elif isinstance(e.code, int) or e.code is None:
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # a reader gone, a closed terminal
                    stream.flush()
            os._exit(code)
        raise


def _run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None
) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if not debug:  # OpenCV's log lines (a decoder's complaint, say) give way to our one-line errors
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        # and FFmpeg's, which it prints itself ('moov atom not found'), read as a video is opened
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    # file names that are not UTF-8 are printed as the bytes they are (as ls prints them), and in
    # messages escaped, rather than ending the run
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=errors)
    try:
        code = main(args)
    except BrokenPipeError:  # the reader of stdout left (`| head`): end as SIGPIPE would, quietly
        stdout_gone()
        sys.exit(141)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated as e:  # SIGTERM or SIGHUP inside a Stoppable block, which cleaned up
        print(f"stopped by {e.name}", file=sys.stderr)
        sys.exit(e.code)
    except FerError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a file the system refused (a name too long, no permission), named,
        # or a disk that takes no more (a write or close names no file)
        if debug or (e.filename is None and e.errno not in FULL_DISK):
            raise
        if e.filename is not None:
            print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        else:
            print(f"error: {e.strerror}, writing the outputs; check free space", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
