"""Real-time emotion detection on a webcam, a video file or a stream.

`python -m fer.detect --source 0|FILE|URL [--output out.mp4] [--json FILE] [--show] [--every N]`

Per frame: detect faces (YuNet by default, or the Haar cascade; every N-th frame, reused in
between), level each face by its eyes and crop it like the training faces, classify all faces of
the frame in one batch, smooth each face's probabilities over the last frames, draw boxes,
labels, probability bars and the frames per second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import shlex
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fer.common import (
    ABANDONED,
    HEADER_BYTES,
    PHOTO_EXTENSIONS,
    SEQUENCE_BRANDS,
    FerError,
    Parser,
    Stoppable,
    Terminated,
    add_debug_flag,
    add_model_options,
    check_outputs,
    counted,
    image_kind,
    missing_folders,
    remove_empty,
    run_cli,
    stdout_gone,
    write_target,
)
from fer.faces import add_face_options


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m fer.detect", description="Detect faces and their emotions in video.")
    p.add_argument(
        "--source",
        default="0",
        help="webcam index (digits), video file (./NAME for a file named with digits only) or "
        "stream URL",
    )
    add_model_options(p)
    p.add_argument("--output", help="write the annotated video here (.mp4, .avi or .mkv)")
    p.add_argument(
        "--json",
        metavar="FILE",
        help="write one JSON line per frame: frame, time (s), detector, boxes, landmarks, labels, "
        "probabilities ('-': to stdout)",
    )
    p.add_argument(
        "--show",
        action="store_true",
        help="show the annotated frames in a window (needs a display; q or Esc closes it)",
    )
    add_face_options(p)
    p.add_argument("--every", type=int, default=1, help="run the face detector every N frames")
    p.add_argument(
        "--min-face",
        type=int,
        help="smallest face to find, in pixels of the frame (default: 80, or a sixth of the "
        "frame's shorter side in frames under 480 px). Frames are looked at shrunk to 640 px on "
        "their longer side (YuNet) or 240 px wide (Haar), so in larger frames the faces surely "
        "found start larger: at 240 px (YuNet) or 192 px (Haar) in 1920x1080. A --min-face "
        "given makes Haar look at the frame as large as it needs, which takes longer; YuNet "
        "keeps its 640 px",
    )
    p.add_argument(
        "--smooth",
        type=int,
        default=5,
        metavar="N",
        help="average each face's probabilities over its last N frames; 1: off, each frame "
        "runs the whole model. Above 1, each frame runs one piece of the model on each face (one "
        "member of an ensemble, on the face or its mirror, in turn), and however small N is the "
        "average spans a round of the pieces (6 frames for the shipped model)",
    )
    p.add_argument(
        "--max-frames",
        type=int,
        default=0,
        help="stop after this many frames (0: until the source ends)",
    )
    p.add_argument(
        "--no-bars", action="store_true", help="draw only the label, not the probability bars"
    )
    add_debug_flag(p)
    return p


#: Frames a video may announce beyond those it holds without a warning (a share of them, and at
#: least 2): containers that give no count estimate it from the duration and the frame rate.
ANNOUNCED_SLACK = 0.02
#: Frames in a row that may fail to decode before a file is taken to have ended there (8 s at
#: 30 frames/s): a damaged header may announce millions of frames it does not hold.
UNREAD_RUN_LIMIT = 250


#: The largest numerator of a frame rate MPEG-4 holds (its time base's 16 bits).
MPEG4_RATE_LIMIT = 65535


def writable_rate(fps: float) -> float:
    """`fps` to as many decimals as MPEG-4 holds (up to six, where OpenCV stops looking). OpenCV
    hands FFmpeg a rate as the first fraction of a power of ten within 0.001 of it (119.8765:
    119877/1000), which MPEG-4 refuses where the numerator is over MPEG4_RATE_LIMIT: a phone's
    slow motion (119.88 frames/s on average) or a stream measured at 91.2 could not be written.
    Rounded so, a rate comes out as OpenCV would give it wherever MPEG-4 held it already."""
    if not math.isfinite(fps):  # left to OpenCV, which refuses it
        return fps
    decimals = 6
    while decimals and round(fps * 10**decimals) > MPEG4_RATE_LIMIT:
        decimals -= 1
    return round(fps, decimals)


def video_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter | None:
    """An open cv2.VideoWriter for `path` (MJPG in .avi, MPEG-4 at writable_rate(fps) in the
    rest), or None where OpenCV writes no such file (its extension, or its folder). OpenCV's and
    FFmpeg's complaints, printed straight to the process's stderr, are held back: the caller says
    it in one line."""
    mjpg = path.suffix.lower() == ".avi"
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if mjpg else "mp4v"))
    with quiet_stderr():
        try:
            writer = cv2.VideoWriter(
                str(path), fourcc, fps if mjpg else writable_rate(fps), (width, height)
            )
        except cv2.error:  # a name OpenCV takes for a pattern of images (x.gif)
            return None
    return writer if writer.isOpened() else None


def check_video_name(path: Path) -> None:
    """Refuse, before any frame is read, a --output whose extension OpenCV cannot write (tried on
    a throwaway file of the same extension)."""
    with tempfile.TemporaryDirectory() as folder:
        writer = video_writer(Path(folder) / f"probe{path.suffix or '.mp4'}", 30.0, 64, 48)
        if writer is None:
            raise FerError(
                f"cannot write video {path}: OpenCV writes no {path.suffix or 'extensionless'} "
                "videos here; use a .mp4, .avi or .mkv name"
            )
        writer.release()


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 pointed at the null device for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def fit(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame` scaled whole into width x height and centred on black (a camera turned mid-run,
    whose frames a video of the first size would drop)."""
    scale = min(width / frame.shape[1], height / frame.shape[0])
    w, h = max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale))
    small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    left, top = (width - w) // 2, (height - h) // 2
    return cv2.copyMakeBorder(
        small, top, height - h - top, left, width - w - left, cv2.BORDER_CONSTANT, value=0
    )


def check_source(source: str) -> None:
    """A one-line error for a --source that is no video, before anything is loaded."""
    if not source:
        raise FerError(
            "--source is empty (an unset variable?); give a webcam index (0), a video file or a "
            "stream URL"
        )
    is_camera = source.isdigit()
    path = Path(source)  # a file, or a device or pipe (/dev/video0): OpenCV opens them
    if not is_camera and "://" not in source and (path.is_dir() or not path.exists()):
        what = "is a folder, not a video" if path.is_dir() else "does not exist"
        raise FerError(
            f"video {source} {what}; pass a webcam index (0), a video file or a stream URL"
        )
    if not is_camera and path.suffix.lower() in PHOTO_EXTENSIONS - {".gif"} and path.is_file():
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
        kind = image_kind(head)
        # OpenCV would read it as a video of one frame, sideways where EXIF turns it (an AVIF or
        # HEIF file of a sequence brand holds moving pictures: left to OpenCV)
        if kind and not (head[4:8] == b"ftyp" and head[8:12] in SEQUENCE_BRANDS):
            raise FerError(
                f"{source} is a {kind} photo, not a video; read its faces with "
                f"python -m fer.predict {shlex.quote(source)}"
            )


def open_source(source: str) -> cv2.VideoCapture:
    check_source(source)
    is_camera = source.isdigit()
    cap = cv2.VideoCapture(int(source) if is_camera else source)
    if not cap.isOpened():
        if is_camera and Path(source).is_file():  # digits name a webcam, also beside such a file
            raise FerError(
                f"could not open webcam {source}; a file of that name is here: pass ./{source} "
                "to read the file"
            )
        what = f"webcam {source}" if is_camera else f"video {source}"
        raise FerError(f"could not open {what}; check that it exists and that OpenCV can decode it")
    return cap


class BackgroundWriter:
    """A cv2.VideoWriter fed by a thread of its own, so that encoding a frame (about 3 ms at
    640x480) overlaps the next frame's detection and classification; frames are written in the
    order given, and release() writes those still waiting before it closes the file. An error
    while writing is raised by the next write(), or after release() by check()."""

    def __init__(self, writer: cv2.VideoWriter, waiting: int = 8):
        self.writer, self.error = writer, None
        self.queue: queue.Queue = queue.Queue(maxsize=waiting)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (frame := self.queue.get()) is not None:
            if self.error is None:  # after an error, frames are taken and dropped: no one waits
                try:
                    self.writer.write(frame)
                except Exception as e:  # kept for the main thread, which may not block on put
                    self.error = e

    def check(self) -> None:
        if self.error is not None:
            why = (str(self.error).splitlines() or [type(self.error).__name__])[0][:100]
            raise FerError(f"cannot write the video: {why}")

    def write(self, frame) -> None:
        self.check()
        self.queue.put(frame)

    def release(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.writer.release()


class FrameReader:
    """A capture's frames, each read by a thread of its own when asked for, so that the main
    thread waits where a signal reaches it: OpenCV's read of a stalled network stream blocks up to
    FFmpeg's 30 s timeout (a camera's, when unplugged, up to 10 s), through which Ctrl-C and
    SIGTERM went unheard. Reads stay one at a time, in the main thread's order: nothing is read
    ahead, so a frame is as fresh, and a capture's state (its position) as it was."""

    def __init__(self, cap):
        self.cap = cap
        self.took = 0.0  # how long the last read took, in seconds
        self.asked: queue.Queue = queue.Queue()
        self.got: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="fer-read", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.asked.get():
            began = time.perf_counter()
            try:
                got = self.cap.read()
            except BaseException as e:  # raised in the main thread, which asked
                got = e
            self.took = time.perf_counter() - began
            self.got.put(got)

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.asked.put(True)
        while True:
            try:  # in short waits: a signal's handler runs between them wherever it arrives
                got = self.got.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(got, BaseException):
                raise got
            return got

    def close(self) -> bool:
        """Ends the thread; False where a read still blocks it (the capture cannot be released
        under it: it goes with the process, which run_cli then ends at once)."""
        self.asked.put(False)
        self.thread.join(1.0)
        if self.thread.is_alive():
            ABANDONED.append(self.thread)
            return False
        return True


#: A camera's or a live stream's frame rate is measured on its first frames that were waited for
#: (30 or 2 s of them), those before held too (up to 256 MB, or 8 s or 300 frames where no read
#: waited: a pile drains slowly where the reader is little faster than the stream): the rate it
#: announces is often not the one it delivers (in low light, or with a CPU that falls behind,
#: when it drops frames). A file or a video served at a URL delivers every frame, however slow
#: its reader: its own rate is kept.
MEASURED_FRAMES, MEASURED_SECONDS, MEASURED_BYTES = 30, 2.0, 256 * 2**20
UNWAITED_FRAMES, UNWAITED_SECONDS = 300, 8.0
#: The measure starts after the first read that waited for its frame and was followed by enough
#: others that did: WAITED_RUN of it and the next 2 * WAITED_RUN - 1 (one alone may be a key
#: frame, slower to decode; with --every N, the frames after a detection find theirs waiting),
#: at the frame after those.
WAITED_RUN = 3
#: The frame rates a source may announce and be recorded at (OpenCV writes no video at 90,000
#: frames/s, the clock rate some recorders copy from RTSP into a file's header, nor at NaN, which
#: it gives for a source announcing none); outside them, DEFAULT_FPS.
SOURCE_FPS, DEFAULT_FPS = (0.1, 1000.0), 30.0


def source_rate(cap, source: str, say: bool = True) -> float:
    """The rate `source` announces, or DEFAULT_FPS where it announces none or one no video has
    (said on stderr, with `say`)."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    if SOURCE_FPS[0] <= fps <= SOURCE_FPS[1]:
        return fps
    if fps and say:  # 0: announces none (cameras, many streams)
        print(
            f"warning: {source} announces {fps:g} frames/s, a rate no video has; taken as "
            f"{DEFAULT_FPS:g}",
            file=sys.stderr,
        )
    return DEFAULT_FPS


class VideoOutput:
    """--output: the frames, fitted to the first one's size, written by a BackgroundWriter into a
    hidden file beside `target` (`tmp`, which the caller puts in place) at `fps`, the source's
    rate; for a camera or a live stream (`measure`), at the rate its frames arrived after the
    first one whose read waited for it (`took` longer than twice the fastest read, and a
    millisecond) with WAITED_RUN of the 2 * WAITED_RUN from it waited for:
    those before it had piled up while the model's first run, or the stream's opening, kept the
    reader away, and came at the speed of decoding them. Where no read waited (all alike, or the
    reader always behind), from the second frame (the first waited for the model)."""

    def __init__(self, target: Path, fps: float, measure: bool):
        self.target, self.fps, self.measure = target, fps, measure
        self.tmp = target.with_name(f".{target.stem}.part{target.suffix or '.mp4'}")
        self.size: tuple[int, int] | None = None
        self.writer: BackgroundWriter | None = None
        self.held: list[tuple[float, np.ndarray]] = []  # (when it arrived, frame)
        self.fastest = float("inf")  # the shortest read so far
        self.waits: list[bool] = []  # whether each held frame's read waited for it
        self.waited: int | None = None  # the held frame the measure starts at

    def write(self, frame: np.ndarray, arrived: float, took: float = 0.0) -> None:
        if self.size is None:
            self.size = (frame.shape[1], frame.shape[0])
        if (frame.shape[1], frame.shape[0]) != self.size:  # a camera turned mid-run
            frame = fit(frame, *self.size)
        if self.writer is not None:
            self.writer.write(frame)
            return
        self.held.append((arrived, frame))
        self.fastest = min(self.fastest, took)
        self.waits.append(len(self.held) > 1 and took > 2 * self.fastest + 1e-3)
        j = len(self.held) - 2 * WAITED_RUN  # the first read of the last 2 * WAITED_RUN
        if self.waited is None and j >= 1 and self.waits[j] and sum(self.waits[j:]) >= WAITED_RUN:
            # from the next frame on: where j was a key frame of the pile, the pile ended since
            self.waited = len(self.held)
        start = 1 if self.waited is None else self.waited
        frames = len(self.held) - start
        seconds = arrived - self.held[min(start, len(self.held) - 1)][0]
        # until one waits, the pile-up may go on: held longer
        most_frames, most_seconds = (
            (MEASURED_FRAMES, MEASURED_SECONDS)
            if self.waited is not None
            else (UNWAITED_FRAMES, UNWAITED_SECONDS)
        )
        enough = (
            frames >= most_frames
            or seconds >= most_seconds
            or len(self.held) * frame.nbytes >= MEASURED_BYTES
        )
        if not self.measure or enough:
            self._open()

    def _open(self) -> None:
        # from where the waits began (at least two frames); where they did not, the second frame
        start = 1 if self.waited is None else max(min(self.waited, len(self.held) - 2), 1)
        measured = self.held[start:]
        span = measured[-1][0] - measured[0][0] if len(measured) > 1 else 0.0
        if self.measure and span > 0:
            self.fps = min(max((len(measured) - 1) / span, 1.0), 120.0)
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FerError(f"cannot write video {self.target}: {e.strerror}") from e
        video = video_writer(self.tmp, self.fps, *self.size)
        if video is None:
            raise FerError(
                f"cannot write video {self.target}; use a .mp4, .avi or .mkv name in a "
                "writable folder"
            )
        self.writer = BackgroundWriter(video)
        for _, frame in self.held:
            self.writer.write(frame)
        self.held = []

    @property
    def error(self) -> BaseException | None:
        return self.writer.error if self.writer is not None else None

    def check(self) -> None:
        if self.writer is not None:
            self.writer.check()

    def release(self) -> None:
        """Write the frames still held (a run shorter than the measure) and close the file."""
        if self.writer is None and self.held:
            self._open()
        if self.writer is not None:
            self.writer.release()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.every < 1 or args.smooth < 1 or args.max_frames < 0 or (args.min_face or 0) < 0:
        raise FerError(
            "--every and --smooth must be at least 1, --max-frames and --min-face at least 0"
        )
    # where --output and --json go: through a link, not over it; /dev/null is written as it is
    video_target, video_in_place = write_target(args.output) if args.output else (None, False)
    json_target, json_in_place = write_target(args.json) if args.json else (None, False)
    if args.output == "-" or video_in_place:
        raise FerError(
            f"--output {args.output}: a video cannot go to stdout, a device or a pipe; give a "
            ".mp4, .avi or .mkv file name (or no --output, to write none)"
        )
    if args.show and not _has_gui():
        raise FerError(
            "--show needs a display and an OpenCV build with GUI support (opencv-python, not "
            "-headless); python -m fer.serve shows the webcam in a browser instead"
        )
    source = Path(args.source)
    check_outputs(
        {"--output": args.output, "--json": args.json}, [source] if source.is_file() else []
    )
    if args.output:
        check_video_name(video_target)
    # the folders the outputs go in that are not there yet, made as they are written and taken
    # away again, where left empty, by a run that fails
    made = [missing_folders(t.absolute().parent) for t in (video_target, json_target) if t]
    from fer.annotate import draw
    from fer.recognizer import EmotionRecognizer

    check_source(args.source)
    rec = EmotionRecognizer(
        args.model, detector=args.detector, align=not args.no_align, backend=args.backend
    )
    tracker = rec.tracker(smooth=args.smooth, every=args.every, min_face=args.min_face)
    # opened once the model is loaded: a live source's frames pile up from then on
    cap = open_source(args.source)
    json_file = tmp_json = reader = None
    camera = args.source.isdigit() or (source.exists() and stat.S_ISCHR(source.stat().st_mode))
    # a frame's time: a file's, or a video file's served at a URL (which announces its frames,
    # and delivers every one however slow its reader), its own timestamp, counted from its first
    # frame where it is no local file, or its number over its rate where it has none; a camera's
    # or a live stream's (an IP camera's MJPEG, whose timestamps and rate OpenCV makes up at 25
    # frames/s) the time since its first frame arrived, and its video's rate the measured one
    clock = camera or not (source.is_file() or cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0)
    # (its video's, and the clock of its frames without a timestamp; a made-up one said where a
    # video is written at it)
    rate = source_rate(cap, args.source, say=bool(args.output))
    video = VideoOutput(video_target, rate, clock) if args.output else None
    tmp_video = video.tmp if video else None
    # A file's frames are numbered, and one that does not decode (a damaged or half-copied video)
    # is left out while the file announces more; a camera or a stream ends at its first failure.
    announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if source.is_file() else 0
    first_read = first_stamp = None
    index = -1  # the source's number of the frame at hand
    undecoded = unread_run = 0  # frames left out: all of them, and those since the last one read
    with_faces = 0  # frames where a face was found
    frames, start, fps = 0, time.perf_counter(), 0.0
    recent: list[float] = []
    finished, ran_out, code = False, False, 0
    stopped_by = ""  # the signal that stopped the run (Terminated's)
    # the bar counts the frames read, up to those --max-frames lets it make
    expected = min(announced, args.max_frames) if args.max_frames else announced
    bar = frames_progress(expected)
    bar.start()
    with Stoppable() as run:
        try:
            if args.json == "-":
                json_file = sys.stdout
            elif args.json:
                if not json_in_place:
                    tmp_json = json_target.with_name(f".{json_target.name}.part")
                try:
                    json_target.parent.mkdir(parents=True, exist_ok=True)
                    json_file = open(tmp_json or json_target, "a" if json_in_place else "w")
                except OSError as e:
                    raise FerError(f"cannot write {args.json}: {e.strerror}") from e
            reader = FrameReader(cap)
            while True:
                ok, frame = reader.read()
                index += 1
                bar.update(0, completed=min(index + ok, expected))
                if not ok:
                    if index < announced and unread_run < UNREAD_RUN_LIMIT:
                        undecoded, unread_run = undecoded + 1, unread_run + 1
                        continue
                    ran_out = True
                    break
                unread_run = 0
                t0 = time.perf_counter()
                first_read = t0 if first_read is None else first_read
                if clock:
                    seconds = t0 - first_read
                else:
                    stamp = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
                    if first_stamp is None:  # a file's first: 0, or where its frames start
                        first_stamp = 0.0 if source.is_file() else stamp
                    stamped = stamp > first_stamp or (index == 0 and stamp == first_stamp)
                    seconds = stamp - first_stamp if stamped else index / rate
                faces = tracker.update(frame)
                with_faces += bool(faces)
                recent = (recent + [time.perf_counter() - t0])[-30:]
                fps = len(recent) / max(sum(recent), 1e-9)
                if args.output or args.show:
                    draw(frame, faces, fps, bars=not args.no_bars)
                if video:
                    video.write(frame, t0, reader.took)
                frames += 1  # made (and in the video), whatever its JSON line meets
                if json_file:
                    faces_d = [f.to_dict() for f in faces]
                    record = {
                        "frame": index,
                        "time": round(seconds, 3),
                        "detector": tracker.detector_name,
                        "boxes": [f["box"] for f in faces_d],
                        "landmarks": [f["landmarks"] for f in faces_d],
                        "labels": [f["emotion"] for f in faces_d],
                        "probabilities": [list(f["probabilities"].values()) for f in faces_d],
                    }
                    json_file.write(json.dumps(record) + "\n")
                    json_file.flush()  # line by line: `tail -F` on the .part follows a live run
                if args.show:
                    cv2.imshow("fer", frame)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                if args.max_frames and frames >= args.max_frames:
                    break
            finished = True
        except KeyboardInterrupt:
            finished, code = True, 130  # 128 + SIGINT
        except BrokenPipeError:  # `--json - | head`: the reader has what it wanted; stop there
            stdout_gone()
            finished, code = True, 141  # 128 + SIGPIPE, as a process SIGPIPE ended reports
        except Terminated as e:  # 128 + SIGTERM (or SIGHUP), as a shell reports it
            finished, code, stopped_by = True, e.code, e.name
        finally:
            run.finishing()  # the files are completed whatever arrives now, a second Ctrl-C too
            with contextlib.suppress(OSError):  # a terminal gone (SIGHUP): the files still are
                bar.stop()
            try:
                if reader is None or reader.close():
                    cap.release()
                if video is not None:
                    video.release()
                    if video.error is not None:
                        finished = False  # the video lacks frames: it is not kept
                if json_file is sys.stdout:
                    try:
                        json_file.flush()
                    except BrokenPipeError:  # its reader left before the last lines: as above
                        stdout_gone()
                        code = code or 141
                elif json_file:
                    json_file.close()
            except BaseException:  # the files could not be completed (the video's held frames,
                finished = False  # a full disk): none is kept
                raise
            finally:
                if not finished:  # an error: no half-written files are left behind
                    for tmp in (tmp_video, tmp_json):
                        if tmp is not None:
                            with contextlib.suppress(OSError):  # one never made cannot be removed
                                Path(tmp).unlink(missing_ok=True)
                    for folders in made:
                        remove_empty(folders)
    if video is not None:
        video.check()
    if frames == 0:
        for tmp in (tmp_video, tmp_json):
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        for folders in made:
            remove_empty(folders)
        if not code:
            raise FerError(f"no frames could be read from {args.source}")
    if tmp_video is not None and frames:
        os.replace(tmp_video, video_target)
    if tmp_json is not None and frames:
        os.replace(tmp_json, json_target)
    total = time.perf_counter() - start

    def say(text: str) -> None:
        """A line on stderr; a run a signal stopped says nothing where its terminal is gone
        (SIGHUP as the window closed), and keeps its exit status."""
        try:
            print(text, file=sys.stderr)
        except OSError:
            if not code:
                raise

    if undecoded > unread_run:
        say(
            f"warning: {counted(undecoded - unread_run, 'frame')} of {args.source} could not be "
            "decoded (a damaged video?) and are left out; the JSON lines keep the video's frame "
            "numbers",
        )
    if frames and not with_faces:
        say(
            f"note: no face found in {counted(frames, 'frame')}; the smallest face looked for was "
            f"{tracker.min_face} px (--min-face sets it)",
        )
    last = index - unread_run  # the frames up to the last one decoded
    if ran_out and announced - last > max(2, ANNOUNCED_SLACK * announced):  # (not a stop)
        say(
            f"warning: {args.source} ended after {last} of the {announced} frames it announces "
            "(a half-copied or damaged file?)",
        )
    say(
        {
            0: "",
            130: "stopped by Ctrl-C: ",
            141: "stopped, its reader gone: ",
        }.get(code, f"stopped by {stopped_by}: ")
        + f"{counted(frames, 'frame')} in {total:.1f} s ({frames / total:.1f} FPS end to end, {fps:.1f} FPS processing)"
        + (f"; wrote {args.output}" if args.output and frames else "")
        + (f"; wrote {args.json}" if args.json and args.json != "-" and frames else ""),
    )
    return code


def frames_progress(total: int):
    """A progress bar on stderr over a video file's `total` frames (task 0), updated a few times a
    second and gone once the run ends; none for a camera or a stream (no total), nor where stderr
    is no terminal."""
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress

    console = Console(stderr=True)
    bar = Progress(
        *Progress.get_default_columns()[:2],  # what it reads, and the bar
        MofNCompleteColumn(),
        *Progress.get_default_columns()[2:],  # the share done, the time left
        console=console,
        transient=True,
        redirect_stdout=False,  # --json - writes its lines to stdout, not through the bar
        redirect_stderr=False,
        disable=not (total > 0 and console.is_terminal),
    )
    bar.add_task("reading frames", total=total)
    return bar


def _has_gui() -> bool:
    if not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or sys.platform in ("win32", "darwin")
    ):
        return False
    return "GUI: NONE" not in cv2.getBuildInformation().replace(" ", "").upper().replace(
        "GUI:NONE", "GUI: NONE"
    )


if __name__ == "__main__":
    run_cli(main)
