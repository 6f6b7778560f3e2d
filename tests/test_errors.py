"""Bad input: every case ends with one line naming the problem, a non-zero exit, no traceback and no output left behind."""

import errno
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.common import run_cli
from tests.conftest import make_csv, make_folder, make_video, pixels

TINY = ["--widths", "8", "--depth", "1", "--precision", "32-true", "--fast-dev-run"]


def cli(module: str, argv: list[str], capsys) -> tuple[int, str, str]:
    main = __import__(f"fer.{module}", fromlist=["main"]).main
    with pytest.raises(SystemExit) as e:
        run_cli(main, argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def csv_with(tmp_path, text: str):
    p = tmp_path / "in" / "fer2013.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


GOOD = pixels(np.zeros((48, 48), np.uint8) + 9)
SUPERSCRIPT = GOOD.replace("9", "\u00b2", 1)  # "²": a digit to str.isdigit, not to int()


@pytest.mark.parametrize(
    "case,make,needles",
    [
        ("missing path", lambda t: t / "nope", ["does not exist", "download FER-2013"]),
        (
            "no images",
            lambda t: (t / "d" / "train" / "happy").mkdir(parents=True) or t / "d",
            ["no image files"],
        ),
        (
            "unknown class folders",
            lambda t: (make_folder(t / "d", (1, 1, 0)), (t / "d" / "train" / "joy").mkdir())[0],
            ["unknown class folders", "train/joy"],
        ),
        (
            "csv missing columns",
            lambda t: csv_with(t, "label,image\n1,2\n"),
            ["needs the columns emotion and pixels"],
        ),
        (  # was the whole first row's 2,304 pixel values quoted as column names (8 KB)
            "csv without its header line",
            lambda t: csv_with(t, f"0,{GOOD},Training\n1,{GOOD},Training\n"),
            ["has no header line", "add the line emotion,pixels,Usage at its top"],
        ),
        (
            "csv without its header line or Usage",
            lambda t: csv_with(t, f"0,{GOOD}\n1,{GOOD}\n"),
            ["has no header line", "add the line emotion,pixels at its top"],
        ),
        (  # was told "add the line emotion,pixels": the wrong order
            "csv without its header line, pixels first",
            lambda t: csv_with(t, f"{GOOD},0,PublicTest\n{GOOD},1,Training\n"),
            ["has no header line", "add the line pixels,emotion,Usage at its top"],
        ),
        (  # was told "add the line pixels", after which it needed emotions
            "csv of pixels alone without its header line",
            lambda t: csv_with(t, f"{GOOD}\n{GOOD}\n"),
            ["has no header line", "and no emotions", "emotion,pixels"],
        ),
        (
            "csv pixel count",
            lambda t: csv_with(t, f"emotion,pixels,Usage\n0,{GOOD},Training\n1,1 2 3,Training\n"),
            ["line 3", "3 pixel values, expected 2304"],
        ),
        (  # the total is right: every face after them was shifted by a pixel, silently
            "csv pixel counts that cancel out",
            lambda t: csv_with(
                t,
                f"emotion,pixels,Usage\n0,{GOOD},Training\n1,{GOOD.rsplit(' ', 1)[0]},Training\n"
                f"2,{GOOD} 7,Training\n",
            ),
            ["line 3", "2303 pixel values, expected 2304"],
        ),
        (
            "csv non-numbers",
            lambda t: csv_with(
                t, f"emotion,pixels,Usage\n0,{GOOD.replace('9', 'x', 1)},Training\n"
            ),
            ["line 2", "integers 0..255"],
        ),
        (  # was "line 3": the blank lines pandas skips were not counted
            "csv pixel count after blank lines",
            lambda t: csv_with(
                t, f"emotion,pixels,Usage\n\n0,{GOOD},Training\n  \n1,1 2 3,Training\n"
            ),
            ["line 5", "3 pixel values, expected 2304"],
        ),
        (  # was a traceback: "²".isdigit() is true, and int("²") a ValueError
            "csv unicode digits",
            lambda t: csv_with(t, f"emotion,pixels,Usage\n0,{SUPERSCRIPT},Training\n"),
            ["line 2", "integers 0..255"],
        ),
        (
            "csv label out of range after a blank line",
            lambda t: csv_with(
                t, f"emotion,pixels,Usage\n0,{GOOD},Training\n\n9,{GOOD},Training\n"
            ),
            ["line 4", "'9' is not a label 0..6"],
        ),
        (
            "csv unknown usage",
            lambda t: csv_with(t, f"emotion,pixels,Usage\n0,{GOOD},Training\n0,{GOOD},Holdout\n"),
            ["line 3", "Usage 'Holdout' is not Training, PublicTest or PrivateTest"],
        ),
        (  # a download cut short: was "unknown Usage values ['']", with no line
            "csv cut short",
            lambda t: csv_with(t, f"emotion,pixels,Usage\n0,{GOOD},Training\n3,{GOOD[:1000]}"),
            ["line 3", "pixel values, expected 2304"],
        ),
        (
            "csv label out of range",
            lambda t: csv_with(t, f"emotion,pixels,Usage\n9,{GOOD},Training\n"),
            ["line 2", "'9' is not a label 0..6"],
        ),
        ("csv empty", lambda t: csv_with(t, ""), ["is empty"]),
    ],
)
def test_bad_data(tmp_path, capsys, case, make, needles):
    data = make(tmp_path)
    runs = tmp_path / "runs"
    code, _, err = cli(
        "train", ["--data", str(data), "--default-root-dir", str(runs), *TINY], capsys
    )
    assert_one_line_error(code, err, *needles)
    assert not runs.exists()  # nothing written


def test_corrupt_and_non_image_files_are_skipped_and_counted_or_fail_under_strict(
    tmp_path, capsys, caplog
):
    root = make_folder(tmp_path / "d", per_class=(3, 2, 0))
    (root / "train" / "happy" / "Training_notes.txt").write_text("hello")
    good = next((root / "train" / "sad").glob("*.png")).read_bytes()
    (root / "train" / "sad" / "Training_cut.png").write_bytes(good[: len(good) // 3])
    cv2.imwrite(
        str(root / "train" / "fear" / "Training_colour.jpg"), np.full((120, 90, 3), 90, np.uint8)
    )
    code, _, err = cli(
        "train", ["--data", str(root), "--default-root-dir", str(tmp_path / "r"), *TINY], capsys
    )
    assert code == 0
    assert "skipped 2 files that are not readable images" in caplog.text
    shutil.rmtree(tmp_path / "cache")
    code, _, err = cli(
        "train",
        ["--data", str(root), "--strict", "--default-root-dir", str(tmp_path / "s"), *TINY],
        capsys,
    )
    assert_one_line_error(code, err, "2 files are not readable images", "--strict")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--max-epochs", "0", "--max-epochs: must be greater than 0"),
        ("--batch-size", "-4", "--batch-size: must be greater than 0"),
        ("--lr", "0", "--lr: must be greater than 0"),
        ("--model", "resnet", "invalid choice: 'resnet'"),
    ],
)
def test_out_of_range_options(tmp_path, capsys, flag, value, needle):
    code, _, err = cli("train", ["--data", str(tmp_path), flag, value], capsys)
    assert_one_line_error(code, err, needle)
    if flag == "--model":
        assert "cnn" in err and "vgg" in err  # the known models are listed


@pytest.mark.parametrize(
    "module,args,needle",
    [  # was accepted: no figure, yet the faces scored by PyTorch in place of ONNX Runtime
        ("evaluate", ["--gradcam", "-1"], "--gradcam: must be 0 or more"),
        # were '--widths: 4 stages halve a 1 px face to nothing; give at most 0 widths'
        ("train", ["--crop", "1", "--widths", "8"], "--crop must be between 8 and 47"),
        ("train", ["--crop", "-5"], "--crop must be between 8 and 47"),
    ],
)
def test_an_option_out_of_its_range_is_named(tmp_path, capsys, module, args, needle):
    data = make_folder(tmp_path / "d", per_class=(1, 1, 0))
    extra = [*TINY, "--default-root-dir", str(tmp_path / "runs")] if module == "train" else []
    code, _, err = cli(module, ["--data", str(data), *extra, *args], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["--skip", "--exclude"])
def test_a_folder_given_as_a_list_of_faces_is_called_a_folder(tmp_path, capsys, option):
    """Was: 'exclusion list FOLDER does not exist', of a folder that does."""
    data = make_folder(tmp_path / "d", per_class=(1, 1, 0))
    module = "evaluate" if option == "--skip" else "train"
    extra = [*TINY, "--default-root-dir", str(tmp_path / "runs")] if module == "train" else []
    code, _, err = cli(module, ["--data", str(data), *extra, option, str(tmp_path)], capsys)
    assert_one_line_error(code, err, f"{tmp_path} is a folder", "a list of faces")


@pytest.mark.parametrize(
    "case",
    [
        "other architecture",
        "truncated checkpoint",
        "not a checkpoint",
        "truncated safetensors",
        # were "holds pickled objects that are not plain tensors; refusing to load it": torch
        # says so of any file whose first byte is a pickle instruction ('v', '<', 'g')
        "git-lfs pointer",
        "html page",
        "garbage",
        "pickled objects",  # a checkpoint torch.save wrote with more than tensors in it
        # were tracebacks (TypeError)
        "options not a mapping",
        "summary naming no path",
        # was "does not fit a cnn model ... size mismatch" on the PyTorch backend
        "other classes",
    ],
)
def test_bad_model_files(tmp_path, capsys, exported, case):
    faces = make_folder(tmp_path / "faces", (1, 0, 0)) / "train"
    if case == "other architecture":
        meta = json.loads((exported / "model.json").read_text())
        meta["arch"] = "vgg"
        meta["options"] = {}
        (exported / "model.json").write_text(json.dumps(meta))
        model, needle = exported, "does not fit a vgg model"
    elif case == "truncated checkpoint":
        import torch

        torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "x.ckpt")
        data = (tmp_path / "x.ckpt").read_bytes()
        (tmp_path / "x.ckpt").write_bytes(data[: len(data) // 2])
        model, needle = tmp_path / "x.ckpt", "not a readable checkpoint"
    elif case == "not a checkpoint":
        (tmp_path / "x.ckpt").write_text("just text")
        model, needle = tmp_path / "x.ckpt", "not a readable checkpoint"
    elif case in ("git-lfs pointer", "html page", "garbage"):
        (tmp_path / "x.ckpt").write_text(
            {
                "git-lfs pointer": "version https://git-lfs.github.com/spec/v1\n"
                "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                "size 12345\n",
                "html page": "<!DOCTYPE html><html><body>Moved</body></html>\n",
                "garbage": "garbage\n",
            }[case]
        )
        model, needle = tmp_path / "x.ckpt", "not a readable checkpoint"
    elif case == "pickled objects":
        import argparse

        import torch

        torch.save(
            {"state_dict": {}, "hyper_parameters": argparse.Namespace()}, tmp_path / "x.ckpt"
        )
        model, needle = tmp_path / "x.ckpt", "holds pickled objects that are not plain tensors"
    elif case == "options not a mapping":
        meta = json.loads((exported / "model.json").read_text())
        (exported / "model.json").write_text(json.dumps({**meta, "options": [1]}))
        model, needle = exported, "model.json: options must be a mapping"
    elif case == "summary naming no path":
        run = tmp_path / "run"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({"best_checkpoint": 3}))
        model, needle = run, "names no best checkpoint"
    elif case == "other classes":
        meta = json.loads((exported / "model.json").read_text())
        (exported / "model.json").write_text(json.dumps({**meta, "classes": ["a", "b", "c"]}))
        model, needle = exported, "trained on classes"
    else:
        data = (exported / "model.safetensors").read_bytes()
        (exported / "model.safetensors").write_bytes(data[:200])
        model, needle = exported, "not a readable safetensors file"
    out = tmp_path / "pred.json"
    argv = [str(faces), "--model", str(model), "--no-detect", "--json", str(out)]
    code, _, err = cli("predict", [*argv, "--backend", "torch"], capsys)
    assert_one_line_error(code, err, needle)
    assert not out.exists()


def test_predict_on_a_folder_without_images(tmp_path, capsys, exported):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("predict", [str(tmp_path / "empty"), "--model", str(exported)], capsys)
    assert_one_line_error(code, err, "no images in this folder")  # was exit status 1


def test_unwritable_output_folder(tmp_path, capsys, exported):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    faces = make_folder(tmp_path / "faces", (1, 0, 0)) / "train"
    code, _, err = cli(
        "predict",
        [str(faces), "--model", str(exported), "--no-detect", "--json", str(blocker / "out.json")],
        capsys,
    )
    assert_one_line_error(code, err, "cannot write", "choose a writable folder")


@pytest.mark.parametrize("module", ["predict", "detect"])
def test_a_refused_run_makes_no_output_folders(module, tmp_path, capsys):
    out = tmp_path / "results" / "today"
    if module == "predict":  # the photos are there, the model is not
        faces = make_folder(tmp_path / "faces", (1, 0, 0)) / "train"
        argv = [str(faces), "--model", str(tmp_path / "gone"), "--no-detect"]
        argv += ["--json", str(out / "p.json"), "--csv", str(out / "p.csv")]
        argv += ["--save", str(out / "drawn")]
    else:  # the video is not there
        argv = ["--source", str(tmp_path / "gone.mp4"), "--json", str(out / "d.jsonl")]
        argv += ["--output", str(out / "d.mp4")]
    code, _, err = cli(module, argv, capsys)
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "results").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    from fer.common import FerError

    with pytest.raises(FerError):
        run_cli(
            __import__("fer.train", fromlist=["main"]).main,
            ["--data", str(tmp_path / "nope"), "--debug"],
        )


def test_entry_point_as_a_user_runs_it(tmp_path):
    import subprocess
    import sys

    bad = make_csv(tmp_path / "x" / "fer2013.csv", (1, 1, 1))
    bad.write_text(bad.read_text().replace("PublicTest", "Validation"))
    r = subprocess.run(
        [sys.executable, "-m", "fer.train", "--data", str(bad)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "FER_CACHE": str(tmp_path / "c")},
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in r.stderr and "Validation" in r.stderr


def test_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, capsys, exported, monkeypatch):
    faces = make_folder(tmp_path / "faces", (1, 0, 0)) / "train"

    def disk_fills_up(self, data, *args, **kwargs):
        with open(self, "w") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", disk_fills_up)
    out = tmp_path / "pred.json"
    code, _, err = cli(
        "predict", [str(faces), "--model", str(exported), "--no-detect", "--json", str(out)], capsys
    )
    assert_one_line_error(code, err, "No space left on device", "check free space")
    assert not out.exists() and not list(tmp_path.glob(".pred.json*"))


def test_detect_on_a_full_disk_is_one_line(tmp_path, capsys, exported):
    """Was: fer.detect's JSON lines meeting a full disk (here /dev/full, which takes nothing)
    ended in a traceback and exit 1: the write names no file, so the error was taken for a bug."""
    video = make_video(tmp_path / "in.mp4", frames=3)
    args = ["--source", str(video), "--model", str(exported), "--detector", "haar"]
    code, _, err = cli("detect", [*args, "--json", "/dev/full"], capsys)
    assert_one_line_error(code, err, "No space left on device")


def test_an_output_through_a_link_loop_is_one_line_and_a_long_name_is_written(
    tmp_path, capsys, exported
):
    """Were: --json naming a symbolic link to itself ended in a RuntimeError traceback; and a name
    of 242-255 characters, which the system takes, was refused at the end of the run (its
    temporary file's name, 14 characters longer, was not)."""
    faces = make_folder(tmp_path / "faces", (1, 0, 0)) / "train"
    (tmp_path / "loop").symlink_to("loop")
    argv = [str(faces), "--model", str(exported), "--no-detect"]
    for out in (tmp_path / "loop", tmp_path / "loop" / "p.json"):
        code, _, err = cli("predict", [*argv, "--json", str(out)], capsys)
        assert_one_line_error(code, err, "Too many levels of symbolic links")
    saved = tmp_path / "saved"
    assert cli("predict", [*argv, "--save", str(saved)], capsys)[0] == 0  # fer's folder now
    copy = next(saved.rglob("*.png"))
    copy.unlink()
    copy.symlink_to(copy.name)  # a copy's name, a link to itself
    code, _, err = cli("predict", [*argv, "--save", str(saved)], capsys)
    assert code == 0 and "Traceback" not in err, err  # (was: RuntimeError, a traceback)
    assert copy.is_file() and not copy.is_symlink()  # fer's copy, in fer's folder, again
    for long in (tmp_path / ("p" * 245 + ".json"), tmp_path / ("😀" * 61 + ".json")):  # 249 bytes
        code, _, err = cli("predict", [*argv, "--json", str(long)], capsys)
        assert code == 0, err
        assert len(json.loads(long.read_text())) == 7
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_a_name_the_system_refuses_is_one_line(tmp_path, capsys):
    """A path whose name is longer than the file system allows made Path.is_dir raise: a traceback
    that lost the run. fer.predict says so for that path and reads the others; the other
    commands say it in one line."""
    too_long = str(tmp_path / ("a" * 300 + ".jpg"))
    faces = make_folder(tmp_path / "faces", (1, 0, 0)) / "train"
    code, out, err = cli("predict", [too_long, str(faces), "--no-detect", "--json", "-"], capsys)
    assert code == 1 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if "aaaa" in x]
    assert line.startswith("error: ") and "File name too long" in line
    assert len(json.loads(out)) == len(list(faces.rglob("*.png")))  # the others were read
    code, _, err = cli("detect", ["--source", too_long], capsys)
    assert_one_line_error(code, err, "File name too long")
    code, _, err = cli("predict", [str(faces), "--no-detect", "--json", too_long], capsys)
    assert_one_line_error(code, err, "File name too long")


def test_a_pipe_given_as_a_photo_is_called_a_pipe(tmp_path, capsys):
    """`cat photo.jpg | fer.predict /dev/stdin` was told 'no such file or folder'."""
    os.mkfifo(tmp_path / "pipe")
    code, _, err = cli("predict", [str(tmp_path / "pipe"), "--no-detect"], capsys)
    assert_one_line_error(code, err, "a pipe or a device, not a file")  # nothing else to read


def test_no_detect_with_an_option_of_face_finding_is_one_line(tmp_path, capsys):
    """--no-detect reads each image as one face: an option of how faces are found or cropped
    beside it was ignored without a word (a user's --detector haar or --min-face 20 had no
    effect); now refused before any photo is read, naming the options."""
    faces = make_folder(tmp_path / "faces", (1, 0, 0)) / "train"
    argv = [str(faces), "--no-detect", "--json", str(tmp_path / "out.json")]
    for extra in (["--detector", "haar"], ["--min-face", "20"], ["--no-align"], ["--no-jitter"]):
        code, _, err = cli("predict", [*argv, *extra], capsys)
        assert_one_line_error(code, err, "--no-detect", extra[0])
    code, _, err = cli("predict", [*argv, "--no-align", "--min-face", "20"], capsys)
    assert_one_line_error(code, err, "--no-align and --min-face")
    assert not (tmp_path / "out.json").exists()
