"""What fer.predict and fer.detect write: output paths that cannot be written are refused before
any photo or frame is read (never after hours of work), an output never replaces an input, a
closed pipe ends a run as the reader wanted, and names that are not UTF-8 still come out."""

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.predict import main as predict_main
from tests.conftest import face, make_video, photo_with
from tests.test_errors import assert_one_line_error, cli


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), face(i, i))
    return folder


@pytest.fixture
def no_reading(monkeypatch):
    """Any photo read fails the test: the outputs must be refused first."""
    from fer.recognizer import EmotionRecognizer

    def read(*args, **kwargs):
        raise AssertionError("a photo was read before the outputs were checked")

    monkeypatch.setattr(EmotionRecognizer, "locate", read)


@pytest.mark.parametrize(
    "case",
    [
        "json is a folder",
        "csv under a file",
        "json is an input",
        "json and csv alike",
        "save is a file",
        "save under a file",
        "save and json alike",
        "json and csv both stdout",
        "json under a link to nothing",
    ],
)
def test_predict_refuses_outputs_it_cannot_write_before_reading_a_photo(
    tmp_path, capsys, exported, photos, no_reading, case
):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("a file")
    (tmp_path / "gone").symlink_to(tmp_path / "moved")  # a link to a folder no longer there
    photo = photos / "p0.png"
    before = photo.read_bytes()
    option, path, needle = {
        "json is a folder": (["--json"], tmp_path / "folder", "is a folder"),
        "csv under a file": (["--csv"], tmp_path / "file" / "out.csv", "cannot write"),
        "json is an input": (["--json"], photo, "would overwrite"),
        "json and csv alike": (["--json", str(tmp_path / "o"), "--csv"], tmp_path / "o", "both"),
        "save is a file": (["--save"], tmp_path / "file", "not a folder"),
        "save under a file": (["--save"], tmp_path / "file" / "drawn", "cannot write"),
        "json under a link to nothing": (["--json"], tmp_path / "gone" / "p.json", "to nothing"),
        "save and json alike": (["--save", str(tmp_path / "o"), "--json"], tmp_path / "o", "both"),
        "json and csv both stdout": (["--json", "-", "--csv"], "-", "would both write to stdout"),
    }[case]
    argv = [str(photos), "--model", str(exported), "--no-detect", *option, str(path)]
    code, _, err = cli("predict", argv, capsys)
    assert_one_line_error(code, err, needle)
    assert photo.read_bytes() == before
    assert (tmp_path / "file").read_text() == "a file" and not list(tmp_path.rglob(".*"))


@pytest.mark.parametrize(
    "case",
    [
        "output is a folder",
        "json is a folder",
        "json under a file",
        "json is the source",
        "output is stdout",
        "output is a pipe",
        "output OpenCV cannot write",
    ],
)
def test_detect_refuses_outputs_it_cannot_write_before_reading_a_frame(
    tmp_path, capsys, exported, monkeypatch, case
):
    import fer.detect

    video = make_video(tmp_path / "clip.mp4", frames=4)
    before = video.read_bytes()
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("a file")
    os.mkfifo(tmp_path / "pipe")  # as /dev/null is a device: was replaced by the video file
    option, path, needle = {
        "output is a folder": ("--output", tmp_path / "folder", "is a folder"),
        "json is a folder": ("--json", tmp_path / "folder", "is a folder"),
        "json under a file": ("--json", tmp_path / "file" / "x.jsonl", "cannot write"),
        "json is the source": ("--json", video, "would overwrite"),
        "output is stdout": ("--output", "-", "a video cannot go to stdout"),
        "output is a pipe": ("--output", tmp_path / "pipe", "a device or a pipe"),
        # was refused only at the first frame, once the model was loaded and the frame read
        "output OpenCV cannot write": ("--output", tmp_path / "new" / "x.gif", "cannot write"),
    }[case]

    def no_source(*args):
        raise AssertionError("the video was opened before the outputs were checked")

    monkeypatch.setattr(fer.detect, "open_source", no_source)
    monkeypatch.chdir(tmp_path)
    argv = [
        "--source",
        str(video),
        "--model",
        str(exported),
        "--detector",
        "haar",
        option,
        str(path),
    ]
    code, _, err = cli("detect", argv, capsys)
    assert_one_line_error(code, err, needle)
    assert video.read_bytes() == before and (tmp_path / "file").read_text() == "a file"
    assert not list(tmp_path.rglob(".*")), "half-written files left"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("when", ["after a line", "at the end"])
def test_detect_json_to_a_pipe_its_reader_closed_keeps_the_video(tmp_path, exported, when):
    """`fer.detect --json - --output a.mp4 | head -1`: the reader leaves after one line; the run
    stops there (as a process killed by SIGPIPE would, exit 141) with no traceback, and the video
    of the frames it made is kept, playable. So too when the lines of a short video reach the
    pipe only as the run ends (buffered), after its reader left."""
    # longer than the reader takes to leave; or all its lines in one buffer
    video = make_video(tmp_path / "clip.mp4", frames=600 if when == "after a line" else 10)
    out = tmp_path / "a.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fer.detect", "--source", str(video), "--model", str(exported)]
        + ["--detector", "haar", "--json", "-", "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
            **({"PYTHONUNBUFFERED": "1"} if when == "after a line" else {}),
        },
    )
    if when == "after a line":
        assert proc.stdout.readline().startswith(b'{"frame": 0')
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    cap = cv2.VideoCapture(str(out))
    assert cap.read()[0], "the video is not playable"
    cap.release()


def test_save_keeps_photos_of_one_name_and_two_kinds_apart(tmp_path, capsys, exported):
    """face.gif is saved as face.gif.png (OpenCV writes no GIF), so face.png keeps its own name."""
    folder = tmp_path / "in"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(face(3, 0)).save(folder / "face.gif")
    cv2.imwrite(str(folder / "face.png"), face(5, 1))
    code, _, err = cli(
        "predict",
        [str(folder), "--model", str(exported), "--no-detect", "--save", str(tmp_path / "out")],
        capsys,
    )
    assert code == 0, err
    saved = (tmp_path / "out").iterdir()
    assert sorted(p.name for p in saved if p.name != ".fer-predict-save") == [
        "face.gif.png",
        "face.png",
    ]


def test_save_draws_the_emotion_of_a_whole_picture_read_with_no_detect(tmp_path, capsys, exported):
    """Was: --no-detect --save wrote each picture as it was, nothing drawn, where --help promises
    its face drawn (emotion, probability bars)."""
    folder = tmp_path / "in"
    folder.mkdir()
    crop = cv2.resize(face(3, 0), (240, 240))
    cv2.imwrite(str(folder / "face.png"), crop)
    small = cv2.resize(face(3, 0), (64, 64))  # a 64x64 crop: no room for them
    cv2.imwrite(str(folder / "small.png"), small)
    argv = [
        str(folder),
        "--model",
        str(exported),
        "--no-detect",
        "--json",
        str(tmp_path / "p.json"),
    ]
    code, _, err = cli("predict", [*argv, "--save", str(tmp_path / "out")], capsys)
    assert code == 0, err
    answers = {Path(r["file"]).name: r for r in json.loads((tmp_path / "p.json").read_text())}
    emotion = answers["face.png"]["emotion"]
    saved = cv2.imread(str(tmp_path / "out" / "face.png"))
    from fer.annotate import COLORS

    assert tuple(int(v) for v in saved[2, 2]) == COLORS[emotion]  # its label, at the top left
    changed = np.abs(saved.astype(int) - crop[..., None]).max(2) > 10
    assert 0.04 < changed.mean() < 0.5  # label and bars drawn, the face still seen
    # the review of the change: a label and panel would hide all of a 48x48 crop
    saved = cv2.imread(str(tmp_path / "out" / "small.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(saved, small) and "small.png" in answers


def test_a_file_name_that_is_not_utf8_is_read_and_written_back_as_it_is(tmp_path, exported):
    """Old camera cards and zip archives hold names in other encodings: the photo is read, printed
    and its name written to the CSV as the same bytes, on a UTF-8 terminal."""
    folder = tmp_path / "in"
    folder.mkdir()
    name = b"caf\xe9.png"  # Latin-1, not UTF-8
    ok, data = cv2.imencode(".png", face(3, 0))
    with open(os.fsencode(folder) + b"/" + name, "wb") as f:
        f.write(data.tobytes())
    out = tmp_path / "out.csv"
    r = subprocess.run(
        [sys.executable, "-m", "fer.predict", str(folder), "--model", str(exported)]
        + ["--no-detect", "--csv", str(out)],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"},
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert name in r.stdout and name in out.read_bytes()


def test_predict_stopped_midway_counts_the_photos_that_failed_as_done(
    tmp_path, capsys, exported, photos, monkeypatch
):
    """ "after N of M photos" counts every photo gone through, an unreadable one too: the first
    photo unreadable, stopped while reading the third, 2 of 3 are done (it said 1 of 3)."""
    from fer.recognizer import EmotionRecognizer

    (photos / "p0.png").write_text("not a photo")
    locate, calls = EmotionRecognizer.locate, []

    def stopped_at_the_second_face(self, image):
        calls.append(image)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return locate(self, image)

    monkeypatch.setattr(EmotionRecognizer, "locate", stopped_at_the_second_face)
    argv = [str(photos), "--model", str(exported), "--no-detect"]
    code, out, err = cli("predict", argv, capsys)
    assert code == 130 and "after 2 of 3 photos" in err, err
    assert "p1.png" in out and "p0.png: not a readable image" in err


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_predict_stopped_midway_writes_what_it_read(
    tmp_path, capsys, exported, photos, stop, monkeypatch
):
    """Ctrl-C or SIGTERM an hour into a photo library keeps the records of the photos read so far
    (JSON and CSV, complete files) and says how far it got; exit 130 or 143."""
    import signal

    from fer.recognizer import EmotionRecognizer

    locate, calls = EmotionRecognizer.locate, []

    def stopped_at_the_third(self, image):
        calls.append(image)
        if len(calls) == 3:
            if stop == "sigterm":  # what SIGTERM would do here, without killing pytest
                handler = signal.getsignal(signal.SIGTERM)
                assert callable(handler), "SIGTERM would end fer.predict, writing nothing"
                handler(signal.SIGTERM, None)
            raise KeyboardInterrupt
        return locate(self, image)

    monkeypatch.setattr(EmotionRecognizer, "locate", stopped_at_the_third)
    out, table = tmp_path / "out.json", tmp_path / "out.csv"
    before = signal.getsignal(signal.SIGTERM)
    argv = [str(photos), "--model", str(exported), "--no-detect", "--json", str(out)]
    code, _, err = cli("predict", [*argv, "--csv", str(table)], capsys)
    assert code == (143 if stop == "sigterm" else 130), err
    assert "2 of 3 photos" in err and "Traceback" not in err
    assert [Path(r["file"]).name for r in json.loads(out.read_text())] == ["p0.png", "p1.png"]
    assert len(table.read_text().splitlines()) == 3  # a header and two faces
    assert signal.getsignal(signal.SIGTERM) == before  # put back as it was


def test_a_damaged_bmp_or_tiff_is_one_line_on_stderr(tmp_path):
    """OpenCV's own log lines ([ERROR:0@0.3] global grfmt_tiff.cpp ...) do not come before fer's
    one line about the file."""
    folder = tmp_path / "in"
    folder.mkdir()
    for kind in (".bmp", ".tif"):
        data = cv2.imencode(kind, np.tile(face(3, 0), (4, 4)))[1].tobytes()
        (folder / f"cut{kind}").write_bytes(data[: len(data) // 2])
    r = subprocess.run(
        [sys.executable, "-m", "fer.predict", str(folder), "--no-detect"],
        capture_output=True,
        text=True,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 3, r.stderr  # two errors and the summary
    assert all(line.startswith("error: ") for line in lines[:2]) and "2 errors" in lines[2]
    # one of each is said in the singular (was: '1 faces in 1 images, 1 errors')
    cv2.imwrite(str(folder / "face.png"), face(3, 0))
    (folder / "cut.tif").unlink()
    r = subprocess.run(
        [sys.executable, "-m", "fer.predict", str(folder), "--no-detect"],
        capture_output=True,
        text=True,
    )
    assert r.stderr.strip().splitlines()[-1] == "1 face in 1 image, 1 error", r.stderr


def test_a_16_bit_picture_is_read_alike_by_every_path(tmp_path, capsys, exported):
    """A face stored in 16 bits with 12-bit values (a camera's raw range) comes to 8 bits the same
    way for the detector and its crops, for --no-detect, and for the copy --save draws on (the
    detector's path stretched it to the picture's own brightest pixel, the others by 65535)."""
    from fer.common import to_face48
    from fer.faces import to_gray

    big = cv2.resize(face(3, 0), (96, 96)).astype(np.uint16) * 16  # at most 4095
    assert np.array_equal(to_face48(to_gray(big)), to_face48(big))
    cv2.imwrite(str(tmp_path / "deep.png"), big)
    argv = [str(tmp_path / "deep.png"), "--model", str(exported), "--detector", "haar"]
    code, _, err = cli("predict", [*argv, "--save", str(tmp_path / "out")], capsys)
    assert code == 0, err
    saved = cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_GRAYSCALE)
    assert np.abs(saved.astype(int) - to_gray(big)).max() <= 1  # nothing drawn: no face found


@pytest.mark.parametrize("top", [200, 4095])
def test_a_16_bit_picture_gives_the_python_api_the_same_pixels_from_a_file_and_from_pil(
    tmp_path, top
):
    """Was: a PIL image of a 16-bit PNG whose values stayed within 0-255 was taken as 8-bit, while
    the file itself was read as 16-bit (by the range its values use): one picture, two images."""
    from PIL import Image

    from fer.recognizer import as_image

    deep = (np.linspace(0, top, 64 * 64).reshape(64, 64)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    with Image.open(tmp_path / "deep.png") as image:
        from_pil = as_image(image)
    from fer.common import to_uint8

    assert np.array_equal(to_uint8(from_pil), to_uint8(as_image(tmp_path / "deep.png")))


def test_faces_in_a_12_bit_photo_are_found_and_read_as_in_its_8_bit_original(real_faces):
    """A photo whose 16-bit pixels hold 12-bit values (a raw converter's output) is not read as a
    nearly black one: the same faces, the same emotions, as its 8-bit original."""
    from fer import EmotionRecognizer
    from fer.demo import background
    from fer.faces import iou

    photo = background(640, 480)
    for x, real in zip((60, 340), real_faces):
        photo[140:380, x : x + 240] = cv2.resize(real, (240, 240))[..., None]
    recognizer = EmotionRecognizer()
    eight, twelve = recognizer.predict(photo), recognizer.predict(photo.astype(np.uint16) * 16)
    assert len(eight) == 2 and len(twelve) == 2
    for a, b in zip(eight, twelve):
        assert iou(a.box, b.box) > 0.9 and a.emotion == b.emotion


@pytest.mark.parametrize(
    "kind, scale",
    [(np.int16, 128), (np.int32, 257), (np.int8, None)],
    ids=["int16", "int32", "int8"],
)
def test_a_photo_of_any_integer_type_is_read_as_its_8_bit_original(
    real_faces, tmp_path, capsys, kind, scale
):
    """TIFFs hold signed and 32-bit pixels (scientific cameras, converters): such a photo gives
    the faces and emotions of its 8-bit original (it was a TypeError traceback that ended
    fer.predict and lost every result)."""
    from fer import EmotionRecognizer
    from fer.demo import background
    from fer.faces import iou

    photo = cv2.cvtColor(background(640, 480), cv2.COLOR_BGR2GRAY)
    for x, real in zip((60, 340), real_faces):
        photo[140:380, x : x + 240] = cv2.resize(real, (240, 240))
    # int8 holds 7 bits: the photo at half its range
    stored = (photo // 2).astype(kind) if scale is None else photo.astype(kind) * scale
    original = photo if scale is not None else (photo // 2).astype(np.uint8) * 2
    path = tmp_path / f"{np.dtype(kind).name}.tif"
    assert cv2.imwrite(str(path), stored)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == kind
    eight = EmotionRecognizer().predict(original)
    assert len(eight) == 2
    code, _, err = cli("predict", [str(path), "--json", str(tmp_path / "p.json")], capsys)
    assert code == 0, err
    deep = json.loads((tmp_path / "p.json").read_text())
    assert len(deep) == 2
    for a, b in zip(eight, deep):
        assert iou(a.box, b["box"]) > 0.9 and a.emotion == b["emotion"]


def test_a_photo_that_fails_unexpectedly_is_one_error_and_the_others_are_written(
    photos, tmp_path, capsys, exported, monkeypatch
):
    """A photo that fails in a way nobody foresaw (a decoder's or the detector's exception) is one
    line naming it; the other photos are still scored and written, and the exit status says that
    one failed. --debug shows the traceback instead. (Was: the exception ended the run and every
    result was lost.)"""
    from fer.recognizer import EmotionRecognizer

    locate, p1 = EmotionRecognizer.locate, cv2.imread(str(photos / "p1.png"), cv2.IMREAD_UNCHANGED)

    def fails_on_p1(self, image):
        if image.shape == p1.shape and np.array_equal(image, p1):
            raise ValueError("an unforeseen failure")
        return locate(self, image)

    monkeypatch.setattr(EmotionRecognizer, "locate", fails_on_p1)
    out = tmp_path / "p.json"
    argv = [str(photos), "--model", str(exported), "--no-detect", "--json", str(out)]
    code, _, err = cli("predict", argv, capsys)
    assert code == 1, err
    (line,) = [x for x in err.splitlines() if "p1.png" in x]
    assert line.startswith("error: ") and "ValueError: an unforeseen failure" in line
    assert "Traceback" not in err
    assert sorted(Path(r["file"]).name for r in json.loads(out.read_text())) == ["p0.png", "p2.png"]
    with pytest.raises(ValueError, match="unforeseen"):
        cli("predict", [*argv, "--debug"], capsys)


def test_photos_in_linked_folders_are_read_once_and_a_loop_ends(tmp_path, capsys, exported):
    """A library that links a folder in (lib/holiday -> ../trip) has its photos read; a link back
    up the tree (lib/again -> lib) does not read them twice or run forever, and a photo the
    library holds is named by its own path, not by a link to its folder met first."""
    lib, trip = tmp_path / "lib", tmp_path / "trip"
    lib.mkdir(), trip.mkdir()
    cv2.imwrite(str(lib / "home.png"), face(3, 0))
    cv2.imwrite(str(trip / "beach.png"), face(5, 1))
    (lib / "holiday").symlink_to(trip, target_is_directory=True)
    (lib / "again").symlink_to(lib, target_is_directory=True)
    (lib / "2023" / "summer").mkdir(parents=True)  # and a link to a folder of its own, met first
    cv2.imwrite(str(lib / "2023" / "summer" / "lake.png"), face(4, 2))
    for name in ("1_best", "z", "picks/best", "a/b/c"):
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).symlink_to(lib / "2023" / "summer", target_is_directory=True)
    out = tmp_path / "out.json"
    code, _, err = cli(
        "predict", [str(lib), "--model", str(exported), "--no-detect", "--json", str(out)], capsys
    )
    assert code == 0, err
    read = sorted(Path(r["file"]).relative_to(tmp_path) for r in json.loads(out.read_text()))
    assert read == [  # a photo the library holds under its own path, a linked-in one by the link
        Path("lib/2023/summer/lake.png"),
        Path("lib/holiday/beach.png"),
        Path("lib/home.png"),
    ]


def test_the_tracker_takes_a_frame_as_predict_takes_a_picture(exported, real_faces):
    """tracker.update reads what predict reads (a PIL image, float 0..1) and refuses what it
    refuses (float 0..255), with the same errors."""
    from PIL import Image

    from fer.recognizer import EmotionRecognizer, ImageError

    rec = EmotionRecognizer(exported)
    frame = photo_with(real_faces[:1], 320, 240, 150, x=80, y=40)
    answer = rec.tracker(smooth=1).update(frame)
    assert len(answer) == 1  # a face found: the answers compared are never [] == []
    assert rec.tracker(smooth=1).update(Image.fromarray(frame[:, :, ::-1])) == answer
    assert rec.tracker(smooth=1).update(frame / 255.0) == answer
    tracker = rec.tracker(smooth=1)
    for bad in (frame * 1.0, frame.astype(bool)):
        with pytest.raises((ImageError, TypeError)) as expected:
            rec.predict(bad)
        with pytest.raises(expected.type, match=re.escape(str(expected.value))):
            tracker.update(bad)


def test_sigterm_while_predict_writes_its_results_does_not_cut_them_short(
    tmp_path, capsys, exported, photos, monkeypatch
):
    """The run is over, its results being written (thousands of lines on a large library):
    SIGTERM now neither cuts the JSON short nor ends in a traceback."""
    import signal

    import fer.predict

    write = fer.predict.write_text

    def write_meeting_sigterm(path, text):
        handler = signal.getsignal(signal.SIGTERM)  # what SIGTERM would do now
        if callable(handler):
            handler(signal.SIGTERM, None)
        write(path, text)

    monkeypatch.setattr(fer.predict, "write_text", write_meeting_sigterm)
    out = tmp_path / "out.json"
    argv = [str(photos), "--model", str(exported), "--no-detect", "--json", str(out)]
    code, _, err = cli("predict", argv, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert len(json.loads(out.read_text())) == 3


def test_a_stoppable_run_turns_sigterm_into_a_stop_then_holds_both_while_finishing():
    """fer.common.Stoppable, under fer.predict and fer.detect: SIGTERM stops the work as Ctrl-C
    does; while the results are written both are ignored; afterwards both handlers are back."""
    import signal

    from fer.common import Stoppable, Terminated

    def before(signum, frame):
        raise AssertionError("the handler from before the run was called during it")

    previous = signal.signal(signal.SIGTERM, before)
    try:
        interrupt = signal.getsignal(signal.SIGINT)
        with pytest.raises(Terminated), Stoppable():
            os.kill(os.getpid(), signal.SIGTERM)
        with Stoppable() as run:
            run.finishing()
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.getsignal(signal.SIGINT) is interrupt
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_save_that_fails_midway_does_not_end_the_run(
    tmp_path, capsys, exported, photos, monkeypatch
):
    """A save made as the run goes that fails (a disk full for a moment) is one warning and the
    run goes on to write every photo's results. (Was: the error ended the run and lost them.)"""
    import fer.predict
    from fer.common import FerError

    monkeypatch.setattr(fer.predict, "SAVE_EVERY", 0.0)  # saved before each photo
    write_text, calls = fer.predict.write_text, []

    def full_at_first(path, text):
        calls.append(path)
        if len(calls) <= 2:
            raise FerError(f"could not write {path}: No space left on device")
        write_text(path, text)

    monkeypatch.setattr(fer.predict, "write_text", full_at_first)
    out = tmp_path / "out.json"
    argv = [str(photos), "--model", str(exported), "--no-detect", "--json", str(out)]
    code, _, err = cli("predict", argv, capsys)
    assert code == 0, err
    assert err.count("No space left on device") == 1 and "warning: " in err
    assert [Path(r["file"]).name for r in json.loads(out.read_text())] == [
        "p0.png",
        "p1.png",
        "p2.png",
    ]


def test_a_run_saves_its_results_as_it_goes_and_resume_reads_only_what_they_lack(
    tmp_path, capsys, exported, photos, monkeypatch
):
    """A library run killed midway (SIGKILL, out of memory, power) keeps what it read: --json and
    --csv are saved as it goes; `--resume` then reads only the photos the JSON lacks and writes
    every photo's records, the earlier ones as they were, in the photos' order."""
    import fer.predict
    from fer.recognizer import EmotionRecognizer

    monkeypatch.setattr(fer.predict, "SAVE_EVERY", 0.0)  # saved before each photo
    out, table = tmp_path / "out.json", tmp_path / "out.csv"
    locate, seen = EmotionRecognizer.locate, []

    def killed_at_the_third(self, image):
        seen.append(image)
        if len(seen) == 3:  # what a run killed here leaves on disk
            on_disk = json.loads(out.read_text())
            assert [Path(r["file"]).name for r in on_disk] == ["p0.png", "p1.png"]
            assert len(table.read_text().splitlines()) == 3
            raise SystemExit(-9)  # no results written after this: as SIGKILL
        return locate(self, image)

    monkeypatch.setattr(EmotionRecognizer, "locate", killed_at_the_third)
    argv = [str(photos), "--model", str(exported), "--no-detect", "--json", str(out)]
    with pytest.raises(SystemExit):
        fer.predict.main([*argv, "--csv", str(table)])
    before = json.loads(out.read_text())
    cv2.imwrite(str(photos / "p3.png"), face(4, 3))
    seen.clear()

    def counted(self, image):
        seen.append(image)
        return locate(self, image)

    monkeypatch.setattr(EmotionRecognizer, "locate", counted)
    code, _, err = cli("predict", [*argv, "--csv", str(table), "--resume"], capsys)
    assert code == 0, err
    assert len(seen) == 2  # p2 and p3: p0 and p1 are not read again
    after = json.loads(out.read_text())
    assert [Path(r["file"]).name for r in after] == ["p0.png", "p1.png", "p2.png", "p3.png"]
    assert after[:2] == before
    assert len(table.read_text().splitlines()) == 5
    assert "4 faces in 4 images (2 read by the run resumed)" in err
    # a photo replaced since is read again, its old records dropped (was: the records of the
    # photo that had its name were kept for it, and it was never read)
    cv2.imwrite(str(photos / "p1.png"), face(6, 9))
    later = out.stat().st_mtime_ns + 10**9
    os.utime(photos / "p1.png", ns=(later, later))
    seen.clear()
    code, _, err = cli("predict", [*argv, "--resume"], capsys)
    assert code == 0 and "1 photo changed since" in err, err
    assert len(seen) == 1 and "4 faces in 4 images (3 read by the run resumed)" in err
    again = json.loads(out.read_text())
    assert [Path(r["file"]).name for r in again] == ["p0.png", "p1.png", "p2.png", "p3.png"]
    assert again[1]["probabilities"] != after[1]["probabilities"] and again[2:] == after[2:]


def test_resume_reads_again_a_photo_replaced_by_an_older_file_or_changed_while_not_given(
    capsys, exported, photos, monkeypatch
):
    """A photo replaced since the JSON file was written by a file that keeps an older time of
    change (as mv, cp -p, rsync -a and unzip leave it) is read again, and so is one changed
    while a --resume run was given other photos. Were: kept with the records of the photo it
    replaced (the rule looked at the time of change alone), and hidden for good by the file the
    other run wrote."""
    out = photos.parent / "out.json"
    argv = ["--model", str(exported), "--no-detect", "--json", str(out)]
    code, _, err = cli("predict", [str(photos), *argv], capsys)
    assert code == 0, err
    first = json.loads(out.read_text())
    from fer.recognizer import EmotionRecognizer

    seen = []
    locate = EmotionRecognizer.locate

    def counted(self, image):
        seen.append(image)
        return locate(self, image)

    monkeypatch.setattr(EmotionRecognizer, "locate", counted)
    time.sleep(0.05)  # past the clock tick of the JSON file's writing
    older = photos.parent / "older.png"
    cv2.imwrite(str(older), face(6, 9))
    long_ago = out.stat().st_mtime_ns - 10**12
    os.utime(older, ns=(long_ago, long_ago))
    os.replace(older, photos / "p1.png")  # the kept time of change is before the JSON file's
    code, _, err = cli("predict", [str(photos), *argv, "--resume"], capsys)
    assert code == 0 and "1 photo changed since" in err, err
    assert len(seen) == 1
    again = json.loads(out.read_text())
    assert again[1]["probabilities"] != first[1]["probabilities"]
    assert [r["probabilities"] for r in again[::2]] == [r["probabilities"] for r in first[::2]]
    # p2 changed, then a --resume run given p0 alone: p2's records are dropped, not kept for a
    # later run to take as p2's (that file written after the change hid it)
    time.sleep(0.05)
    cv2.imwrite(str(photos / "p2.png"), face(1, 5))
    seen.clear()
    code, _, err = cli("predict", [str(photos / "p0.png"), *argv, "--resume"], capsys)
    assert code == 0 and "1 photo not given changed since" in err, err
    assert not seen and "p2.png" not in out.read_text()
    code, _, err = cli("predict", [str(photos), *argv, "--resume"], capsys)
    assert code == 0 and len(seen) == 1, err
    last = json.loads(out.read_text())
    assert [Path(r["file"]).name for r in last] == ["p0.png", "p1.png", "p2.png"]
    assert last[2]["probabilities"] != again[2]["probabilities"]


def test_resume_needs_a_json_file_and_refuses_one_fer_did_not_write(
    tmp_path, capsys, exported, photos
):
    argv = [str(photos), "--model", str(exported), "--no-detect", "--resume"]
    code, _, err = cli("predict", argv, capsys)
    assert_one_line_error(code, err, "--resume reads back --json FILE")
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}')
    code, _, err = cli("predict", [*argv, "--json", str(notes)], capsys)
    assert_one_line_error(code, err, "is not what fer.predict --json writes", "notes.json")
    assert notes.read_text() == '{"my": "notes"}'
    for text in ('["profile.jpg"]', '[{"file": "p0.png"}]'):  # names, or records in name only
        notes.write_text(text)
        code, _, err = cli("predict", [*argv, "--json", str(notes)], capsys)
        assert_one_line_error(code, err, "is not what fer.predict --json writes", "notes.json")
        assert notes.read_text() == text
    fresh = tmp_path / "fresh.json"  # not there yet: every photo is read
    code, _, err = cli("predict", [*argv, "--json", str(fresh)], capsys)
    assert code == 0 and len(json.loads(fresh.read_text())) == 3, err


def test_resume_finds_the_photos_however_they_were_named_and_loses_no_record(
    tmp_path, capsys, exported, photos, monkeypatch
):
    """Was: a run resumed from another folder read every photo again; the records of photos it
    was not given were dropped from the file; and resumed records kept their old names beside
    the new ones' of the photos read."""
    from fer.recognizer import EmotionRecognizer

    locate, seen = EmotionRecognizer.locate, []

    def counted(self, image):
        seen.append(image)
        return locate(self, image)

    monkeypatch.setattr(EmotionRecognizer, "locate", counted)
    monkeypatch.chdir(tmp_path)
    out, model = tmp_path / "out.json", ["--model", str(exported), "--no-detect"]
    assert cli("predict", ["photos", *model, "--json", "out.json"], capsys)[0] == 0
    first = json.loads(out.read_text())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the same photos, named from another folder
    seen.clear()
    resume = ["--json", str(out), "--resume"]
    code, _, err = cli("predict", ["../photos", *model, *resume], capsys)
    assert code == 0 and not seen, err
    again = json.loads(out.read_text())
    assert [r["file"] for r in again] == [f"../photos/p{i}.png" for i in range(3)]
    assert [{**r, "file": 0} for r in again] == [{**r, "file": 0} for r in first]
    code, _, err = cli("predict", ["../photos/p1.png", *model, *resume], capsys)
    assert code == 0 and not seen and "also keeps the records of 2 photos" in err
    assert sorted(map(json.dumps, json.loads(out.read_text()))) == sorted(map(json.dumps, again))
    drawn = ["--save", str(tmp_path / "drawn")]  # copies to draw: those photos are read again
    code, _, err = cli("predict", ["../photos", *model, *resume, *drawn], capsys)
    assert code == 0 and len(seen) == 3 and len(json.loads(out.read_text())) == 3
    seen.clear()
    before = out.read_text()
    (tmp_path / "other").mkdir()
    cv2.imwrite(str(tmp_path / "other" / "q.png"), face(1, 1))
    code, _, err = cli("predict", [str(tmp_path / "other"), *model, *resume], capsys)
    assert_one_line_error(code, err, "none of the 3 photos of")
    assert out.read_text() == before and not seen


def test_predict_stopped_while_classifying_the_last_batch_counts_every_photo(
    capsys, exported, photos, monkeypatch
):
    """Was: Ctrl-C while the last photos' faces were classified said 'after 2 of 3 photos', where
    all 3 were read and are written."""
    from fer.recognizer import EmotionRecognizer

    classify, calls = EmotionRecognizer.classify, []

    def stopped_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return classify(self, *args, **kwargs)

    monkeypatch.setattr(EmotionRecognizer, "classify", stopped_once)
    argv = [str(photos), "--model", str(exported), "--no-detect", "--json", "-"]
    code, out, err = cli("predict", argv, capsys)
    assert code == 130 and "after 3 of 3 photos" in err, err
    assert len(json.loads(out)) == 3


def _read_pipe(path: Path) -> dict:
    """Reads the named pipe `path` in a thread (its writer blocks until a reader opens it)."""
    import threading

    got = {}

    def read():
        with open(path, "rb") as f:
            got["data"] = f.read()

    threading.Thread(target=read, daemon=True).start()
    return got


def test_outputs_go_through_links_and_into_pipes_without_replacing_them(tmp_path, capsys):
    """--json through a symbolic link writes the file it names and keeps the link; --json to a
    device or a named pipe (/dev/null, /dev/stdout) writes into it. (Was: both were replaced by a
    regular file, and as root /dev/null itself.)"""
    import time

    video = make_video(tmp_path / "clip.mp4", frames=3)
    (tmp_path / "runs").mkdir()
    link = tmp_path / "latest.json"
    link.symlink_to(tmp_path / "runs" / "today.json")  # names a file not there yet
    faces = tmp_path / "faces"
    faces.mkdir()
    cv2.imwrite(str(faces / "a.png"), face(3, 0))
    code, _, err = cli("predict", [str(faces), "--no-detect", "--json", str(link)], capsys)
    assert code == 0, err
    assert link.is_symlink() and json.loads(link.read_text())[0]["file"].endswith("a.png")

    for module, argv in (
        ("predict", [str(faces), "--no-detect", "--csv"]),
        ("detect", ["--source", str(video), "--detector", "haar", "--json"]),
    ):
        pipe = tmp_path / f"{module}.pipe"
        os.mkfifo(pipe)
        got = _read_pipe(pipe)
        code, _, err = cli(module, [*argv, str(pipe)], capsys)
        assert code == 0, err
        for _ in range(100):  # the reader thread has the bytes once the writer closed
            if "data" in got:
                break
            time.sleep(0.05)
        assert pipe.is_fifo() and got["data"], module


def test_resume_refuses_a_file_written_with_the_other_way_of_reading(tmp_path, capsys, photos):
    """A run resumed with --no-detect from a file that looked for faces (or the other way round)
    mixed whole-image records with face records in one file, silently."""
    out = tmp_path / "out.json"
    argv = [str(photos), "--json", str(out)]
    code, _, err = cli("predict", [*argv, "--no-detect"], capsys)
    assert code == 0, err
    before = out.read_text()
    code, _, err = cli("predict", [*argv, "--resume"], capsys)
    assert_one_line_error(code, err, "read whole images (--no-detect)", "without --no-detect")
    assert out.read_text() == before


@contextlib.contextmanager
def stdout_to(log: Path):
    """fd 1 sent to `log`, appended to, as a shell's `>> log.txt` does it (in the test's body:
    pytest sends fd 1 back to its capture between a test's phases)."""
    sys.stdout.flush()
    saved, fd = os.dup(1), os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.close(fd)
    try:
        yield log
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def test_a_stream_named_as_an_output_is_appended_to_once(tmp_path, photos, monkeypatch):
    """--json /dev/stdout with stdout sent to a file (>> log.txt): the file was replaced by a new
    one (what the shell had written lost), and the saves made as photos are read each added a
    copy of the records to a pipe or a stream; now the records come once, at the end, after what
    was there."""
    import fer.predict
    from fer.common import write_text

    log = tmp_path / "log.txt"
    log.write_text("old line\n")
    with stdout_to(log):
        write_text("/dev/stdout", "a line\n")
    assert log.read_text() == "old line\na line\n"
    monkeypatch.setattr(fer.predict, "SAVE_EVERY", 0.0)  # a save before each photo
    with stdout_to(log):
        code = fer.predict.main([str(photos), "--no-detect", "--json", "/dev/fd/1"])
    assert code == 0
    text = log.read_text()
    assert text.startswith("old line\na line\n")
    records = json.loads(text.removeprefix("old line\na line\n"))  # one array, whole
    assert sorted(Path(r["file"]).name for r in records) == ["p0.png", "p1.png", "p2.png"]


def test_a_file_replaced_keeps_its_mode(tmp_path):
    """Was: every file written over was made 0644, so a results file kept private (0600) became
    readable by every user of the machine."""
    from fer.common import write_text

    private = tmp_path / "results.json"
    private.write_text("{}")
    private.chmod(0o600)
    write_text(private, '{"new": 1}')
    assert private.read_text() == '{"new": 1}' and (private.stat().st_mode & 0o777) == 0o600
    private.chmod(0o2640)  # not the setgid bit (the review of the change)
    write_text(private, "{}")
    assert (private.stat().st_mode & 0o7777) == 0o640
    old = os.umask(0o077)
    try:  # a new file as the umask says (was: 0644 whatever it said)
        write_text(tmp_path / "new.json", "{}")
    finally:
        os.umask(old)
    assert ((tmp_path / "new.json").stat().st_mode & 0o777) == 0o600


def test_an_output_set_removes_hidden_folders_of_runs_that_died(tmp_path):
    """A run killed outright (SIGKILL, a power cut) leaves its hidden folder in --out; the next
    run into that folder removes it, and leaves those of runs still going."""
    from fer.common import OutputSet

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no process now
    with OutputSet(tmp_path, ["result.txt"], "result.txt") as folder:
        name = folder.name  # .new-PID-HOST-XXXXXXXX
        (folder / "result.txt").write_text("done")
    assert name.startswith(f".new-{os.getpid()}-")
    _, _, host, random = name.split("-")
    stale = tmp_path / f".new-{dead.pid}-{host}-{random}"
    stale.mkdir()
    (stale / "model.json").write_text("{}")
    # runs going on beside this one: another process (the review: this process's own folder is
    # passed over before any check, so a check that removed live runs' folders passed the test)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    alive = [tmp_path / f".new-{pid}-{host}-abcd1234" for pid in (running.pid, os.getpid())]
    elsewhere = tmp_path / f".new-{dead.pid}-{'0' * len(host)}-{random}"  # another machine's
    mine = [tmp_path / f".new-{dead.pid}-my_photos", tmp_path / ".new-20240101123000-x"]
    try:
        for folder in (*alive, elsewhere, *mine):  # none of them its to remove
            folder.mkdir()
            (folder / "keep.txt").write_text("precious")
        with OutputSet(tmp_path, ["result.txt"], "result.txt") as folder:
            (folder / "result.txt").write_text("again")
    finally:
        running.kill()
        running.wait()
    assert not stale.exists()
    assert all((f / "keep.txt").is_file() for f in (*alive, elsewhere, *mine))
    assert (tmp_path / "result.txt").read_text() == "again"


@pytest.mark.parametrize("command", ["analyze", "evaluate", "export"])
def test_an_empty_out_is_refused_by_every_command(tmp_path, capsys, monkeypatch, command, exported):
    """--out "" (an unset variable) would be this folder: analyze wrote its figures there and
    replaced the files of an earlier run it found, evaluate wrote nothing in silence."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = {
        "analyze": ["--data", "data.csv"],
        "evaluate": ["--ckpt", str(exported), "--data", "data.csv"],
        "export": ["--ckpt", str(exported)],
    }[command]
    code, _, err = cli(command, [*argv, "--out", ""], capsys)
    assert_one_line_error(code, err, "--out")
    assert "empty" in err
    assert list(work.iterdir()) == []


def test_predict_keeps_its_json_when_stdouts_reader_leaves_early(
    tmp_path, capsys, exported, photos, monkeypatch
):
    """`fer.predict DIR --json F --csv G | head -1`: the reader of the printed lines leaves, and F
    and G are still written whole. (Was: the lines were printed before the files were written, so
    the broken pipe ended the run with neither.)"""

    class Gone(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    out, table = tmp_path / "out.json", tmp_path / "out.csv"
    argv = [str(photos), "--model", str(exported), "--no-detect", "--json", str(out)]
    with pytest.raises(BrokenPipeError):  # run_cli makes it exit 141, quietly
        predict_main([*argv, "--csv", str(table)])
    assert len(json.loads(out.read_text())) == 3
    assert len(table.read_text().splitlines()) == 4  # a header and three faces


def test_predict_names_the_folders_it_cannot_list_and_the_links_to_nothing(
    tmp_path, capsys, exported, photos, monkeypatch
):
    """A subfolder that cannot be listed and a photo's name linked to nothing are one line each on
    stderr, the other photos are read, and the exit status is 1. (Was: both passed over in
    silence, exit 0; a folder that could not be listed was said to have no images.)"""
    locked = photos / "locked"
    locked.mkdir()
    cv2.imwrite(str(locked / "q.png"), face(5, 5))
    (photos / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    os.mkfifo(photos / "pipe.jpg")  # as when named (was: passed over in a folder)
    scandir = os.scandir

    def refused(path="."):
        if Path(path) == locked:  # as a folder of mode 000 is for a user who is not root
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refused)
    code, out, err = cli("predict", [str(photos), "--model", str(exported), "--no-detect"], capsys)
    assert code == 1, err
    assert f"{locked}: Permission denied" in err
    assert f"{photos / 'gone.jpg'}: a link to nothing" in err
    assert f"{photos / 'pipe.jpg'}: a pipe or a device, not a file" in err
    assert out.count("p") >= 3 and "q.png" not in out
    code, out, err = cli("predict", [str(locked), "--model", str(exported), "--no-detect"], capsys)
    # as a missing file is: with nothing else to read, a one-line error (exit status 2)
    assert_one_line_error(code, err, f"{locked}: Permission denied")
    assert "no images in this folder" not in err


@pytest.mark.parametrize("option", ["photo", "--save", "--json", "--csv"])
def test_an_empty_path_is_refused_not_read_as_this_folder(
    tmp_path, capsys, exported, photos, monkeypatch, option
):
    """`fer.predict "$DIR"` with DIR unset read the whole current folder, and `--save ""` saved
    nothing, in silence: an empty path is one line of error before any photo is read."""
    monkeypatch.chdir(photos)
    argv = ["--model", str(exported), "--no-detect"]
    argv += [""] if option == "photo" else [str(photos), option, ""]
    code, out, err = cli("predict", argv, capsys)
    assert_one_line_error(code, err, "empty")
    assert "p0.png" not in out


def test_jfif_and_jpe_photos_are_found_in_folders(tmp_path, capsys, exported, photos):
    """.jfif (how browsers on Windows save a downloaded JPEG) and .jpe are JPEG names: found when a
    folder is walked, as when named. (Was: 'no images in this folder'.)"""
    folder = tmp_path / "downloads"
    folder.mkdir()
    jpeg = cv2.imencode(".jpg", face(1, 1))[1].tobytes()
    (folder / "a.jfif").write_bytes(jpeg)
    (folder / "b.JPE").write_bytes(jpeg)
    code, out, err = cli("predict", [str(folder), "--model", str(exported), "--no-detect"], capsys)
    assert code == 0, err
    assert "a.jfif" in out and "b.JPE" in out


def test_predict_save_into_a_folder_of_the_users_photos_is_refused_not_overwriting_them(
    tmp_path, capsys, exported
):
    """Was: --save naming a subfolder of the folder read, which held photos of the user's own,
    left them unread and overwrote those whose names the copies took. Such a folder is read like
    any other, and --save refused where a copy would overwrite one of its photos; a folder fer
    drew into (its mark) is left out, so a run drawing into the library's own folder runs again."""
    lib = tmp_path / "lib"
    (lib / "trip").mkdir(parents=True)
    cv2.imwrite(str(lib / "a.png"), face(0, 0))
    cv2.imwrite(str(lib / "trip" / "a.png"), face(3, 1))
    before = (lib / "trip" / "a.png").read_bytes()
    args = ["--model", str(exported), "--no-detect"]
    code, _, err = cli("predict", [str(lib), *args, "--save", str(lib / "trip")], capsys)
    assert_one_line_error(code, err, "would overwrite the photo")
    assert (lib / "trip" / "a.png").read_bytes() == before
    mine = tmp_path / "mine"  # a folder of the user's own, outside the one read
    mine.mkdir()
    (mine / "a.png").write_bytes(before)
    code, _, err = cli("predict", [str(lib), *args, "--save", str(mine)], capsys)
    assert_one_line_error(code, err, "a.png, which is not marked as a copy fer drew")
    assert (mine / "a.png").read_bytes() == before
    # a copy of another name goes in, but the user's folder is not claimed as fer's: a later run
    # that would overwrite the photo is refused too (was: the mark made it fer's to overwrite)
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "b.png"), face(2, 2))
    code, _, err = cli("predict", [str(other / "b.png"), *args, "--save", str(mine)], capsys)
    assert code == 0 and not (mine / ".fer-predict-save").exists(), err
    (other / "a.png").write_bytes(before)
    code, _, err = cli("predict", [str(other / "a.png"), *args, "--save", str(mine)], capsys)
    assert_one_line_error(code, err, "not marked as a copy fer drew", ".fer-predict-save")
    assert (mine / "a.png").read_bytes() == before
    drawn = lib / "drawn"
    drawn.mkdir()
    (drawn / ".DS_Store").write_bytes(b"Bud1")  # hidden files alone: still empty (Finder makes it)
    for _ in range(2):  # its own folder of copies, inside the library: left out the second time
        code, out, err = cli("predict", [str(lib), *args, "--save", str(drawn)], capsys)
        assert code == 0, err
        assert sorted(p.relative_to(drawn).as_posix() for p in drawn.rglob("*.png")) == [
            "a.png",
            "trip/a.png",
        ]
        assert "drawn" not in out


def test_predict_of_nothing_readable_keeps_the_outputs_it_would_have_replaced(
    tmp_path, capsys, exported
):
    """Was: a mistyped folder (or an empty one) ended with exit status 1 after writing empty
    results over an earlier run's --json and --csv; it is a one-line error before any work."""
    (tmp_path / "empty").mkdir()
    out_json, out_csv = tmp_path / "o.json", tmp_path / "o.csv"
    out_json.write_text("[earlier results]")
    out_csv.write_text("earlier,results\n")
    for given, message in (
        (tmp_path / "typo", "no such file or folder"),
        (tmp_path / "empty", "no images in this folder"),
    ):
        argv = [
            str(given),
            "--model",
            str(exported),
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
        ]
        code, _, err = cli("predict", argv, capsys)
        assert_one_line_error(code, err, message)
        assert out_json.read_text() == "[earlier results]"
        assert out_csv.read_text() == "earlier,results\n"
    # photos given, none of them read: nothing is written over the earlier results, and no
    # folder is made for new ones (was: [] and an empty table over them)
    (tmp_path / "bad.jpg").write_text("not a photo")
    fresh = tmp_path / "new" / "o.json"
    for outputs in (["--json", str(out_json), "--csv", str(out_csv)], ["--json", str(fresh)]):
        argv = [str(tmp_path / "bad.jpg"), "--model", str(exported), *outputs]
        code, _, err = cli("predict", argv, capsys)
        assert code == 1 and "not a readable image" in err and "not written" in err, err
    assert out_json.read_text() == "[earlier results]"
    assert out_csv.read_text() == "earlier,results\n"
    assert not (tmp_path / "new").exists()


def test_predict_leaves_hidden_files_and_folders_out_of_a_folder(tmp_path, capsys, exported):
    """Was: a folder copied from a Mac, full of '._IMG_0001.JPG' (metadata, not images), ended with
    errors and exit status 1, and photos in hidden folders (.thumbnails) were read as the user's."""
    lib = tmp_path / "lib"
    (lib / ".thumbnails").mkdir(parents=True)
    cv2.imwrite(str(lib / "a.png"), face(0, 0))
    (lib / "._a.png").write_bytes(b"\x00\x05\x16\x07 Mac OS X metadata")
    cv2.imwrite(str(lib / ".thumbnails" / "a.png"), face(1, 1))
    out = tmp_path / "o.json"
    code, _, err = cli(
        "predict", [str(lib), "--model", str(exported), "--no-detect", "--json", str(out)], capsys
    )
    assert code == 0, err
    assert [r["file"] for r in json.loads(out.read_text())] == [str(lib / "a.png")]
    named = tmp_path / "._named.png"  # a hidden file named on the command line is read
    cv2.imwrite(str(named), face(2, 2))
    code, _, err = cli("predict", [str(named), "--model", str(exported), "--no-detect"], capsys)
    assert code == 0, err


def run_on_a_terminal(
    cmd: list[str], timeout: float = 300, hang_up_after: float | None = None
) -> tuple[int, str, str]:
    """Run `cmd` with its stderr on a pseudo-terminal, as a user's shell runs it: its exit status,
    its stdout (a pipe) and what it wrote on the terminal. With `hang_up_after`, the terminal goes
    away that many seconds after the first output on it (the window closed: the terminal is
    gone, then SIGHUP), as `nohup`-less runs meet it."""
    import pty
    import select
    import signal
    import threading

    main, child = pty.openpty()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=child,
        env={**os.environ, "TERM": "xterm"},
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    os.close(child)
    stdout = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()))
    reader.start()
    out, first = b"", None
    while True:
        limit = timeout
        if hang_up_after is not None and first is not None:
            limit = first + hang_up_after - time.monotonic()
            if limit <= 0:  # the window closes
                os.close(main)
                main = None
                proc.send_signal(signal.SIGHUP)
                break
        ready, _, _ = select.select([main], [], [], limit)
        if not ready:
            if hang_up_after is not None and first is not None:
                continue
            proc.kill()
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        first = first or time.monotonic()
        out += chunk
    if main is not None:
        os.close(main)
    code = proc.wait(timeout=timeout)
    reader.join()
    return code, stdout[0].decode(errors="replace"), out.decode(errors="replace")


def test_detect_shows_its_progress_through_a_video_file_on_a_terminal(exported, tmp_path):
    """Was: nothing until the end (3 minutes of silence for a 10-minute clip at 100 frames/s).
    A file's frames are counted against those it announces, or --max-frames (which counted
    against the file's once: "9/30000" and hours left); not where stderr is no terminal. The
    JSON lines of --json - still go to stdout (the bar's first form took them onto the terminal),
    and a run whose terminal goes away mid-run keeps its files (its first form lost them)."""
    clip = make_video(tmp_path / "clip.mp4", frames=40)
    cmd = [sys.executable, "-m", "fer.detect", "--source", str(clip), "--model", str(exported)]
    code, out, err = run_on_a_terminal([*cmd, "--json", "-"])
    assert code == 0, err
    assert re.search(r"reading frames.*40/40", err), err
    assert [json.loads(line)["frame"] for line in out.splitlines()] == list(range(40))
    code, _, err = run_on_a_terminal(
        [*cmd, "--json", str(tmp_path / "a.jsonl"), "--max-frames", "9"]
    )
    assert code == 0 and re.search(r"reading frames.*9/9", err) and "/40" not in err, err
    piped = subprocess.run(
        [*cmd, "--json", str(tmp_path / "b.jsonl")], capture_output=True, text=True, timeout=300
    )
    assert piped.returncode == 0 and "reading frames" not in piped.stderr, piped.stderr
    long = make_video(tmp_path / "long.mp4", frames=3000)
    files = ["--json", str(tmp_path / "c.jsonl"), "--output", str(tmp_path / "c.mp4")]
    code, _, err = run_on_a_terminal([*cmd[:4], str(long), *cmd[5:], *files], hang_up_after=2)
    assert code == 129, (
        err
    )  # stopped by SIGHUP, as a shell reports it (was 1: its last line failed)
    assert (tmp_path / "c.jsonl").stat().st_size > 0 and (tmp_path / "c.mp4").stat().st_size > 0
    assert not list(tmp_path.glob(".*part*"))


def test_predict_says_when_a_file_holds_more_pictures_than_the_first_it_reads(
    tmp_path, capsys, exported
):
    """Was: a multi-page TIFF or an animated GIF was read from its first page or frame without a
    word (the faces of the others missed)."""
    from PIL import Image

    pages = [Image.fromarray(face(i, i)) for i in range(3)]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:])
    pages[0].save(tmp_path / "moving.gif", save_all=True, append_images=pages[1:2])
    pages[0].save(tmp_path / "one.tif")
    argv = [str(tmp_path), "--model", str(exported), "--no-detect"]
    code, _, err = cli("predict", argv, capsys)
    assert code == 0, err
    assert f"note: {tmp_path / 'scan.tif'} holds 3 pages or frames: the first is read" in err
    assert f"note: {tmp_path / 'moving.gif'} holds 2 pages or frames" in err
    assert "one.tif holds" not in err


def test_predict_says_flip_adds_nothing_to_a_model_that_mirrors_already(tmp_path, capsys):
    """Was: --tta flip with the shipped model (which averages each face with its mirror image)
    gave the same answers at twice the cost, without a word; fer.evaluate said so already."""
    cv2.imwrite(str(tmp_path / "a.png"), face(3, 0))
    code, _, err = cli("predict", [str(tmp_path / "a.png"), "--no-detect", "--tta", "flip"], capsys)
    assert code == 0 and "note: the model averages each face with its mirror image" in err, err
    code, _, err = cli("predict", [str(tmp_path / "a.png"), "--no-detect"], capsys)
    assert code == 0 and "mirror" not in err, err
