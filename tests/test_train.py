import csv
import json
import logging
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fer.common import FerError, cpu_has_bf16
from fer.module import FerModule
from fer.train import main as train
from tests.conftest import TINY


def run_dir(root: Path, version: int = 0) -> Path:
    return root / "lightning_logs" / f"version_{version}"


def metrics(root: Path, version: int = 0) -> list[dict]:
    with open(run_dir(root, version) / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", ["cnn", "vgg"])
def test_fast_dev_run_for_every_model(folder_data, tmp_path, model):
    extra = ["--no-pretrained", "--image-size", "48"] if model == "vgg" else []
    assert (
        train(
            [
                "--model",
                model,
                "--data",
                str(folder_data),
                "--fast-dev-run",
                "--default-root-dir",
                str(tmp_path / "r"),
                *TINY,
                *extra,
            ]
        )
        == 0
    )


def tensorboard_writers() -> set:
    """The threads writing TensorBoard event files, alive: those of the files still open."""
    import threading

    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    return {t for t in threading.enumerate() if isinstance(t, _AsyncWriterThread)}


def test_run_folder_holds_events_config_checkpoint_and_reproduces(csv_data, tmp_path, monkeypatch):
    import fer.train

    written = []  # the summaries, in the order they are written
    write_text = fer.train.write_text
    monkeypatch.setattr(
        fer.train, "write_text", lambda p, *a: (written.append(Path(p).name), write_text(p, *a))
    )
    root = tmp_path / "runs"
    args = [
        "--data",
        str(csv_data),
        "--max-epochs",
        "2",
        "--default-root-dir",
        str(root),
        "--json",
        str(tmp_path / "s.json"),
        *TINY,
    ]
    before = tensorboard_writers()
    assert train(args) == 0
    # its event files closed when it returns (was: the hyperparameters and final metrics, logged
    # after the trainer closed its file, went to a new one left open, written by a daemon thread
    # after the run returned, as CI saw, or lost where the process ended first)
    assert tensorboard_writers() <= before
    run = run_dir(root)
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and len(ckpts) == 2
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["best_checkpoint"].startswith(str(run)) and 0 <= summary["test_acc"] <= 1
    # the run folder's summary.json, which marks a run finished for a resume, comes last (was
    # first: a run stopped between the two had no --json, so experiments/train_once.sh trained
    # it again, which fer.train refused)
    assert written[-2:] == ["s.json", "summary.json"], written
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"val/acc", "val/f1", "val/loss", "train/acc", "test/acc"} <= set(tags["scalars"])
    assert {"val/confusion_matrix", "test/confusion_matrix", "val/predictions"} <= set(
        tags["images"]
    )
    assert events.PluginTagToContent("hparams")  # the hparams tab, with the final metrics
    assert "hp/best_val_acc" in set(tags["scalars"])
    assert len(events.Scalars("val/acc")) == 2
    png = events.Images("val/confusion_matrix")[-1].encoded_image_string
    assert png.startswith(b"\x89PNG")
    # the last val/acc scalar agrees with the confusion matrix kept beside it
    cm = torch.tensor(json.loads((run / "confusion_val.json").read_text())["matrix"])
    assert (
        cm.sum() == 14
        and abs(events.Scalars("val/acc")[-1].value - cm.diag().sum() / cm.sum()) < 1e-6
    )
    # the test's matrix is named by the epoch of the checkpoint tested, the best (was: by the
    # loop's count after fitting, 2, an epoch that never ran)
    tested = json.loads((run / "confusion_test.json").read_text())
    assert tested["epoch"] == summary["best_epoch"] and summary["best_epoch"] in (0, 1)
    assert [e.step for e in events.Images("test/confusion_matrix")] == [summary["best_epoch"]]
    # config.yaml reproduces the run: same options, same numbers
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["max_epochs"] == 2 and config["widths"] == [8, 16]
    assert train(["--config", str(run / "config.yaml")]) == 0
    assert metrics(root, 1) == metrics(root, 0)


def test_defaults_follow_the_model_and_give_way_to_flags_and_config(tmp_path):
    from fer.train import parse_args

    # the CNN's defaults are the first-run recipe; VGG16 keeps whole faces and its own schedule
    cnn = parse_args([])
    assert (cnn.model, cnn.widths, cnn.crop, cnn.lr, cnn.max_epochs) == (
        "cnn",
        [32, 64, 128, 160],
        40,
        0.1,
        20,
    )
    vgg = parse_args(["--model", "vgg"])
    assert (vgg.crop, vgg.lr, vgg.max_epochs) == (0, 0.05, 30)
    mine = parse_args(["--crop", "0", "--lr", "0.02", "--widths", "8", "--max-epochs", "3"])
    assert (mine.widths, mine.crop, mine.lr, mine.max_epochs) == ([8], 0, 0.02, 3)
    cfg = tmp_path / "c.yaml"  # what a config names is kept; what it leaves out, the model's
    cfg.write_text(yaml.safe_dump({"widths": [32, 64, 128, 256], "crop": 0, "max_epochs": 30}))
    old = parse_args(["--config", str(cfg)])
    assert (old.widths, old.crop, old.lr, old.max_epochs) == ([32, 64, 128, 256], 0, 0.1, 30)
    # ... but a config without `crop` was written before --crop existed: whole faces, as then
    cfg.write_text(yaml.safe_dump({"widths": [32, 64, 128, 256], "crop": None, "lr": 0.05}))
    older = parse_args(["--config", str(cfg)])
    assert (older.crop, older.lr, older.max_epochs) == (0, 0.05, 20)


@pytest.mark.parametrize("recorded_crop", [{"crop": 0}, {}])
def test_a_run_resumed_without_its_options_continues_as_it_was_recorded(tmp_path, recorded_crop):
    """A run started with the earlier defaults (32-64-128-256, whole faces, 30 epochs at 0.05)
    resumes as that run, not as today's defaults; a config.yaml from before --crop means no crop."""
    from fer.train import parse_args

    run = run_dir(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    recorded = {"model": "cnn", "widths": [32, 64, 128, 256], "lr": 0.05, "max_epochs": 30}
    (run / "config.yaml").write_text(yaml.safe_dump({**recorded, **recorded_crop}))
    args = parse_args(["--ckpt-path", "last", "--default-root-dir", str(tmp_path)])
    assert (args.widths, args.crop, args.lr, args.max_epochs) == ([32, 64, 128, 256], 0, 0.05, 30)
    # another learning rate is refused: the optimizer's and schedule's states hold the run's own
    with pytest.raises(FerError, match="--lr 0.2: the run resumed was made with --lr 0.05"):
        parse_args(["--ckpt-path", "last", "--default-root-dir", str(tmp_path), "--lr", "0.2"])
    args = parse_args(["--ckpt-path", "last", "--default-root-dir", str(tmp_path), "--lr", "0.05"])
    assert args.lr == 0.05


def test_a_resumed_run_keeps_every_recorded_option_and_refuses_its_data_changed(tmp_path):
    """`--ckpt-path last` alone brought back only the model's options: a run made on one CSV went
    on, silently, on data/fer2013 (or downloaded it), with the default batch size, and its
    config.yaml was rewritten to say so; a batch size given again crashed a one-cycle run
    midway. Now every recorded option comes back, and the data or batch size given otherwise is
    refused; its weights come from the checkpoint, not the --init it started from."""
    from fer.train import parse_args

    run = run_dir(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    recorded = {
        "data": str(tmp_path / "mine.csv"),
        "batch_size": 32,
        "augment": "strong",
        "label_smoothing": 0.1,
        "no_test": True,
        "init": str(tmp_path / "gone"),  # the weights it started from, no longer there
        "retired_option": 3,  # from another version of fer: left out
    }
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    resume = ["--ckpt-path", "last", "--default-root-dir", str(tmp_path)]
    args = parse_args(resume)
    assert (args.data, args.batch_size, args.augment) == (recorded["data"], 32, "strong")
    assert args.label_smoothing == 0.1 and args.no_test and args.init is None
    assert parse_args([*resume, "--batch-size", "32"]).batch_size == 32  # the same: fine
    again = str(tmp_path / "." / "mine.csv")  # the same file, written otherwise
    assert parse_args([*resume, "--data", again]).data == again
    for flag, value in (("--data", "data/fer2013"), ("--batch-size", "16")):
        with pytest.raises(FerError, match=f"{flag} {value}: the run resumed was made with {flag}"):
            parse_args([*resume, flag, value])
    given = tmp_path / "c.yaml"  # a --config file is no way round it
    given.write_text("batch_size: 64\n")
    with pytest.raises(FerError, match="--batch-size 64: the run resumed was made with"):
        parse_args([*resume, "--config", str(given)])
    # the run goes on where --default-root-dir and its checkpoint say, not where it was made
    (run / "config.yaml").write_text(yaml.safe_dump({**recorded, "default_root_dir": "gone"}))
    assert parse_args(resume).default_root_dir == str(tmp_path)


@pytest.mark.parametrize(
    "recorded,flag,value",
    [
        ({"seed": 42}, "--seed", "1"),  # another validation share drawn: training faces in it
        ({"val_fraction": 0.1}, "--val-fraction", "0.02"),  # more batches than its one cycle
        ({"exclude": None}, "--exclude", "leaks.txt"),
        ({"limit_train_batches": None}, "--limit-train-batches", "5"),  # one cycle left unfinished
        ({"scheduler": "onecycle"}, "--scheduler", "cosine"),  # KeyError: 'lr_lambdas'
        ({"optimizer": "sgd"}, "--optimizer", "adamw"),  # KeyError: 'step'
    ],
)
def test_a_resumed_run_refuses_what_would_change_its_split_or_schedule(
    tmp_path, recorded, flag, value
):
    """Found by a fresh-eyes review: these were taken on resume, and each gave validation faces
    it had trained on, a schedule left unfinished, or a traceback midway; an option recorded as
    null (all batches, no exclusion list) was not compared at all."""
    from fer.train import parse_args

    run = run_dir(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "config.yaml").write_text(yaml.safe_dump({"batch_size": 32, **recorded}))
    resume = ["--ckpt-path", "last", "--default-root-dir", str(tmp_path)]
    with pytest.raises(
        FerError, match=f"{flag} {value}: the run resumed was made with(out)? {flag}"
    ):
        parse_args([*resume, flag, value])
    (option,) = recorded
    kept = getattr(parse_args(resume), option)
    assert kept == recorded[option]
    if kept is not None:  # given again as it was: fine
        assert getattr(parse_args([*resume, flag, str(kept)]), option) == kept


def test_a_resumed_run_takes_its_exclusion_list_and_all_batches_however_they_are_written(
    tmp_path, monkeypatch
):
    """Found by a review of the change that compared them: --exclude naming the recorded list by
    another path to the same file, and --limit-train-batches 1.0 against a run recorded with all
    batches (null), are the same run."""
    from fer.train import parse_args

    run = run_dir(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    recorded = {"batch_size": 32, "exclude": "lists/excl.txt", "limit_train_batches": None}
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "excl.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    resume = ["--ckpt-path", "last", "--default-root-dir", str(tmp_path)]
    for same in ("./lists/excl.txt", str(tmp_path / "lists" / "excl.txt")):
        assert parse_args([*resume, "--exclude", same]).exclude == same
    assert parse_args([*resume, "--limit-train-batches", "1.0"]).limit_train_batches == 1.0
    with pytest.raises(FerError, match="made with --exclude lists/excl.txt"):
        parse_args([*resume, "--exclude", "other.txt"])


def test_a_run_resumed_through_a_config_file_or_from_another_folder_is_that_run(
    tmp_path, monkeypatch
):
    """Found by a fresh-eyes review: with --default-root-dir in a --config file, the options were
    read from ./lightning_logs (another run, or none: 'no last.ckpt') while training resumed the
    config's run; and the run's recorded relative --data, given again from another folder as the
    path to the same file, was refused as other data."""
    from fer.train import parse_args

    project = tmp_path / "project"
    run = run_dir(project / "runs" / "exp")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": "data/mine.csv", "batch_size": 32}))
    other = run_dir(project)  # ./lightning_logs holds another run
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "last.ckpt").write_bytes(b"")
    (other / "config.yaml").write_text(yaml.safe_dump({"data": "wrong.csv", "batch_size": 64}))
    (project / "exp.yaml").write_text("default_root_dir: runs/exp\n")
    monkeypatch.chdir(project)
    args = parse_args(["--config", "exp.yaml", "--ckpt-path", "last"])
    assert (args.data, args.batch_size, args.default_root_dir) == ("data/mine.csv", 32, "runs/exp")
    monkeypatch.chdir(tmp_path)  # the same run and data, from the folder above
    mine = str(project / "data" / "mine.csv")
    resume = ["--default-root-dir", str(project / "runs" / "exp"), "--ckpt-path", "last"]
    assert parse_args([*resume, "--data", mine]).data == mine
    with pytest.raises(FerError, match="the run resumed was made with --data data/mine.csv"):
        parse_args([*resume, "--data", str(tmp_path / "data" / "other.csv")])


def test_a_run_resumed_from_another_folder_finds_its_data_where_it_started(tmp_path, monkeypatch):
    """Was: a run's config.yaml records --data and --exclude as typed (data/fer2013), and a
    checkpoint resumed by its path from another folder read them from there: 'data path
    data/fer2013 does not exist' (or the download of FER-2013 into that folder, or other data
    of that name). They are found from the folder the run was started in, which its place and
    its recorded root tell."""
    from fer.train import parse_args

    project = tmp_path / "project"
    run = run_dir(project / "runs" / "exp")
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    recorded = {"data": "data/mine.csv", "exclude": "lists/leaked.txt", "batch_size": 32}
    recorded |= {"teacher": "teachers/t.ckpt", "weights": "vgg16.pth"}
    (run / "config.yaml").write_text(yaml.safe_dump({**recorded, "default_root_dir": "runs/exp"}))
    names = ("data/mine.csv", "lists/leaked.txt", "data/fer2013/train/x.png", "teachers/t.ckpt")
    for name in (*names, "vgg16.pth"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "mine.csv").write_text("")  # other data of that name: not the run's
    (elsewhere / "teachers").mkdir()
    (elsewhere / "teachers" / "t.ckpt").write_text("")  # another teacher of that name
    monkeypatch.chdir(elsewhere)
    args = parse_args(["--ckpt-path", str(last)])
    assert args.data == str(project / "data" / "mine.csv")
    assert args.exclude == str(project / "lists" / "leaked.txt")
    # (the teacher and the VGG weights were read from here: another teacher, or none)
    assert args.teacher == str(project / "teachers" / "t.ckpt")
    assert args.weights == str(project / "vgg16.pth")
    # from the folder it started in, as it was recorded
    monkeypatch.chdir(project)
    args = parse_args(["--ckpt-path", str(last)])
    assert (args.data, args.exclude) == ("data/mine.csv", "lists/leaked.txt")
    # a run made without --data took ./data/fer2013 of its folder
    (run / "config.yaml").write_text(yaml.safe_dump({"data": None, "default_root_dir": "runs/exp"}))
    monkeypatch.chdir(elsewhere)
    assert parse_args(["--ckpt-path", str(last)]).data == str(project / "data" / "fer2013")


def test_a_vgg_run_resumes_without_the_backbone_weights_it_started_from(
    csv_data, tmp_path, monkeypatch
):
    """A resumed run's weights come from its checkpoint: the --weights file it started from
    (recorded) is not read, so one moved or deleted since does not stop the resume. (A version
    of the check made before the data is fetched refused it.)"""
    import fer.models.vgg

    monkeypatch.setattr(fer.models.vgg, "backbone_state", lambda weights: ({}, str(weights)))
    monkeypatch.setattr(fer.models.vgg, "load_backbone_weights", lambda model, read: read[1])
    weights = tmp_path / "vgg16.pth"
    weights.write_text("")
    base = ["--data", str(csv_data), "--model", "vgg", "--image-size", "32", "--no-test"]
    base += ["--default-root-dir", str(tmp_path / "r"), "--scheduler", "cosine", "--batch-size"]
    base += ["16", "--precision", "32-true", "--freeze-epochs", "0"]
    assert train([*base, "--weights", str(weights), "--max-epochs", "1"]) == 0
    weights.unlink()
    assert train([*base, "--max-epochs", "2", "--ckpt-path", "last"]) == 0
    assert [int(r["epoch"]) for r in metrics(tmp_path / "r")] == [0, 1]


def test_unreachable_imagenet_weights_stop_a_vgg_run_before_the_data_is_fetched_or_decoded(
    csv_data, tmp_path, monkeypatch
):
    """Offline, `--model vgg` said it could not load the ImageNet weights only after FER-2013 was
    fetched and decoded (minutes on a first run); now before, in one line, with nothing made."""
    import urllib.error

    import torchvision.models._api as api

    import fer.download
    import fer.train

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    def data_touched(*args, **kwargs):
        raise AssertionError("the data was fetched or decoded before the weights were loaded")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)  # never download in a test
    monkeypatch.setattr(fer.train, "build_data", data_touched)
    monkeypatch.setattr(fer.download, "resolve_data", data_touched)
    # the folder torchvision caches them in, as the user's TORCH_HOME puts it (was: always
    # ~/.cache/torch/hub/checkpoints, where a user who moved it would copy the file for nothing)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch home"))
    root = tmp_path / "r"
    argv = ["--data", str(csv_data), "--model", "vgg", "--default-root-dir", str(root)]
    with pytest.raises(FerError, match="could not load the ImageNet VGG16 weights") as e:
        train(argv)
    assert "\n" not in str(e.value)
    assert f"caches them in {tmp_path / 'torch home' / 'hub' / 'checkpoints'}," in str(e.value)
    assert not root.exists()


def test_config_flags_override_the_file_and_unknown_keys_fail(tmp_path, csv_data):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump({"data": str(csv_data), "max_epochs": 5, "widths": [8, 16], "depth": 1})
    )
    assert (
        train(
            [
                "--config",
                str(cfg),
                "--max-epochs",
                "1",
                "--default-root-dir",
                str(tmp_path),
                "--precision",
                "32-true",
            ]
        )
        == 0
    )
    assert yaml.safe_load((run_dir(tmp_path) / "config.yaml").read_text())["max_epochs"] == 1
    cfg.write_text("max_epochs: 1\nlearning_rate: 3\n")
    with pytest.raises(FerError, match="unknown options learning_rate"):
        train(["--config", str(cfg)])


@pytest.mark.slow  # CI runs it too (.ci/run): 57 s on a first-generation EPYC
def test_overfits_a_few_batches(folder_data, tmp_path):
    args = [
        "--data",
        str(folder_data),
        "--max-epochs",
        "30",
        "--augment",
        "none",
        "--optimizer",
        "adamw",
        "--lr",
        "0.01",
        "--scheduler",
        "none",
        "--label-smoothing",
        "0",
        "--dropout",
        "0",
        "--default-root-dir",
        str(tmp_path),
        "--no-test",
        *TINY,
    ]
    assert train(args) == 0
    rows = metrics(tmp_path)
    first, last = rows[0], rows[-1]
    assert float(last["train/loss"]) < 0.5 * float(first["train/loss"])
    assert float(last["train/acc"]) >= 0.95


def test_resume_from_last_checkpoint_continues_the_same_run(csv_data, tmp_path):
    base = [
        "--data",
        str(csv_data),
        "--default-root-dir",
        str(tmp_path),
        "--no-test",
        "--scheduler",
        "cosine",
        *TINY,
    ]
    assert train([*base, "--max-epochs", "2"]) == 0
    # a run that trained all its epochs, resumed as it was: nothing to train, said in one line and
    # nothing touched (was: a sanity check, new event files, and 'finished in 0 s' as if it ran)
    files = {p: p.stat().st_mtime_ns for p in run_dir(tmp_path).rglob("*")}
    with pytest.raises(FerError, match="trained all its 2 epochs.*larger --max-epochs"):
        train([*base, "--max-epochs", "2", "--ckpt-path", "last"])
    assert {p: p.stat().st_mtime_ns for p in run_dir(tmp_path).rglob("*")} == files
    with pytest.MonkeyPatch.context() as mp:  # the checkpoint named from its own folder
        mp.chdir(run_dir(tmp_path) / "checkpoints")
        with pytest.raises(FerError, match="trained all its 2 epochs"):
            train([*base, "--max-epochs", "2", "--ckpt-path", "last.ckpt"])
        # ... and resumed from there with the options its run recorded (was: its config.yaml
        # looked for in ./, the defaults taken, and the network did not fit its checkpoint)
        files = {p: p.stat().st_mtime_ns for p in run_dir(tmp_path).rglob("*")}
        with pytest.raises(FerError, match="trained all its 2 epochs"):
            train(["--ckpt-path", "last.ckpt", "--data", str(csv_data), "--max-epochs", "2"])
        assert {p: p.stat().st_mtime_ns for p in run_dir(tmp_path).rglob("*")} == files
        with pytest.raises(FerError, match="the run resumed was made with --widths"):
            train(["--ckpt-path", "last.ckpt", "--max-epochs", "3", "--widths", "16", "32"])
    summary = run_dir(tmp_path) / "summary.json"
    kept = summary.read_text()
    summary.unlink()  # stopped before its summary was written: resumed, it is finished as it was
    assert train([*base, "--max-epochs", "2", "--ckpt-path", "last"]) == 0
    assert json.loads(summary.read_text())["best_epoch"] == json.loads(kept)["best_epoch"]
    assert train([*base, "--max-epochs", "4", "--ckpt-path", "last"]) == 0
    rows = metrics(tmp_path)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]  # same folder, epochs 2-3 appended
    ckpt = torch.load(
        run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu"
    )
    assert ckpt["epoch"] == 3 and ckpt["lr_schedulers"]  # the cosine schedule ran and resumed
    assert not (tmp_path / "lightning_logs" / "version_1").exists()
    # the resumed run's config.yaml still reproduces it from scratch; the resume is logged apart
    config = yaml.safe_load((run_dir(tmp_path) / "config.yaml").read_text())
    assert "ckpt_path" not in config
    assert "resumed from" in (run_dir(tmp_path) / "resumed.log").read_text()
    fresh = tmp_path / "again"
    assert (
        train(
            ["--config", str(run_dir(tmp_path) / "config.yaml"), "--default-root-dir", str(fresh)]
        )
        == 0
    )
    assert [int(r["epoch"]) for r in metrics(fresh)] == [0, 1, 2, 3]  # a new run, not a resume


def test_a_resumed_run_keeps_its_best_epoch_and_takes_a_new_patience(
    csv_data, tmp_path, monkeypatch
):
    """Was: resumed in a run made under the default root (./lightning_logs), the run forgot its
    best epoch: Lightning compares the checkpoint folder it recorded (./lightning_logs/...) with
    the resolved one as strings, so the next epoch became the best whatever it scored, its file
    written beside the old best's. And Lightning restored the checkpoint's --patience over the
    one given, which config.yaml recorded."""
    monkeypatch.chdir(tmp_path)
    base = ["--data", str(csv_data), "--no-test", "--scheduler", "cosine", *TINY]
    assert train([*base, "--max-epochs", "2", "--patience", "1"]) == 0
    assert train([*base, "--max-epochs", "4", "--patience", "5", "--ckpt-path", "last"]) == 0
    rows = metrics(tmp_path)
    assert [int(r["epoch"]) for r in rows if r["val/acc"]][:2] == [0, 1]
    scores = [float(r["val/acc"]) for r in rows if r["val/acc"]]
    run = run_dir(tmp_path)
    best = [p.name for p in (run / "checkpoints").glob("epoch*.ckpt")]
    assert len(best) == 1  # save_top_k=1: the old best file was left beside the new one
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    kept = next(v for k, v in state.items() if k.startswith("ModelCheckpoint") and v["monitor"])
    assert float(kept["best_model_score"]) == pytest.approx(max(scores), abs=1e-6)
    assert Path(kept["best_model_path"]).name == best[0]
    early = next(v for k, v in state.items() if k.startswith("EarlyStopping"))
    assert early["patience"] == 5
    assert yaml.safe_load((run / "config.yaml").read_text())["patience"] == 5


def test_a_run_folder_moved_whole_keeps_its_best_epoch_and_lightnings_state_names(tmp_path):
    """A run resumed in its own folder after the folder moved reads its best epochs' files where
    they are now; its callbacks' states go by Lightning's names, so checkpoints written before
    resume with them and the other way round."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from fer.callbacks import RunCheckpoint, RunEarlyStopping

    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    state = {
        "monitor": "val/acc",
        "best_model_score": torch.tensor(0.5),
        "best_model_path": str(old / "epoch001.ckpt"),
        "dirpath": str(old),
        "best_k_models": {str(old / "epoch001.ckpt"): torch.tensor(0.5)},
        "kth_best_model_path": str(old / "epoch001.ckpt"),
        "kth_value": torch.tensor(0.5),
        "last_model_path": "",
    }
    for in_place, where in ((True, new), (False, old)):
        callback = RunCheckpoint(dirpath=new, monitor="val/acc", mode="max", in_place=in_place)
        callback.load_state_dict(dict(state))
        assert callback.best_model_path == str(where / "epoch001.ckpt")
        assert (callback.best_model_score is not None) == in_place  # another run's: not its own
    kwargs = {"monitor": "val/acc", "mode": "max"}
    assert RunCheckpoint(**kwargs).state_key == ModelCheckpoint(**kwargs).state_key
    assert RunEarlyStopping(**kwargs).state_key == EarlyStopping(**kwargs).state_key


def test_a_resume_that_fails_before_training_leaves_the_finished_run_as_it_was(
    csv_data, tmp_path, monkeypatch
):
    """A resume that fails while the checkpoint's state is restored (a state that does not fit
    the options given) leaves the finished run its summary.json and config.yaml. (Was: both
    changed first, so fer.evaluate then called it a run with no summary, and its config.yaml
    recorded options that made every later resume fail again.)"""
    from pytorch_lightning.trainer.connectors.checkpoint_connector import _CheckpointConnector

    base = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    base += ["--scheduler", "cosine"]
    assert train([*base, "--max-epochs", "2"]) == 0
    run = run_dir(tmp_path)
    before = {name: (run / name).read_text() for name in ("summary.json", "config.yaml")}

    def broken(self):
        raise RuntimeError("a state that does not fit")

    monkeypatch.setattr(_CheckpointConnector, "restore_training_state", broken)
    with pytest.raises(RuntimeError, match="does not fit"):
        train([*base, "--max-epochs", "4", "--ckpt-path", "last"])
    assert {name: (run / name).read_text() for name in before} == before


@pytest.mark.parametrize("given", ["export", "weights", "export folder", "folder", "text"])
def test_ckpt_path_that_is_no_lightning_checkpoint_is_one_line_before_any_run_folder(
    csv_data, tmp_path, exported, given
):
    """--ckpt-path naming an export's weights, a folder or another file: one line, and no run
    folder made. (Was: a pickle traceback after version_0/ was made; a folder 'does not exist';
    an export's folder, advice to name a .ckpt in its checkpoints/, which it has not.)"""
    path = {
        "export": exported / "model.json",
        "weights": exported / "model.safetensors",
        "export folder": exported,
        "folder": tmp_path,
        "text": tmp_path / "notes.ckpt",
    }[given]
    if given == "text":
        path.write_text("not a checkpoint")
    root = tmp_path / "runs"
    args = ["--data", str(csv_data), "--default-root-dir", str(root), *TINY]
    needle = {"folder": "is a folder", "export folder": "is an exported model.*--init"}.get(
        given, "is not a Lightning checkpoint"
    )
    if given == "export folder":  # an ensemble's: which member, as --init asks
        from fer.inference import SHIPPED

        last = len(json.loads((SHIPPED / "model.json").read_text())["options"]["members"]) - 1
        with pytest.raises(FerError, match=rf"--init \S+ --init-member N \(0 to {last}\)$"):
            train([*args, "--ckpt-path", str(SHIPPED)])
    with pytest.raises(FerError, match=needle):
        train([*args, "--ckpt-path", str(path)])
    assert not (root / "lightning_logs").exists()


def test_a_one_cycle_run_resumed_with_fewer_batches_an_epoch_is_refused_before_training(
    csv_data, tmp_path, monkeypatch
):
    """A one-cycle schedule is laid out for the run's steps; resumed when its epochs hold another
    number of batches (its --exclude list grew, other devices), it would fail midway ('Tried to
    step N times') or end unfinished: one line before any training, the run left as it was."""
    import fer.callbacks

    listed = tmp_path / "exclude.txt"
    listed.write_text("")
    base = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    base += ["--exclude", str(listed), "--max-epochs", "3"]
    seed = fer.callbacks.EpochSeed.on_train_epoch_start

    def stopped_after_the_first_epoch(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt
        seed(self, trainer, pl_module)

    monkeypatch.setattr(
        fer.callbacks.EpochSeed, "on_train_epoch_start", stopped_after_the_first_epoch
    )
    assert train(base) == 130  # 56 training faces: 3 batches of 16 an epoch, 9 steps planned
    monkeypatch.undo()
    run = run_dir(tmp_path)
    config = (run / "config.yaml").read_text()
    rows = [f"fer2013.csv:{i}" for i in (*range(8), 12)]  # nine training faces less: 2 batches
    listed.write_text("\n".join(rows) + "\n")
    with pytest.raises(FerError, match="laid out for 9 steps.*would take 6"):
        train([*base, "--ckpt-path", "last"])
    assert (run / "config.yaml").read_text() == config and not (run / "resumed.log").exists()
    listed.write_text("")  # as it was: it goes on
    assert train([*base, "--ckpt-path", "last"]) == 0


def test_a_run_stopped_mid_epoch_goes_on_with_the_batches_it_had_not_trained_on(
    csv_data, tmp_path, monkeypatch, capsys
):
    """Ctrl-C in the middle of an epoch, then --ckpt-path last: the epoch goes on with the batch
    it was stopped in and those after it, as a run never stopped takes them. (Was: the epoch
    began again, so its first batches were trained on twice and its last ones never.)"""
    import fer.data

    seen: list[list[int]] = []
    getitem = fer.data.TensorFaces.__getitem__

    def recorded(self, index):
        if len(self) == 56:  # the training faces (validation has 14)
            seen.append(sorted(index.tolist()))
        return getitem(self, index)

    monkeypatch.setattr(fer.data.TensorFaces, "__getitem__", recorded)
    base = ["--data", str(csv_data), "--no-test", *TINY, "--max-epochs", "2"]
    assert train([*base, "--default-root-dir", str(tmp_path / "whole")]) == 0
    whole, seen[:] = list(seen), []  # 3 batches of 16 an epoch
    step = FerModule.training_step

    def stopped_in_the_second_batch_of_epoch_1(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 1:
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    monkeypatch.setattr(FerModule, "training_step", stopped_in_the_second_batch_of_epoch_1)
    (tmp_path / "stopped").mkdir()
    monkeypatch.chdir(tmp_path / "stopped")  # its root the default: this folder
    capsys.readouterr()
    assert train(base) == 130
    monkeypatch.setattr(FerModule, "training_step", step)
    # what it says to run, from any folder (was '--ckpt-path last', which from another folder
    # than the root found no run there)
    said = re.search(r"resume with (.*)$", capsys.readouterr().out, re.M)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert train([*base, *shlex.split(said.group(1))]) == 0
    assert len(whole) == 6 and seen[:5] == whole[:5]  # epoch 0, and epoch 1 up to the stop
    assert seen[5:] == whole[4:]  # the batch it stopped in, then the last
    log = tmp_path / "stopped" / "lightning_logs" / "version_0" / "resumed.log"
    assert "resumed from" in log.read_text()  # noted also when resumed mid-epoch


def test_ctrl_c_while_the_best_checkpoint_is_read_for_the_test_keeps_the_summary(
    csv_data, tmp_path, monkeypatch
):
    """Ctrl-C while the best checkpoint is read for the final test: the finished run keeps its
    summary.json (test_interrupted) and exits 130. (A version of this change that read the
    checkpoint before the test gave a traceback and no summary.)"""
    from pytorch_lightning.trainer.connectors.checkpoint_connector import _CheckpointConnector
    from pytorch_lightning.trainer.states import TrainerFn

    restore = _CheckpointConnector._restore_modules_and_callbacks

    def stopped(self, checkpoint_path=None, *args, **kwargs):
        if self.trainer.state.fn == TrainerFn.TESTING and checkpoint_path:  # reading it
            raise KeyboardInterrupt
        return restore(self, checkpoint_path, *args, **kwargs)

    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), *TINY]
    monkeypatch.setattr(_CheckpointConnector, "_restore_modules_and_callbacks", stopped)
    assert train([*args, "--max-epochs", "1"]) == 130
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert summary["test_interrupted"] is True and "test_acc" not in summary


def test_a_damaged_or_unreadable_checkpoint_is_said_so(csv_data, tmp_path):
    """A checkpoint cut short is 'damaged', not 'not a Lightning checkpoint ... use --init'."""
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    assert train([*args, "--max-epochs", "1", "--scheduler", "cosine"]) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(FerError, match="damaged") as e:
        train([*args, "--max-epochs", "2", "--scheduler", "cosine", "--ckpt-path", "last"])
    assert "--init" not in str(e.value)


def test_a_cosine_run_resumed_for_more_epochs_goes_on_along_its_new_curve(
    csv_data, tmp_path, monkeypatch
):
    """Was: the learning rate restored with the optimizer (0, where the first run's curve ended)
    drove the first step after the resume; the new, longer curve began a step later."""
    lrs = []
    step = FerModule.training_step

    def noted(self, batch, batch_idx):
        lrs.append((self.trainer.global_step, self.trainer.optimizers[0].param_groups[0]["lr"]))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(FerModule, "training_step", noted)
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    args += ["--scheduler", "cosine", "--warmup-epochs", "0", "--lr", "0.1"]
    assert train([*args, "--max-epochs", "2"]) == 0
    first = len(lrs)  # steps of two epochs
    assert train([*args, "--max-epochs", "4", "--ckpt-path", "last"]) == 0
    (at, lr), total = lrs[first], 2 * first
    assert at == first and lr == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * at / total)))


def test_a_run_stopped_in_its_last_validation_notes_its_resume(csv_data, tmp_path, monkeypatch):
    """Stopped while its last epoch was validated, a resumed run has no training batch left: its
    resume is still noted in resumed.log, and it ends with its summary. (Found by a review: the
    note was made at the first training batch only.)"""
    step = FerModule.validation_step

    def stopped_in_the_last_validation(self, batch, batch_idx):
        if self.current_epoch == 1 and not self.trainer.sanity_checking:
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    base = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    base += ["--max-epochs", "2", "--scheduler", "cosine"]
    monkeypatch.setattr(FerModule, "validation_step", stopped_in_the_last_validation)
    assert train(base) == 130
    monkeypatch.setattr(FerModule, "validation_step", step)
    assert train([*base, "--ckpt-path", "last"]) == 0
    run = run_dir(tmp_path)
    assert "resumed from" in (run / "resumed.log").read_text()
    assert (run / "summary.json").is_file()


@pytest.mark.parametrize(
    "where",
    [
        "validation_step",  # inside a batch (its third)
        "PredictionGridLogger",  # after its last batch, while its figures are drawn
        "on_validation_epoch_start",  # before its first batch
    ],
)
def test_a_run_stopped_while_an_epoch_is_validated_validates_it_when_resumed(
    csv_data, tmp_path, monkeypatch, where
):
    """Was: stopped after the epoch's last validation batch (drawing its confusion matrix and
    prediction grid takes a while) or before its first, the resumed run went on to the next
    epoch without validating it: metrics.csv got a row without figures, and its checkpoint could
    not be the best, so the run kept another; stopped inside a batch, it validated as many
    batches as were left (the first form of the fix: all but one), from the first. Resumed, it is
    the run that was never stopped: validated in four batches here, stopped in the third. With
    --ema, whose averaged weights validation swaps in, the checkpoint saved holds them as they
    are outside validation (was: the other way round, and the run trained on from the average;
    found by a review of the change)."""
    import fer.data

    sampler = fer.data.BatchSampler.__init__

    def in_fours(self, n, batch_size, train, *args, **kwargs):  # 14 validation faces: 4 batches
        sampler(self, n, batch_size if train else 4, train, *args, **kwargs)

    monkeypatch.setattr(fer.data.BatchSampler, "__init__", in_fours)
    base = ["--data", str(csv_data), "--no-test", *TINY, "--max-epochs", "2"]
    base += ["--scheduler", "none", "--deterministic", "--lr", "0.05", "--ema", "0.5"]
    assert train([*base, "--default-root-dir", str(tmp_path / "whole")]) == 0
    from fer.callbacks import PredictionGridLogger

    owner = PredictionGridLogger if where == "PredictionGridLogger" else FerModule
    name = "on_validation_epoch_end" if owner is PredictionGridLogger else where
    hook = getattr(owner, name)

    def stopped(self, *args):
        module = args[1] if owner is PredictionGridLogger else self  # (trainer, module)
        third = where != "validation_step" or args[1] == 2  # (batch, its index)
        if module.current_epoch == 0 and not module.trainer.sanity_checking and third:
            raise KeyboardInterrupt
        return hook(self, *args)

    root = ["--default-root-dir", str(tmp_path / "stopped")]
    monkeypatch.setattr(owner, name, stopped)
    assert train([*base, *root]) == 130
    monkeypatch.setattr(owner, name, hook)
    assert train([*base, *root, "--ckpt-path", "last"]) == 0
    whole, resumed = metrics(tmp_path / "whole"), metrics(tmp_path / "stopped")
    for figure in ("val/acc", "val/loss"):
        assert [r[figure] for r in resumed] == [r[figure] for r in whole] and all(
            r[figure] for r in resumed
        )
    summaries = [
        json.loads((run_dir(tmp_path / name) / "summary.json").read_text())
        for name in ("whole", "stopped")
    ]
    assert summaries[0]["best_epoch"] == summaries[1]["best_epoch"]
    assert summaries[0]["best_val_acc"] == summaries[1]["best_val_acc"]


def test_a_run_early_stopping_ended_or_longer_than_max_epochs_is_refused_on_resume(
    csv_data, tmp_path, monkeypatch
):
    """Were: a finished run that early stopping ended, resumed as it was, trained one more epoch
    each time (its summary rewritten); and a run stopped at epoch 2, resumed with --max-epochs 1,
    ended in Lightning's MisconfigurationException traceback."""
    base = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    base += ["--scheduler", "cosine", "--lr", "1e-9", "--max-epochs", "4"]  # val/acc stays put
    assert train([*base, "--patience", "1"]) == 0
    rows = len(metrics(tmp_path))
    assert rows < 4  # stopped early
    with pytest.raises(FerError, match=r"early stopping ended \(1 epochs? without .*--patience"):
        train([*base, "--ckpt-path", "last"])  # its recorded --patience 1
    assert len(metrics(tmp_path)) == rows
    assert train([*base, "--ckpt-path", "last", "--patience", "3"]) == 0  # more patience: on
    assert len(metrics(tmp_path)) > rows

    step = FerModule.training_step

    def stopped_at_epoch_2(self, batch, batch_idx):
        if self.current_epoch == 2:
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    other = ["--default-root-dir", str(tmp_path / "cut")]
    monkeypatch.setattr(FerModule, "training_step", stopped_at_epoch_2)
    assert train([*base, *other]) == 130
    monkeypatch.setattr(FerModule, "training_step", step)
    with pytest.raises(FerError, match="has trained 2 epochs, more than --max-epochs 1"):
        train([*base, *other, "--ckpt-path", "last", "--max-epochs", "1"])
    # every training face excluded is said so (was: "no training samples; download")
    from fer.data import load_fer

    every = tmp_path / "every.txt"
    every.write_text("\n".join(load_fer(csv_data).names) + "\n")
    with pytest.raises(FerError, match="every.txt lists every training face"):
        train([*base, "--default-root-dir", str(tmp_path / "none"), "--exclude", str(every)])


def test_a_resumed_run_refuses_the_init_of_another_model_and_takes_its_own_from_anywhere(
    csv_data, tmp_path, monkeypatch
):
    """Was: --init given to a resumed run was ignored without a word (the checkpoint's weights
    trained on). The model it started from, named as typed from another folder, is its own (the
    first form of the refusal took it for another: found a review of the change)."""
    base = ["--data", str(csv_data), "--no-test", *TINY, "--scheduler", "none"]
    assert (
        train([*base, "--default-root-dir", str(tmp_path / "a" / "src"), "--max-epochs", "1"]) == 0
    )
    source = run_dir(tmp_path / "a" / "src") / "checkpoints" / "last.ckpt"
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    init = ["--init", "src/lightning_logs/version_0/checkpoints/last.ckpt"]
    assert train([*base, "--default-root-dir", "run", "--max-epochs", "1", *init]) == 0
    monkeypatch.chdir(tmp_path / "b")
    resume = ["--ckpt-path", "../a/run/lightning_logs/version_0/checkpoints/last.ckpt"]
    with pytest.raises(FerError, match="a resumed run goes on from its checkpoint's weights"):
        train([*base, *resume, "--max-epochs", "2", "--init", resume[1]])  # (its own last)
    again = ["--init", os.path.relpath(source)]  # the same model, named from here
    assert train([*base, *resume, "--max-epochs", "2", *again]) == 0


def test_the_init_a_resumed_run_started_from_is_told_by_its_member_and_its_files(
    tmp_path, monkeypatch
):
    """Found by a review of the change: --init-member other than the run's was still ignored
    without a word; and the same --init typed from another folder was refused where the run's
    root folder was absolute (the folder it started in cannot be told): now told by the files
    themselves (their model_key)."""
    from types import SimpleNamespace

    from fer.train import same_init

    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (tmp_path / "a" / "models").mkdir(parents=True)
    (tmp_path / "a" / "models" / "m.ckpt").write_bytes(b"the weights")
    (tmp_path / "b").mkdir()
    recorded = {"init": "models/m.ckpt", "init_member": None}
    recorded["default_root_dir"] = str(tmp_path / "runs")  # absolute: where it started is unknown
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    resume = {"ckpt_path": "last", "default_root_dir": str(tmp_path / "runs")}
    monkeypatch.chdir(tmp_path / "a")  # as it started
    assert same_init(SimpleNamespace(**resume, init="models/m.ckpt", init_member=None))
    assert not same_init(SimpleNamespace(**resume, init="models/m.ckpt", init_member=1))
    monkeypatch.chdir(tmp_path / "b")  # the recorded name leads nowhere from here: not refused
    assert same_init(SimpleNamespace(**resume, init="../a/models/m.ckpt", init_member=None))
    (tmp_path / "b" / "models").mkdir()  # ... and where it leads to another file: by content
    (tmp_path / "b" / "models" / "m.ckpt").write_bytes(b"the weights")
    assert same_init(SimpleNamespace(**resume, init="../a/models/m.ckpt", init_member=None))
    (tmp_path / "b" / "models" / "m.ckpt").write_bytes(b"other weights")
    assert not same_init(SimpleNamespace(**resume, init="../a/models/m.ckpt", init_member=None))
    # a run whose root is relative: its --init found from where it started first, whatever
    # the name leads to from here (was: a folder of that name here, no model, was an error)
    mine = tmp_path / "a" / "runs" / "lightning_logs" / "version_0"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "checkpoints" / "last.ckpt").write_bytes(b"")
    (mine / "config.yaml").write_text(yaml.safe_dump({**recorded, "default_root_dir": "runs"}))
    (tmp_path / "b" / "models" / "m.ckpt").unlink()
    (tmp_path / "b" / "models" / "m.ckpt").mkdir()  # a folder of that name, here
    resume = {"ckpt_path": str(mine / "checkpoints" / "last.ckpt"), "default_root_dir": None}
    assert same_init(SimpleNamespace(**resume, init="../a/models/m.ckpt", init_member=None))


def test_resuming_a_one_cycle_run_for_more_epochs_is_refused_before_training(csv_data, tmp_path):
    base = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    assert train([*base, "--max-epochs", "2"]) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    before = last.stat().st_mtime_ns
    with pytest.raises(FerError, match="planned for 2 epochs.*--max-epochs 2"):
        train([*base, "--max-epochs", "4", "--ckpt-path", "last"])
    assert last.stat().st_mtime_ns == before and len(metrics(tmp_path)) == 2


def test_the_precision_auto_picks_is_the_one_the_trainer_uses_and_is_logged(
    csv_data, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--max-epochs", "1"]
    assert train([*args, "--widths", "8", "--depth", "1", "--batch-size", "16"]) == 0
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    native = " avx512_bf16" in flags or " amx_bf16" in flags  # read apart from fer's own check
    expected = "bf16-mixed" if native and not torch.cuda.is_available() else None
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    used = summary["precision"]  # what the Trainer ran with
    if expected:
        assert used == expected
    elif not torch.cuda.is_available():
        assert used == "32-true"
    assert f"precision: {used}" in caplog.text
    assert ("no native bf16" in caplog.text) == (used == "32-true")


def test_a_true_precision_trains_with_a_class_weighted_loss(folder_data, tmp_path):
    """Was: the class weights were cast with the network to bf16 and met float32 logits in the
    loss: 'expected scalar type Float but found BFloat16' at the first step (found by a review)."""
    args = ["--data", str(folder_data), "--default-root-dir", str(tmp_path), "--max-epochs", "1"]
    args += [*TINY[:-2], "--precision", "bf16-true", "--balance", "loss", "--no-test"]
    assert train(args) == 0


@pytest.mark.parametrize("precision", ["bf16-true", "64-true"])
def test_a_true_precision_trains_validates_and_tests(folder_data, tmp_path, precision):
    """Was: the batch was made float32 after Lightning's own cast (it was uint8 then), so the
    first validation step failed: 'Input type (torch.FloatTensor) and weight type
    (CPUBFloat16Type) should be the same'."""
    args = ["--data", str(folder_data), "--default-root-dir", str(tmp_path), "--max-epochs", "1"]
    args += [*TINY[:-2], "--precision", precision, "--json", str(tmp_path / "s.json")]
    assert train([*args, "--mixup", "0.2"]) == 0  # mixup's Beta has no bf16 or fp16 sampler
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["precision"] == precision and 0 <= summary["best_val_acc"] <= 1
    assert 0 <= summary["test_acc"] <= 1  # and it tested


def test_checkpoint_rebuilds_its_own_model(csv_data, tmp_path):
    assert (
        train(
            [
                "--data",
                str(csv_data),
                "--max-epochs",
                "1",
                "--default-root-dir",
                str(tmp_path),
                "--no-test",
                *TINY,
            ]
        )
        == 0
    )
    module = FerModule.load_from_checkpoint(
        run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    assert module.hparams.model_options["widths"] == [8, 16]
    assert module(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


@pytest.mark.slow  # CI runs it too (.ci/run): torch.compile takes half a minute here
def test_a_compiled_run_saves_checkpoints_that_load_and_resume(csv_data, tmp_path):
    """Was: a --compile run's checkpoints held the compiled wrapper's keys (model._orig_mod.*),
    so FerModule.load_from_checkpoint, which rebuilds the plain network, refused them."""
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    args += ["--compile", "--scheduler", "cosine", "--ema", "0.9"]  # with the averaged weights
    assert train([*args, "--max-epochs", "1"]) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    assert not any("_orig_mod" in k for k in torch.load(last, weights_only=False)["state_dict"])
    module = FerModule.load_from_checkpoint(last, map_location="cpu")
    assert module(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    assert train([*args, "--max-epochs", "2", "--ckpt-path", "last"]) == 0  # compiled again
    assert torch.load(last, weights_only=False)["epoch"] == 1


def test_compile_is_not_added_to_a_resumed_run(csv_data, tmp_path):
    """Was: a run made without --compile could be resumed with it, and then failed as Lightning
    restored the weights its callbacks keep under the plain names (--ema's raw weights, vgg's
    backbone groups) into the compiled network's."""
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    args += ["--scheduler", "cosine", "--ema", "0.9"]
    assert train([*args, "--max-epochs", "1"]) == 0
    with pytest.raises(FerError, match=r"^--compile: the run resumed was made without --compile"):
        train([*args, "--max-epochs", "2", "--ckpt-path", "last", "--compile"])
    # nor another learning rate (was: taken into config.yaml, while the optimizer's and the
    # schedule's states restored the old one)
    with pytest.raises(FerError, match=r"^--lr 0.5: the run resumed was made with --lr"):
        train([*args, "--max-epochs", "2", "--ckpt-path", "last", "--lr", "0.5"])


def test_checkpoints_of_compiled_and_plain_networks_load_into_either(csv_data, tmp_path):
    """The keys torch.compile's wrapper adds (model._orig_mod.*) are left out of a checkpoint and
    put back for a compiled network, so one loads into either; one saved with them (before this
    was so) loads into a plain network too."""
    import pytorch_lightning as pl

    hparams = {"model": "cnn", "model_options": {"widths": [8, 16], "depth": 1}}
    plain = FerModule(**hparams)
    compiled = FerModule(**hparams)
    compiled.model = torch.compile(compiled.model)  # compiled at its first call, never here
    for saved, into in ((compiled, plain), (plain, compiled), (compiled, compiled)):
        checkpoint = {"state_dict": saved.state_dict(), "pytorch-lightning_version": pl.__version__}
        saved.on_save_checkpoint(checkpoint)
        into.on_load_checkpoint(checkpoint)
        into.load_state_dict(checkpoint["state_dict"])
    old = {"state_dict": compiled.state_dict()}  # as saved before: the wrapper's keys
    plain.on_load_checkpoint(old)
    plain.load_state_dict(old["state_dict"])


def test_a_residual_network_trains_and_exports_to_onnx_that_agrees(csv_data, tmp_path):
    import numpy as np

    from fer.export import main as export
    from fer.inference import load_classifier
    from fer.models.cnn import Residual

    args = ["--data", str(csv_data), "--max-epochs", "1", "--default-root-dir", str(tmp_path)]
    assert train([*args, "--no-test", "--residual", *TINY]) == 0
    ckpt = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    module = FerModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert module.hparams.model_options["residual"] is True
    assert sum(isinstance(m, Residual) for m in module.model.modules()) == 2
    assert export(["--ckpt", str(ckpt), "--out", str(tmp_path / "export")]) == 0
    faces = np.random.default_rng(0).integers(0, 255, (8, 48, 48), dtype=np.uint8)
    p_torch = load_classifier(tmp_path / "export").predict_proba(faces)
    p_onnx = load_classifier(tmp_path / "export", backend="onnx").predict_proba(faces)
    assert np.allclose(p_torch, load_classifier(ckpt).predict_proba(faces), atol=1e-6)
    assert np.abs(p_onnx - p_torch).max() < 1e-4


def test_ema_checkpoints_hold_the_averaged_weights(csv_data, tmp_path):
    base = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    base += ["--scheduler", "cosine"]
    with pytest.raises(FerError, match="--ema"):
        train([*base, "--ema", "1"])
    assert train([*base, "--max-epochs", "2", "--ema", "0.9"]) == 0
    path = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    assert ckpt["lr_schedulers"]
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == current.keys()
    floats = [k for k, v in averaged.items() if v.is_floating_point()]
    assert any(not torch.equal(averaged[k], current[k]) for k in floats)
    module = FerModule.load_from_checkpoint(path, map_location="cpu")
    loaded = module.state_dict()
    assert all(torch.equal(loaded[k], averaged[k]) for k in floats)
    # resuming restores both the running weights and their average
    assert train([*base, "--max-epochs", "3", "--ema", "0.9", "--ckpt-path", "last"]) == 0
    assert torch.load(path, weights_only=True, map_location="cpu")["epoch"] == 2


def test_ema_runs_score_the_test_split_with_the_averaged_weights(csv_data, tmp_path, monkeypatch):
    """The test split is scored with the best checkpoint's averaged weights, those val/acc chose
    and the export ships. (Was: the EMA callback, still holding fit's average, loaded the raw
    weights of the checkpoint's current_model_state for the test: summary.json's test_acc, hp/
    test_acc and the test confusion matrix were of another network.)"""
    seen: dict = {}

    def record(self):
        seen.update({k: v.detach().clone() for k, v in self.state_dict().items()})

    monkeypatch.setattr(FerModule, "on_test_start", record)
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), *TINY]
    args += ["--scheduler", "cosine", "--max-epochs", "2", "--ema", "0.9"]
    assert train(args) == 0
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert "test_acc" in summary
    ckpt = torch.load(summary["best_checkpoint"], weights_only=True, map_location="cpu")
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    floats = [k for k, v in averaged.items() if v.is_floating_point()]
    assert any(not torch.equal(averaged[k], current[k]) for k in floats)  # two networks
    assert all(torch.equal(seen[k], averaged[k]) for k in floats)


def test_ema_runs_draw_the_prediction_grid_with_the_averaged_weights(
    csv_data, tmp_path, monkeypatch
):
    """val/predictions (the grid of faces with their predicted emotions) shows the network the
    epoch's val/acc scored: with --ema the average. (Was: drawn once the callback had put the raw
    weights back.)"""
    import fer.callbacks
    from fer.common import EMOTIONS, preprocess

    grids = []
    draw = fer.callbacks.face_grid

    def spy(faces, captions, **kw):
        grids.append((faces.copy(), list(captions)))
        return draw(faces, captions, **kw)

    monkeypatch.setattr(fer.callbacks, "face_grid", spy)
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    assert train([*args, "--scheduler", "cosine", "--max-epochs", "2", "--ema", "0.9"]) == 0
    faces, captions = grids[-1]
    module = FerModule.load_from_checkpoint(
        run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu"
    ).eval()
    with torch.no_grad():
        probs = module(preprocess(torch.from_numpy(faces))).float().softmax(1)
    expected = [f"{EMOTIONS[p]}\n{probs[i, p]:.2f}" for i, p in enumerate(probs.argmax(1))]
    assert [c.split(" -> ")[1] for c in captions] == expected


def test_vgg_freezes_then_finetunes_the_backbone(folder_data, tmp_path):
    args = [
        "--model",
        "vgg",
        "--no-pretrained",
        "--image-size",
        "32",
        "--data",
        str(folder_data),
        "--max-epochs",
        "2",
        "--freeze-epochs",
        "1",
        "--default-root-dir",
        str(tmp_path),
        "--no-test",
        "--limit-train-batches",
        "2",
        "--limit-val-batches",
        "1",
        *TINY,
    ]
    assert train(args) == 0
    ckpt = torch.load(
        run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu"
    )
    assert ckpt["lr_schedulers"]  # the real one-cycle schedule ran
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert len(groups) == 2  # head, then the unfrozen backbone
    assert groups[1]["lr"] < groups[0]["lr"]


def test_ddp_on_two_cpu_processes_covers_the_whole_validation_set(tmp_path):
    from tests.conftest import make_folder

    data = make_folder(
        tmp_path / "d", per_class=(4, 3, 0)
    )  # 21 val faces: an odd count across 2 ranks
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "fer.train",
        "--data",
        str(data),
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--max-epochs",
        "1",
        "--default-root-dir",
        str(tmp_path / "r"),
        *TINY,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parents[1]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    run = run_dir(tmp_path / "r")
    cm = torch.tensor(json.loads((run / "confusion_val.json").read_text())["matrix"])
    assert cm.sum() == 21 and cm.sum(1).tolist() == [3] * 7
    val_acc = float(metrics(tmp_path / "r")[-1]["val/acc"])
    assert abs(val_acc - cm.diag().sum().item() / 21) < 1e-6


def ddp_run_with(callback: str, args: list[str], tmp_path: Path, timeout: float) -> str:
    """What both ranks printed in a fer.train run (ARGS, TINY, --no-test) on 2 CPU processes
    with DDP, with a callback whose methods are `callback`'s code added to fer's own. The run is
    a file: DDP starts rank 1 by running the command again."""
    import textwrap

    script = tmp_path / "probe.py"
    script.write_text(
        "import sys, pytorch_lightning as pl, fer.train as T\n"
        "class Probe(pl.Callback):\n"
        f"{textwrap.indent(callback, '    ')}"
        "build = T.build_callbacks\n"
        "T.build_callbacks = lambda *a, **k: build(*a, **k) + [Probe()]\n"
        "sys.exit(T.main(sys.argv[1:]))\n"
    )
    args = [*args, "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-test"]
    # buffered output: print(..., flush=True) then writes its line whole, where unbuffered it
    # writes the text and its newline apart, and the ranks' lines could run into each other
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    out = subprocess.run(
        [sys.executable, str(script), *args, *TINY], capture_output=True, text=True,
        env={**env, "OMP_NUM_THREADS": "1"}, timeout=timeout, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout + out.stderr


def test_ddp_keeps_vggs_backbone_the_same_on_every_rank_after_it_is_unfrozen(tmp_path):
    """Was: the backbone, frozen before DDP wrapped the model, was never registered with it, so
    once unfrozen its gradients stayed on each rank: the ranks' backbones drifted apart (Lightning
    issue #20340) and only rank 0's was saved."""
    from tests.conftest import make_folder

    data = make_folder(tmp_path / "d", per_class=(4, 3, 0))
    probe = (
        "def on_train_end(self, trainer, pl_module):\n"
        "    s = sum(p.double().sum().item() for p in pl_module.model.backbone.parameters())\n"
        "    print(f'RANK {trainer.global_rank} BACKBONE {s:.10f}', flush=True)\n"
    )
    args = ["--model", "vgg", "--no-pretrained", "--image-size", "32", "--data", str(data)]
    args += ["--max-epochs", "2", "--freeze-epochs", "1", "--default-root-dir", str(tmp_path / "r")]
    printed = ddp_run_with(probe, args, tmp_path, timeout=600)
    sums = dict(re.findall(r"RANK (\d) BACKBONE (\S+)", printed))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], sums


def test_ddp_logs_the_mean_training_loss_of_every_rank(tmp_path):
    """Was: train/loss_epoch under DDP was rank 0's mean alone (logged without sync_dist), while
    train/acc, a torchmetrics metric, covered every rank's faces."""
    from tests.conftest import make_folder

    data = make_folder(tmp_path / "d", per_class=(4, 3, 0))
    probe = (
        "def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):\n"
        "    loss, n = outputs['loss'].item(), len(batch[1])\n"
        "    print(f'RANK {trainer.global_rank} LOSS {loss!r} FACES {n}', flush=True)\n"
    )
    args = ["--data", str(data), "--max-epochs", "1", "--default-root-dir", str(tmp_path / "r")]
    printed = ddp_run_with(probe, args, tmp_path, timeout=300)
    steps = re.findall(r"RANK (\d) LOSS (\S+) FACES (\d+)", printed)
    mean = {
        rank: sum(float(v) * int(n) for r, v, n in steps if r == rank)
        / sum(int(n) for r, _, n in steps if r == rank)
        for rank in ("0", "1")
    }
    every = sum(float(v) * int(n) for _, v, n in steps) / sum(int(n) for *_, n in steps)
    assert abs(mean["0"] - every) > 1e-3  # the ranks' faces differ, and so do their losses
    rows = metrics(tmp_path / "r")
    logged = [float(row["train/loss"]) for row in rows if row["train/loss"]]  # epochs' means
    assert len(logged) == 1 and abs(logged[0] - every) < 1e-4, (logged, mean, every)


@pytest.mark.slow  # CI runs it too (.ci/run): 90 s here, mostly decoding 32,298 PNGs
def test_real_data_short_run(shared_data, tmp_path):
    args = [
        "--data",
        str(shared_data / "fer2013"),
        # a small network for two short epochs: in fp32 (CPUs without bf16) one epoch of 40
        # batches of the default network stayed at the class prior (25.9% against 24.9%)
        "--widths",
        *("16", "32", "64", "128"),
        "--batch-size",
        "64",
        "--max-epochs",
        "2",
        "--limit-train-batches",
        "60",
        "--optimizer",
        "adamw",
        "--lr",
        "0.003",
        "--default-root-dir",
        str(tmp_path),
    ]
    assert train(args) == 0
    run = run_dir(tmp_path)
    assert (run / "config.yaml").is_file() and list((run / "checkpoints").glob("epoch*.ckpt"))
    cm = torch.tensor(json.loads((run / "confusion_val.json").read_text())["matrix"])
    assert cm.sum() == 3589  # all of PublicTest
    # a collapsed model answering the commonest emotion scores the class prior (happy, 24.9%)
    prior = (cm.sum(1).max() / cm.sum()).item()
    val_acc = float(metrics(tmp_path)[-1]["val/acc"])
    print(f"val/acc {val_acc:.4f} against a class prior of {prior:.4f}")
    assert val_acc > prior + 0.01 and len(cm.sum(0).nonzero()) >= 3  # it predicts several emotions


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_and_fp32_reach_similar_accuracy_on_real_faces(shared_data, tmp_path):
    """Same seed, data order and network: bf16 autocast must learn as well as fp32."""
    acc = {}
    for precision in ("bf16-mixed", "32-true"):
        root = tmp_path / precision
        args = [
            "--data",
            str(shared_data / "fer2013"),
            "--widths",
            *("16", "32", "64", "128"),
            "--batch-size",
            "64",
            "--max-epochs",
            "2",
            "--limit-train-batches",
            "100",
            "--optimizer",
            "adamw",
            "--lr",
            "3e-3",
            "--augment",
            "none",
            "--precision",
            precision,
            "--seed",
            "0",
            "--no-test",
            "--default-root-dir",
            str(root),
        ]
        assert train(args) == 0
        acc[precision] = max(float(row["val/acc"]) for row in metrics(root) if row["val/acc"])
    # 6,400 training faces per epoch, scored on all 3,589 PublicTest faces, where always answering
    # "happy" scores 0.25; both reached 0.44 when this test was written
    assert min(acc.values()) > 0.38, acc
    assert abs(acc["bf16-mixed"] - acc["32-true"]) < 0.04, acc


def test_any_seed_fer_train_takes_seeds_every_epoch():
    """A seed of 4,294,968 or more (a date, 20240101) made every epoch's seed pass numpy's 2**32
    (a traceback after setup, leaving a version folder); a seed below that keeps its epochs'."""
    from types import SimpleNamespace

    from fer.callbacks import EpochSeed

    trainer = SimpleNamespace(current_epoch=3, global_rank=1)
    EpochSeed(20240101).on_train_epoch_start(trainer, None)
    a = torch.rand(3)
    EpochSeed(20240101).on_train_epoch_start(trainer, None)
    assert torch.equal(a, torch.rand(3))
    EpochSeed(20240101).on_train_epoch_start(SimpleNamespace(current_epoch=4, global_rank=1), None)
    assert not torch.equal(a, torch.rand(3))  # another epoch, other draws
    EpochSeed(7).on_train_epoch_start(trainer, None)
    b = torch.rand(3)
    torch.manual_seed(7 * 1000 + 3 + 997)  # what seed 7 gave before
    assert torch.equal(b, torch.rand(3))


def test_ema_with_a_class_weighted_loss_trains(csv_data, tmp_path):
    """Was: RuntimeError inside Lightning's weight averaging (the class-weight buffer appeared
    after the averaged copy was made)."""
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    assert train([*args, "--max-epochs", "1", "--ema", "0.999", "--balance", "loss"]) == 0


@pytest.mark.parametrize(
    "entry,needle",
    [
        ("batch_size: -4", "--batch-size: must be greater than 0"),
        ("widths: [8, 0]", "--widths must all be positive"),
        ("ema: 1.5", "--ema must be a decay"),
        ("strict: maybe", "strict must be true or false"),
        ("model: resnet", "invalid choice: 'resnet'"),
        ("crop: 60", "--crop must be between 8 and 47"),
        ("distill_alpha: 2", "--distill-alpha must be in [0, 1]"),
        ("mixup: -0.2", "--mixup must be >= 0"),
        ("model: vgg\nresidual: true", "--residual is an option of --model cnn"),
        # were tracebacks midway, most leaving a half-made version_N folder
        ("label_smoothing: 1.5", "--label-smoothing must be in [0, 1)"),
        ("widths: [8, 8, 8, 8, 8, 8, 8]", "7 stages halve a 48 px face to nothing"),
        ("crop: 40\nwidths: [8, 8, 8, 8, 8, 8]", "halve a 40 px face to nothing; give at most 5"),
        ("limit_val_batches: 1.5", "a share of the batches is at most 1.0"),
        ("limit_train_batches: 2.5", "a share of the batches is at most 1.0"),
        ("precision: bogus", "unknown --precision bogus"),
        ("seed: -1", "--seed must be in [0, 2**32)"),
        ("val_fraction: .nan", "--val-fraction must be between 0 and 1"),
        ("lr: .nan", "--lr: must be greater than 0"),
        ("mixup: .nan", "--mixup must be >= 0"),
        # were tracebacks once training had started, leaving a version_N folder
        ("weight_decay: -0.001", "--weight-decay must be >= 0"),
        ("warmup_epochs: .nan", "--warmup-epochs must be >= 0"),
        ("model: vgg\nimage_size: 24", "--image-size must be at least 32"),
        ("scheduler: plateau\nlimit_val_batches: 0", "--scheduler plateau follows val/acc"),
        ("freeze_epochs: -1", "--freeze-epochs must be >= 0"),
        ("backbone_lr_ratio: -1", "--backbone-lr-ratio must be >= 0"),
        # were tracebacks after the run folder was made, or quietly other runs
        ("warmup_epochs: 1.0e+308", "--warmup-epochs 1e+308 is longer than the run's"),
        ("weight_decay: 1.0e+308", "--weight-decay must be below 1"),
        ("mixup: .inf", "--mixup must be >= 0"),
        ("patience: -3", "--patience must be >= 0"),
        # were argparse's usage and "unrecognized arguments: 32", naming no key; the help
        ("batch_size: [16, 32]", "batch_size takes one value, not a list: [16, 32]"),
        ("help: true", "unknown options help"),
    ],
)
def test_config_values_get_the_checks_of_the_command_line(tmp_path, capsys, entry, needle):
    """Was: values from --config skipped validation and ended in tracebacks or odd runs."""
    from fer.common import run_cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text(entry + "\n")
    with pytest.raises(SystemExit) as e:
        run_cli(train, ["--config", str(cfg), "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and err.count("\n") == 1


def test_a_single_width_in_a_config_is_a_list_of_one(tmp_path, csv_data):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {csv_data}\nwidths: 8\ndepth: 1\nmax_epochs: 1\nprecision: 32-true\n")
    assert train(["--config", str(cfg), "--default-root-dir", str(tmp_path), "--no-test"]) == 0
    assert yaml.safe_load((run_dir(tmp_path) / "config.yaml").read_text())["widths"] == [8]


def test_no_validation_with_limit_val_batches_0(csv_data, tmp_path):
    """Lightning's 0 means no validation: training runs, keeps last.ckpt and says no val/acc."""
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), *TINY]
    out = tmp_path / "s.json"
    assert (
        train(
            [
                *args,
                "--max-epochs",
                "1",
                "--limit-val-batches",
                "0",
                "--no-test",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads(out.read_text())
    assert summary["best_val_acc"] is None and summary["best_checkpoint"].endswith("last.ckpt")
    with pytest.raises(FerError, match="--patience"):
        train([*args, "--limit-val-batches", "0", "--patience", "3"])
    with pytest.raises(FerError, match="would train nothing"):
        train([*args, "--limit-train-batches", "0"])


@pytest.mark.slow  # CI runs these too: .ci/run (33 s here: the default suite stays under 10 min)
def test_vgg_resumed_after_the_unfreeze_epoch_keeps_fine_tuning_the_backbone(
    folder_data, tmp_path, monkeypatch
):
    """Was: a run resumed after the unfreeze epoch crashed in its LR schedule (the checkpoint
    restores base_lrs for two groups, the lambdas for one) and its backbone was frozen again."""
    import signal

    args = ["--model", "vgg", "--no-pretrained", "--image-size", "32", "--data", str(folder_data)]
    args += ["--freeze-epochs", "1", "--scheduler", "cosine", "--no-test", "--max-epochs", "3"]
    args += ["--limit-train-batches", "2", "--limit-val-batches", "1", *TINY]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train([*args, "--default-root-dir", str(whole)]) == 0
    step = FerModule.training_step

    def interrupt_in_the_last_epoch(self, batch, batch_idx):
        if self.trainer.current_epoch == 2 and batch_idx == 1:
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores Ctrl-C while it shuts down
    with monkeypatch.context() as m:
        # Ctrl-C in the last epoch, after the unfreeze; last.ckpt is saved on the way out
        m.setattr(FerModule, "training_step", interrupt_in_the_last_epoch)
        assert train([*args, "--default-root-dir", str(cut)]) == 130  # as run_cli's Ctrl-C
    signal.signal(signal.SIGINT, sigint)
    last = run_dir(cut) / "checkpoints" / "last.ckpt"
    before = torch.load(last, weights_only=True)
    assert train([*args, "--default-root-dir", str(cut), "--ckpt-path", "last"]) == 0
    a = torch.load(run_dir(whole) / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert b["global_step"] == a["global_step"] > before["global_step"]
    ga, gb = (c["optimizer_states"][0]["param_groups"] for c in (a, b))
    assert len(ga) == len(gb) == 2 and [g["lr"] for g in gb] == pytest.approx([g["lr"] for g in ga])
    assert b["lr_schedulers"][0]["base_lrs"] == pytest.approx(a["lr_schedulers"][0]["base_lrs"])
    # the backbone went on learning after the resume
    backbone = [k for k in b["state_dict"] if k.startswith("model.backbone.")]
    assert any(not torch.equal(before["state_dict"][k], b["state_dict"][k]) for k in backbone)


@pytest.mark.slow  # CI runs these too: .ci/run
def test_ddp_on_real_faces_shards_batches_writes_once_and_resumes(shared_data, tmp_path):
    """Two gloo processes on this CPU: each trains on half the batches, the data is decoded and
    cached once, rank 0 alone writes one run folder and its checkpoints, and the run resumes."""
    data = shared_data / "fer2013-sample.csv"  # 700 Training and 350 PublicTest faces
    cache, root = tmp_path / "cache", tmp_path / "r"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FER_CACHE": str(cache)}
    base = [sys.executable, "-m", "fer.train", "--data", str(data), "--accelerator", "cpu"]
    base += ["--devices", "2", "--strategy", "ddp", "--default-root-dir", str(root)]
    base += ["--scheduler", "cosine", "--no-test", *TINY, "--batch-size", "32"]

    def run(*extra):
        out = subprocess.run(
            [*base, *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            cwd=Path(__file__).parents[1],
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout + out.stderr

    log = run("--max-epochs", "1")
    assert log.count("decoded 1050 faces") == 1  # one process decoded; the other read the cache
    assert len(list(cache.glob("*.safetensors"))) == 1
    assert [p.name for p in (root / "lightning_logs").iterdir()] == ["version_0"]
    ckpts = sorted(p.name for p in (run_dir(root) / "checkpoints").iterdir())
    assert len(ckpts) == 2 and "last.ckpt" in ckpts
    events = list(run_dir(root).glob("events.out.tfevents.*"))  # name: ...<host>.<pid>.<n>
    assert events and len({p.name.split(".")[-2] for p in events}) == 1  # one process logged
    # each rank took half of the 700 training faces: 350 // 32 = 10 steps, not 700 // 32 = 21
    assert int(metrics(root)[-1]["step"]) == 10
    cm = torch.tensor(json.loads((run_dir(root) / "confusion_val.json").read_text())["matrix"])
    assert cm.sum() == 350  # and validation covered every face once, across both
    run("--max-epochs", "2", "--ckpt-path", "last")
    assert [int(r["epoch"]) for r in metrics(root)] == [0, 1] and int(
        metrics(root)[-1]["step"]
    ) == 20
    assert [p.name for p in (root / "lightning_logs").iterdir()] == ["version_0"]


@pytest.mark.slow  # CI runs these too: .ci/run
def test_distillation_learns_what_the_teacher_says(tmp_path):
    """With --distill-alpha 1 the student learns the teacher's answers, not the labels: taught by a
    teacher trained with every class under the next one's name, it predicts that next class."""
    import shutil

    import numpy as np

    from fer.common import EMOTIONS
    from fer.export import main as export
    from fer.inference import load_classifier
    from tests.conftest import face, make_folder

    true = make_folder(tmp_path / "true", per_class=(8, 3, 0))
    shifted = tmp_path / "shifted"
    for split in ("train", "test"):
        for i, name in enumerate(EMOTIONS):
            shutil.copytree(true / split / name, shifted / split / EMOTIONS[(i + 1) % 7])
    fit = ["--max-epochs", "30", "--augment", "none", "--optimizer", "adamw", "--lr", "0.01"]
    fit += ["--scheduler", "none", "--label-smoothing", "0", "--dropout", "0", "--no-test", *TINY]

    def run(data: Path, root: Path, *extra: str) -> Path:
        """Train; its last checkpoint (the best on val would favour the labels)."""
        args = ["--data", str(data), "--default-root-dir", str(root)]
        assert train(args + fit + list(extra)) == 0
        return run_dir(root) / "checkpoints" / "last.ckpt"

    teacher = tmp_path / "teacher"
    assert export(["--ckpt", str(run(shifted, tmp_path / "t")), "--out", str(teacher)]) == 0
    student = run(true, tmp_path / "s", "--teacher", str(teacher), "--distill-alpha", "1")
    assert len(list((tmp_path / "cache").glob("teacher-*.pt"))) == 1  # scored once, kept
    labels = np.arange(7).repeat(8)
    faces = np.stack([face(c, c * 1000 + i) for c in range(7) for i in range(8)])
    taught = load_classifier(teacher).predict_proba(faces).argmax(1)
    said = load_classifier(student).predict_proba(faces).argmax(1)
    assert (taught == (labels + 1) % 7).mean() >= 0.8
    assert (said == taught).mean() >= 0.8 and (said == labels).mean() <= 0.2


def test_distillation_loss_is_zero_only_when_the_student_agrees():
    module = FerModule(model_options={"widths": [8]}, distill_temperature=2.0)
    teacher = torch.randn(5, 7).log_softmax(1)
    assert module._distill_loss(teacher + 3.0, teacher).abs() < 1e-6  # logits up to a constant
    assert module._distill_loss(torch.randn(5, 7), teacher) > 0.01


def test_a_missing_teacher_is_refused_before_training(csv_data, tmp_path):
    root = tmp_path / "r"
    args = ["--data", str(csv_data), "--default-root-dir", str(root), *TINY]
    with pytest.raises(FerError, match="--teacher .*gone does not exist"):
        train(args + ["--teacher", str(tmp_path / "gone")])
    assert not root.exists()


def test_data_that_gives_no_validation_faces_is_refused_before_training(tmp_path):
    """Was: a train/ folder of one face a class (no PublicTest, none to hold out) gave an empty
    validation split, and fer.train, its run folder made, ended in a KeyError: 'val'."""
    from tests.conftest import make_folder

    data = make_folder(tmp_path / "d", per_class=(1, 0, 0), prefixes=("img",) * 3)
    root = tmp_path / "r"
    with pytest.raises(FerError, match="no validation faces"):
        train(["--data", str(data), "--default-root-dir", str(root), *TINY])
    assert not root.exists()
    # without validation (--limit-val-batches 0) it trains, as it did
    args = ["--data", str(data), "--default-root-dir", str(root), "--max-epochs", "1"]
    assert train([*args, "--limit-val-batches", "0", "--patience", "0", "--no-test", *TINY]) == 0


def test_a_class_without_validation_faces_logs_no_recall(tmp_path):
    """Was: an emotion with no face in the validation split was logged as recall 0.0 (read: the
    model misses every such face), where macro-F1 left it out; fer.evaluate says n/a."""
    from tests.conftest import make_folder

    data = make_folder(tmp_path / "d", per_class=(4, 2, 0))
    for f in (data / "test" / "disgust").iterdir():
        f.unlink()
    root = tmp_path / "r"
    args = ["--data", str(data), "--default-root-dir", str(root), "--max-epochs", "1", "--no-test"]
    assert train([*args, *TINY]) == 0
    rows = [r for r in metrics(root) if r.get("val/acc")]
    assert rows and all(r.get("val/recall_disgust", "") == "" for r in rows)
    assert all(r["val/recall_happy"] != "" for r in rows)


def test_the_commands_a_run_prints_name_a_folder_with_spaces_as_one_argument():
    """Was: 'python -m fer.evaluate --ckpt my runs/lightning_logs/version_0', which a shell
    splits in two."""
    import shlex

    from fer.train import _summary_text

    run, data = "my runs/lightning_logs/version_0", "my data/fer2013.csv"
    summary = {"model": "cnn", "fit_seconds": 3, "epochs": 1, "best_checkpoint": None}
    text = _summary_text({**summary, "log_dir": run, "data": data})
    assert "finished cnn in 3 s (1 epoch)" in text  # (was '1 epochs')
    (evaluate,) = [line for line in text.splitlines() if "fer.evaluate" in line]
    # and the data it trained on (was left out: fer.evaluate then scored data/fer2013, or
    # downloaded it)
    assert shlex.split(evaluate)[-6:] == ["--ckpt", run, "--data", data, "--split", "val"]
    assert "tensorboard --logdir 'my runs/lightning_logs')" in text
    # a --fast-dev-run keeps no run: said, where it printed 'checkpoint None', 'run folder None'
    text = _summary_text({**summary, "log_dir": None, "data": data})
    assert "None" not in text and "fer.evaluate" not in text and "keeps no run" in text


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--accelerator", "bogus"], "invalid accelerator name"),
        (["--strategy", "bogus"], "invalid strategy name"),
        (["--devices", "0,1"], "should be an int > 0"),
        (["--accelerator", "mps"], "can not run on your system"),
        # were ModuleNotFoundError tracebacks: the packages they need are not installed
        (["--precision", "transformer-engine"], "transformer_engine"),
        (["--accelerator", "tpu"], "torch_xla"),
    ],
)
def test_hardware_the_machine_lacks_is_a_one_line_error(csv_data, tmp_path, flags, message):
    """Were Lightning's tracebacks (MisconfigurationException, ValueError, TypeError), and the
    run folder was left behind."""
    root = tmp_path / "r"
    args = ["--data", str(csv_data), "--default-root-dir", str(root), *TINY, *flags]
    with pytest.raises(FerError, match=f"Lightning cannot run here as asked.*{message}"):
        train(args)
    assert not (root / "lightning_logs").exists()


def test_init_starts_from_a_trained_model_or_an_ensemble_member(csv_data, tmp_path, monkeypatch):
    """--init loads the weights of a .ckpt, an export or one member of an exported ensemble (a
    learning rate of 1e-9 leaves them where they were), and refuses a network of another shape."""
    from fer.export import main as export
    from fer.inference import read_weights

    base = ["--data", str(csv_data), "--max-epochs", "1", "--no-test", "--augment", "none"]
    ckpts = []
    for seed, widths in ((1, ["8", "16"]), (2, ["4", "8"])):
        root = tmp_path / f"m{seed}"
        args = [*base, *TINY, "--widths", *widths, "--seed", str(seed)]
        assert train([*args, "--default-root-dir", str(root)]) == 0
        ckpts.append(run_dir(root) / "checkpoints" / "last.ckpt")
    ens = tmp_path / "ens"
    assert export(["--ckpt", *map(str, ckpts), "--out", str(ens)]) == 0
    _, ens_state, _ = read_weights(ens)

    def fine_tuned(name: str, widths: list[str], *init: str) -> torch.nn.Module:
        root = tmp_path / name
        args = [*base, *TINY, "--widths", *widths, "--lr", "1e-9", "--default-root-dir", str(root)]
        assert train([*args, *init]) == 0
        return FerModule.load_from_checkpoint(run_dir(root) / "checkpoints" / "last.ckpt").model

    def same_convs(model, state: dict, prefix: str = "") -> bool:
        convs = [k for k in model.state_dict() if k.endswith("0.weight")]
        got = model.state_dict()
        return bool(convs) and all(
            torch.allclose(got[k], state[prefix + k].float(), atol=1e-6) for k in convs
        )

    _, first, _ = read_weights(ckpts[0])
    assert same_convs(fine_tuned("a", ["8", "16"], "--init", str(ckpts[0])), first)
    member = fine_tuned("b", ["4", "8"], "--init", str(ens), "--init-member", "1")
    assert same_convs(member, ens_state, "members.1.")
    assert not same_convs(fine_tuned("c", ["4", "8"]), ens_state, "members.1.")  # no --init
    refusals = [
        (["--widths", "8", "16", "--init", str(ens)], "ensemble of 2 .*--init-member 0 to 1"),
        (["--widths", "8", "16", "--init", str(ens), "--init-member", "1"], "not the cnn"),
        (["--widths", "8", "16", "--init", str(ckpts[0]), "--init-member", "0"], "single cnn"),
        (["--widths", "8", "16", "--init-member", "0"], "give --init too"),
        (["--widths", "8", "16", "--init", str(tmp_path / "gone")], "gone does not exist"),
    ]

    def no_data(args):
        raise AssertionError("the data was read (and cached) before --init was refused")

    monkeypatch.setattr("fer.train.build_data", no_data)
    for extra, message in refusals:
        root = tmp_path / "refused"
        with pytest.raises(FerError, match=message):
            train([*base, *TINY, "--default-root-dir", str(root), *extra])
        assert not (root / "lightning_logs").exists()


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_mixup_trains_on_blends_of_two_faces_and_blends_their_targets(alpha):
    """Face i is a single bright pixel at i, so the network's input shows each blend's share and
    partner; the loss must be the same blend of the two faces' losses (none with mixup off)."""
    n = 6
    module = FerModule(
        model_options={"widths": [8], "depth": 1, "dropout": 0.0}, channels_last=False, mixup=alpha
    )
    module.log = lambda *a, **k: None  # no trainer here
    seen = []
    module.model.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].clone()))
    x = torch.zeros(n, 1, 48, 48)
    x.view(n, -1)[torch.arange(n), torch.arange(n)] = 1.0
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    torch.manual_seed(3)
    loss = module.training_step((x, y), 0)
    shown = seen[0].view(n, -1)[:, :n]
    if alpha == 0:
        assert torch.equal(seen[0], x)
        share, partner = torch.ones(n), torch.arange(n)
    else:
        off = shown.clone().fill_diagonal_(0)
        partner = torch.where(off.sum(1) > 0, off.argmax(1), torch.arange(n))
        moved = partner != torch.arange(n)  # a face blended with itself shows no share
        share = shown.diagonal()[moved]
        assert sorted(partner.tolist()) == list(range(n))  # a permutation of the batch
        assert moved.any() and torch.allclose(share, share[0].expand_as(share))  # one share
        assert 0 < share[0] < 1
    with torch.no_grad():
        logits = module.model(seen[0])
    ce = torch.nn.functional.cross_entropy
    expected = share[0] * ce(logits, y) + (1 - share[0]) * ce(logits, y[partner])
    assert torch.allclose(loss, expected, atol=1e-5)


def test_mixup_is_a_training_option_recorded_in_the_checkpoint(csv_data, tmp_path):
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    assert train([*args, "--max-epochs", "1", "--mixup", "0.2"]) == 0
    module = FerModule.load_from_checkpoint(
        run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    assert module.hparams.mixup == 0.2


def test_ddp_processes_started_together_score_the_teacher_once(tmp_path):
    """Was: every DDP process scored the training faces with the teacher itself (with torchrun,
    SLURM or several nodes all processes start at once). Now local rank 0 scores them in
    prepare_data and the other process reads its cache."""
    from tests.conftest import make_folder

    data = make_folder(tmp_path / "d", per_class=(4, 3, 0))
    common = ["--data", str(data), "--max-epochs", "1", "--cache-dir", str(tmp_path / "cache")]
    assert train([*common, "--default-root-dir", str(tmp_path / "t"), "--no-test", *TINY]) == 0
    teacher = run_dir(tmp_path / "t") / "checkpoints" / "last.ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--master-port", "29531", "-m", "fer.train", *common, "--teacher", str(teacher)]
    cmd += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-test", *TINY]
    cmd += ["--default-root-dir", str(tmp_path / "s")]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parents[1]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (out.stdout + out.stderr).count("scores the 28 training faces") == 1
    assert len(list((tmp_path / "cache").glob("teacher-*.pt"))) == 1
    assert (run_dir(tmp_path / "s") / "checkpoints" / "last.ckpt").is_file()


def test_a_ddp_run_leaves_its_process_group_when_it_ends(csv_data, tmp_path):
    """Was: the gloo process group outlived fer.train, and a DDP process could abort at exit
    ("terminate called without an active exception", exit -6) after its run had finished: about
    one torchrun launch in four of the test above. Now each process leaves the group on its
    way out, finished or stopped."""
    import torch.distributed as dist

    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    args += ["--max-epochs", "1", "--accelerator", "cpu", "--devices", "1", "--strategy", "ddp"]
    environ = dict(os.environ)  # Lightning's launcher sets MASTER_PORT, LOCAL_RANK, WORLD_SIZE...
    try:
        assert train(args) == 0
        assert not dist.is_initialized()
    finally:  # not to leave the group, or a launched process's variables, to the tests after
        if dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)


@pytest.mark.parametrize(
    "env,rank",
    [
        ({}, 0),
        ({"LOCAL_RANK": "1"}, 1),
        ({"SLURM_LOCALID": "3"}, 3),
        ({"LOCAL_RANK": "0", "SLURM_LOCALID": "2"}, 0),
    ],
)
def test_local_rank_comes_from_the_launcher(monkeypatch, env, rank):
    from fer.train import local_rank

    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert local_rank() == rank


def test_the_summary_ends_with_a_command_that_evaluates_the_best_checkpoint(
    folder_data, tmp_path, capsys
):
    from fer.evaluate import main as evaluate

    args = ["--data", str(folder_data), "--default-root-dir", str(tmp_path), "--max-epochs", "1"]
    args += ["--widths", "8", "--depth", "1", "--batch-size", "16", "--no-test"]
    assert train([*args, "--json", str(tmp_path / "s.json")]) == 0
    line = capsys.readouterr().out.splitlines()[-1].split()
    assert line[:4] == ["evaluate", "python", "-m", "fer.evaluate"]
    assert evaluate([*line[4:], "--data", str(folder_data), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    best = json.loads((tmp_path / "s.json").read_text())["best_checkpoint"]
    assert scored["model"] == best and scored["split"] == "val"


def test_a_share_of_less_than_one_batch_is_one_batch(csv_data, tmp_path):
    """Was: Lightning's MisconfigurationException traceback when --limit-val-batches 0.1 (or
    --limit-train-batches) came to less than one batch (FER-2013's 8 validation batches of 512)."""
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), *TINY, "--no-test"]
    args += ["--max-epochs", "1", "--limit-train-batches", "0.1", "--limit-val-batches", "0.1"]
    assert train(args) == 0
    row = metrics(tmp_path)[-1]
    assert row["step"] == "1" and row["val/acc"]  # one training batch, and validation ran


def test_json_dash_writes_the_summary_to_stdout(csv_data, tmp_path, capsys, monkeypatch):
    """Was: --json - wrote a file named '-'."""
    monkeypatch.chdir(tmp_path)
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), *TINY, "--no-test"]
    assert train([*args, "--max-epochs", "1", "--json", "-"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["best_checkpoint"] and not (tmp_path / "-").exists()


def test_a_json_path_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch):
    """--json under a file trained the whole run, then failed to write the summary (exit 2)."""
    import fer.train

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the --json path was checked")

    monkeypatch.setattr(fer.train, "run", no_training)
    (tmp_path / "afile").write_text("a file")
    with pytest.raises(FerError, match="cannot write --json"):
        fer.train.main(["--json", str(tmp_path / "afile" / "x.json")])


def test_a_diverged_run_ends_with_an_error_not_a_success(csv_data, tmp_path):
    """A learning rate that sends the loss to nan trained on and exited 0, with a 'best'
    checkpoint fer.export took."""
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test", *TINY]
    with pytest.raises(FerError, match="training diverged in epoch 0: its mean loss is nan"):
        train([*args, "--max-epochs", "2", "--lr", "1e30", "--scheduler", "cosine"])
    assert not list(tmp_path.rglob("summary.json"))


def test_a_tilde_in_a_path_option_is_the_home_folder_wherever_it_comes_from(tmp_path, monkeypatch):
    """Was: '~/runs' from a --config file (or quoted) stayed literal, so Lightning's logger wrote
    to $HOME/runs while the checkpoints went to ./~/runs, and --ckpt-path last then resumed from
    there without the run's config.yaml, with every option at its default."""
    from fer.train import parse_args

    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "c.yaml"
    config.write_text("default_root_dir: ~/runs\nexclude: ~/leaked.txt\n")
    for args in (["--config", str(config)], ["--default-root-dir", "~/runs"]):
        assert parse_args(args).default_root_dir == str(tmp_path / "runs")
    assert parse_args(["--config", str(config)]).exclude == str(tmp_path / "leaked.txt")


def test_a_resumed_run_refuses_another_network_shape_or_warmup(tmp_path):
    """Were: --widths, --depth or --residual given otherwise crashed with a size-mismatch
    traceback; --crop or --warmup-epochs (which a one-cycle schedule's restored state ignores)
    went into config.yaml alone."""
    from fer.train import parse_args

    run = run_dir(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    recorded = {"model": "cnn", "widths": [8, 16], "depth": 1, "crop": 0, "residual": False}
    recorded["warmup_epochs"] = 1.0
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    base = ["--ckpt-path", "last", "--default-root-dir", str(tmp_path)]
    for extra, message in (
        (["--widths", "4", "4"], "--widths [4, 4]: the run resumed was made with --widths [8, 16]"),
        (["--depth", "2"], "--depth 2: the run resumed was made with --depth 1"),
        (["--residual"], "--residual: the run resumed was made without --residual"),
        (["--crop", "40"], "--crop 40: the run resumed was made with --crop 0"),
        (["--warmup-epochs", "0.5"], "--warmup-epochs 0.5: the run resumed was made with"),
    ):
        with pytest.raises(FerError, match=re.escape(message)):
            parse_args([*base, *extra])
    assert parse_args([*base, "--widths", "8", "16"]).widths == [8, 16]  # the same is fine


@pytest.mark.parametrize(
    "text, message",
    [
        ("on: true\n", "keys must be option names"),  # YAML reads `on` as True
        (b"\xff\xfe\x00bad", "is not a text file"),
    ],
)
def test_a_config_file_yaml_cannot_take_is_one_line(tmp_path, text, message):
    from fer.train import parse_args

    config = tmp_path / "c.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FerError, match=message):
        parse_args(["--config", str(config)])


def test_a_resumed_runs_damaged_config_yaml_is_one_line(tmp_path):
    from fer.train import parse_args

    run = run_dir(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "config.yaml").write_text("model: [cnn\n")
    with pytest.raises(FerError, match="config.yaml is not valid YAML"):
        parse_args(["--ckpt-path", "last", "--default-root-dir", str(tmp_path)])


def test_a_checkpoint_resumed_from_another_folder_goes_on_in_its_own_run(
    csv_data, tmp_path, monkeypatch
):
    """Was: --ckpt-path PATH without --default-root-dir went on in a new
    ./lightning_logs/version_N of the current folder, leaving the run's own folder unfinished."""
    base = ["--data", str(csv_data), "--no-test", "--scheduler", "cosine", *TINY]
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert train([*base, "--max-epochs", "2", "--default-root-dir", str(project)]) == 0
    monkeypatch.chdir(elsewhere)
    last = run_dir(project) / "checkpoints" / "last.ckpt"
    assert train([*base, "--max-epochs", "3", "--ckpt-path", str(last)]) == 0
    assert [int(r["epoch"]) for r in metrics(project)] == [0, 1, 2]
    assert not (elsewhere / "lightning_logs").exists()
    config = yaml.safe_load((run_dir(project) / "config.yaml").read_text())
    assert config["default_root_dir"] == str(project)  # as the run recorded it
    # a run made in its folder without a root records "." (not the folder's absolute path, which
    # a replay of its config.yaml from elsewhere would write into), resumed there or from here
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert train([*base, "--max-epochs", "1"]) == 0
    assert train([*base, "--max-epochs", "2", "--ckpt-path", "last"]) == 0
    assert yaml.safe_load((run_dir(here) / "config.yaml").read_text())["default_root_dir"] == "."
    monkeypatch.chdir(elsewhere)
    own = run_dir(here) / "checkpoints" / "last.ckpt"
    assert train([*base, "--max-epochs", "3", "--ckpt-path", str(own)]) == 0
    assert [int(r["epoch"]) for r in metrics(here)] == [0, 1, 2]
    assert yaml.safe_load((run_dir(here) / "config.yaml").read_text())["default_root_dir"] == "."
    monkeypatch.chdir(tmp_path)
    # a root folder given explicitly still takes the run elsewhere (a new version folder there)
    other = tmp_path / "other"
    assert (
        train(
            [*base, "--max-epochs", "4", "--ckpt-path", str(last), "--default-root-dir", str(other)]
        )
        == 0
    )
    assert [int(r["epoch"]) for r in metrics(other)] == [3]


def test_a_resumed_runs_config_yaml_keeps_the_weights_it_started_from(csv_data, tmp_path):
    """Was: the resumed run's config.yaml recorded init: null, so replaying it with --config
    trained from scratch, not from the weights the run had started from."""
    base = ["--data", str(csv_data), "--no-test", "--scheduler", "cosine", *TINY]
    first = tmp_path / "first"
    assert train([*base, "--max-epochs", "1", "--default-root-dir", str(first)]) == 0
    init = str(run_dir(first) / "checkpoints" / "last.ckpt")
    tuned = tmp_path / "tuned"
    args = [*base, "--default-root-dir", str(tuned)]
    assert train([*args, "--max-epochs", "1", "--init", init]) == 0
    assert train([*args, "--max-epochs", "2", "--ckpt-path", "last"]) == 0
    config = yaml.safe_load((run_dir(tuned) / "config.yaml").read_text())
    assert (config["init"], config["max_epochs"]) == (init, 2)
