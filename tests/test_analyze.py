import json
import logging
import math
import re

import cv2
import numpy as np
import pytest

from fer.analyze import cleaning_markdown, cleaning_report
from fer.analyze import main as analyze
from fer.common import EMOTIONS, FerError
from fer.data import read_exclusions
from fer.plot import main as plot
from fer.train import main as train
from tests.conftest import face, make_csv, make_folder


def test_cleaning_report_finds_blank_faces_duplicates_and_leaks():
    images = np.stack([face(i % 7, i) for i in range(10)])
    images[3] = 0  # blank
    images[7] = 5  # blank too, but a val face: reported, not listed (--exclude drops train faces)
    images[5] = images[1]  # a train duplicate with a different label
    images[8] = images[2]  # a val face also in train
    labels = np.array([i % 7 for i in range(10)])
    usage = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1], dtype=np.uint8)
    names = [f"n{i}" for i in range(10)]
    rep = cleaning_report(images, labels, usage, names)
    assert [b["name"] for b in rep["blank"]] == ["n3", "n7"]
    assert (
        rep["duplicate_groups"] == 2
        and rep["cross_split_groups"] == 1
        and rep["conflicting_label_groups"] == 2
    )
    assert rep["exclude"] == ["n2", "n3"]  # blank + the train-side copy of val face n8
    assert rep["leaked"] == ["n8"]  # the val face itself, for fer.evaluate --skip


def test_faces_in_no_split_neither_leak_nor_are_leaked():
    """Was: a test/ face without a prefix beside PrivateTest ones (in no split, as fer.train
    splits them: a user's own face, or a training face moved there to keep it out) was counted
    as a val/test face: listed as leaked, its training copy excluded for nothing, and its group
    said to cross splits. Data with only unmarked test/ faces still test on them."""
    images = np.stack([face(i % 7, i) for i in range(6)])
    images[4] = images[0]  # an unsplit test/ face copying a training face
    images[5] = 0  # a blank one in no split: not in the exclusion list, which names training faces
    labels = np.arange(6) % 7
    usage = np.array([0, 0, 1, 2, 4, 4], dtype=np.uint8)  # Training, PublicTest, PrivateTest, test
    names = [f"n{i}" for i in range(6)]
    rep = cleaning_report(images, labels, usage, names)
    assert rep["exclude"] == [] and rep["leaked"] == [] and rep["cross_split_groups"] == 0
    assert rep["duplicate_groups"] == 1 and [b["name"] for b in rep["blank"]] == ["n5"]
    without_private = cleaning_report(images, labels, np.array([0, 0, 1, 4, 4, 4]), names)
    assert without_private["exclude"] == ["n0"] and without_private["leaked"] == ["n4"]


def test_analyze_on_a_folder_writes_report_figures_and_exclusions(tmp_path, capsys, caplog):
    root = make_folder(tmp_path / "d", per_class=(4, 2, 1))
    cv2.imwrite(
        str(root / "train" / "happy" / "Training_blank.png"), np.full((48, 48), 7, np.uint8)
    )
    cv2.imwrite(
        str(root / "train" / "sad" / "Training_big.jpg"), np.full((96, 96, 3), 200, np.uint8)
    )
    leak = cv2.imread(
        str(next((root / "test" / "fear").glob("PublicTest_*"))), cv2.IMREAD_GRAYSCALE
    )
    cv2.imwrite(str(root / "train" / "fear" / "Training_leak.png"), leak)
    deep = (face(0, 99).astype(np.uint16) * 257).astype(np.uint16)  # a 16-bit 48x48 face
    cv2.imwrite(str(root / "train" / "angry" / "Training_deep.png"), deep)
    out = tmp_path / "report"
    assert (
        analyze(["--data", str(root), "--out", str(out), "--per-class", "2", "--random", "8"]) == 0
    )
    wrote = capsys.readouterr().err  # every file by its path (were: the last two by name alone)
    assert f"{out}/cleaning.json, {out}/cleaning.md" in wrote
    rep = json.loads((out / "cleaning.json").read_text())
    assert {b["name"].split("/")[-1] for b in rep["blank"]} == {
        "Training_blank.png",
        "Training_big.jpg",
    }
    assert rep["cross_split_groups"] == 1
    excluded = (out / "exclude.txt").read_text().splitlines()
    assert any(n.endswith("Training_leak.png") for n in excluded)
    leaked = [n for n in (out / "leaked.txt").read_text().splitlines() if not n.startswith("#")]
    assert len(leaked) == 1 and "/PublicTest_" in leaked[0]
    # evaluation without the leaked face scores one face fewer of the same split
    from fer.evaluate import evaluate
    from fer.inference import load_classifier

    classifier = load_classifier()
    full_m, *_ = evaluate(classifier, str(root), "val")
    m, faces, y, probs, note = evaluate(classifier, str(root), "val", skip=str(out / "leaked.txt"))
    assert m["samples"] == full_m["samples"] - 1 and "without 1 face listed" in note
    info = json.loads((out / "structure.json").read_text())
    # was 96x96x3 alone: the 16-bit face, read as 8-bit, was not named
    assert sorted(info["nonstandard_shapes"].values()) == ["48x48 16-bit", "96x96x3"]
    assert info["counts"]["Training"]["fear"] == 5
    for name in (
        "class_counts.png",
        "pixel_stats.png",
        "samples_per_emotion.png",
        "random_samples.png",
        "blank_faces.png",
        "duplicates.png",
    ):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    assert "Blank faces" in (out / "cleaning.md").read_text()
    # training drops what the exclusion list names, and nothing else
    from fer.data import FerDataModule

    full, cleaned = (
        FerDataModule(str(root)),
        FerDataModule(str(root), exclude=str(out / "exclude.txt")),
    )
    full.setup("fit")
    cleaned.setup("fit")
    kept = set(cleaned.splits["train"].names)
    assert kept == set(full.splits["train"].names) - set(excluded) and not kept & set(excluded)
    # Were: a list of other data's names (the same faces in a file of another name) was taken
    # as excluding nothing, leaked.txt (validation faces) too, without a word; and a list saved
    # with a BOM (Windows' Notepad) lost its first name
    other = tmp_path / "other.txt"
    other.write_text("fer2013.csv:1\nfer2013.csv:2\n")
    with pytest.raises(FerError, match="none of the 2 names in .* is a face of"):
        FerDataModule(str(root), exclude=str(other)).setup("fit")
    with caplog.at_level(logging.WARNING, logger="fer.data"):
        FerDataModule(str(root), exclude=str(out / "leaked.txt")).setup("fit")
    assert "names no training face" in caplog.text
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(excluded).encode() + b"\r\n")
    assert read_exclusions(bom) == read_exclusions(out / "exclude.txt")


def test_analyze_refuses_a_report_inside_the_faces_it_reads(tmp_path, monkeypatch):
    """Was: --out data/train/angry/report was written, and its figures were read as angry training
    faces by every later run (--out data/train/report: the next run refused the data)."""
    root = make_folder(tmp_path / "d")
    monkeypatch.setenv("HOME", str(tmp_path))
    for out in (root / "train" / "angry" / "report", root / "Test" / "r"):
        if out.parent.name == "Test":
            (root / "test").rename(root / "Test")  # the split's folder is matched in any case
        for data in (str(root), "~/d"):  # ~ as a config file gives it
            with pytest.raises(FerError, match="is inside .* whose pictures are read as faces"):
                analyze(["--data", data, "--out", str(out)])
            assert not out.exists()
    assert analyze(["--data", str(root), "--out", str(root / "analysis")]) == 0  # beside them


def test_analyze_on_a_csv(tmp_path):
    path = make_csv(tmp_path / "fer2013.csv", per_class=(3, 1, 1))
    out = tmp_path / "r"
    assert analyze(["--data", str(path), "--out", str(out), "--json"]) == 0
    assert json.loads((out / "structure.json").read_text())["counts"]["PrivateTest"]["happy"] == 1


def test_a_csv_exclusion_list_is_refused_once_the_files_rows_moved(tmp_path):
    """A CSV's faces are named by their row: was, a list made before the rows were reordered
    named other faces, and training excluded those while the leaked copies stayed in. Each CSV
    face's line now records its pixels' digest, which must still match."""
    from fer.data import FerDataModule, load_fer

    path = make_csv(tmp_path / "d" / "fer2013.csv", per_class=(3, 1, 1))
    lines = path.read_text().splitlines()
    leak = lines[4].replace(",PublicTest", ",Training")  # PublicTest face of row 3, trained on
    path.write_text("\n".join([*lines, leak]) + "\n")
    out = tmp_path / "r"
    assert analyze(["--data", str(path), "--out", str(out)]) == 0
    listed = [n for n in (out / "exclude.txt").read_text().splitlines() if not n.startswith("#")]
    assert len(listed) == 1 and re.fullmatch(r"fer2013\.csv:35\t[0-9a-f]{16}", listed[0])
    module = FerDataModule(str(path), exclude=str(out / "exclude.txt"))
    module.setup("fit")
    assert "fer2013.csv:35" not in module.splits["train"].names
    assert read_exclusions(out / "leaked.txt", load_fer(path)) == {"fer2013.csv:3"}
    swapped = [*lines, lines[4]]
    swapped[4] = leak  # the leaked face and its training copy trade rows: same pixels, two splits
    moved = [lines[0], leak, *lines[1:]]  # the same rows, moved
    for rows in (moved, swapped):
        path.write_text("\n".join(rows) + "\n")
        for listing in ("exclude.txt", "leaked.txt"):
            with pytest.raises(FerError, match="not the faces it was made from"):
                read_exclusions(out / listing, load_fer(path))
        with pytest.raises(FerError, match="not the faces it was made from"):
            FerDataModule(str(path), exclude=str(out / "exclude.txt")).setup("fit")
    assert read_exclusions(out / "exclude.txt") == {"fer2013.csv:35"}  # names, without data
    # an editor's trailing tab or capitals are the same digest; something else is refused
    name, digest = listed[0].split("\t")
    edited = tmp_path / "edited.txt"
    edited.write_text(f"{name}\t{digest.upper()}\t\n")
    assert read_exclusions(edited) == {"fer2013.csv:35"}
    edited.write_text(f"{name}\tleaked\n")
    with pytest.raises(FerError, match="line 1: 'leaked' after the name is not a face's digest"):
        read_exclusions(edited)
    # an editor that turns tabs into spaces: the line named no face, and the face was trained on
    path.write_text("\n".join([*lines, leak]) + "\n")  # the rows the list was made from
    edited.write_text(f"{name}    {digest}\n{name} \t {digest}\n")
    assert read_exclusions(edited, load_fer(path)) == {"fer2013.csv:35"}
    edited.write_text(f"{name}  0123456789abcdef\n")  # ... and its digest is still checked
    with pytest.raises(FerError, match="not the faces it was made from"):
        read_exclusions(edited, load_fer(path))
    edited.write_text(f"{name}    {digest}    # a note\n")  # after it, anything: as after a tab
    assert read_exclusions(edited, load_fer(path)) == {"fer2013.csv:35"}
    for wrong in ("0123456789abcde", "leaked"):  # was: one name of no face, with no word
        edited.write_text(f"{name}    {wrong}\n")
        with pytest.raises(FerError, match=f"line 1: '{wrong}' after the name is not a face's"):
            read_exclusions(edited)


def test_a_csv_of_any_suffix_case_gets_digests_and_a_list_without_them_is_warned_of(
    tmp_path, caplog
):
    """(Found by the review of the change: FER2013.CSV's lists held no digest.)"""
    from fer.data import load_fer

    path = make_csv(tmp_path / "d" / "FER2013.CSV", per_class=(3, 1, 1))
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[4].replace(",PublicTest", ",Training")]) + "\n")
    out = tmp_path / "r"
    assert analyze(["--data", str(path), "--out", str(out)]) == 0
    line = (out / "exclude.txt").read_text().splitlines()[1]
    assert re.fullmatch(r"FER2013\.CSV:35\t[0-9a-f]{16}", line)
    bare = tmp_path / "bare.txt"
    bare.write_text("FER2013.CSV:35\n")
    with caplog.at_level(logging.WARNING, logger="fer.data"):
        assert read_exclusions(bare, load_fer(path)) == {"FER2013.CSV:35"}
    assert "names 1 CSV faces by their row alone" in caplog.text


def test_plot_draws_curves_from_tensorboard_events(csv_data, tmp_path):
    assert (
        train(
            [
                "--data",
                str(csv_data),
                "--max-epochs",
                "2",
                "--default-root-dir",
                str(tmp_path),
                "--widths",
                "8",
                "--depth",
                "1",
                "--precision",
                "32-true",
                "--no-test",
            ]
        )
        == 0
    )
    run = tmp_path / "lightning_logs" / "version_0"
    import fer.plot

    drawn = []
    with pytest.MonkeyPatch.context() as mp:  # the figure itself (was: only the file's size)
        mp.setattr(fer.plot, "save_figure", lambda fig, path: drawn.append(fig))
        assert plot(["--logdir", str(run)]) == 0
    lines = [line for ax in drawn[0].axes for line in ax.lines]  # train and val loss, accuracy
    # epochs numbered as the checkpoints' names and the run's summary number them, from 0 (were
    # from 1: the summary's 'best at epoch 1' was the plot's second point, at 2)
    assert len(lines) == 4 and all(line.get_xdata().tolist() == [0, 1] for line in lines)
    summary = json.loads((run / "summary.json").read_text())
    best = f"best val/acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch']}"
    assert best in drawn[0].get_suptitle()
    assert plot(["--logdir", str(run)]) == 0
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    # --out naming a picture is that picture (was: a folder of that name, curves.png inside)
    # (any format matplotlib writes: .webp and .tif made folders after that)
    pictures = (("mine.png", b"\x89PNG"), ("mine.pdf", b"%PDF"), ("mine.webp", b"RIFF"))
    for name, magic in (*pictures, ("mine.TIF", b"II*\x00")):
        assert plot(["--logdir", str(run), "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).is_file() and (tmp_path / name).read_bytes().startswith(magic)


def test_plot_of_a_run_without_validation_names_no_accuracy(csv_data, tmp_path, monkeypatch):
    """A run with --limit-val-batches 0 was titled 'best val/acc 0.0000'."""
    import fer.plot

    argv = ["--data", str(csv_data), "--max-epochs", "1", "--default-root-dir", str(tmp_path)]
    argv += ["--widths", "8", "--depth", "1", "--precision", "32-true", "--no-test"]
    assert train([*argv, "--limit-val-batches", "0", "--patience", "0"]) == 0
    titles = []
    monkeypatch.setattr(
        fer.plot, "save_figure", lambda fig, path: titles.append(fig._suptitle.get_text())
    )
    assert plot(["--logdir", str(tmp_path / "lightning_logs" / "version_0")]) == 0
    assert titles and titles[0].endswith(": no validation")


def test_analyze_replaces_its_outputs_as_one_set_and_checks_out_first(tmp_path, monkeypatch):
    """Was: a run stopped after its figures left them beside the earlier run's exclude.txt (which
    training reads), and an --out that is a file was refused only after the data were read."""
    import fer.analyze
    from fer.common import FerError

    root = make_folder(tmp_path / "d", per_class=(2, 1, 1))
    out = tmp_path / "out"
    args = ["--data", str(root), "--out", str(out), "--per-class", "1", "--random", "4"]
    assert analyze(args) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def stopped(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(fer.analyze, "write_text", stopped)
    with pytest.raises(KeyboardInterrupt):
        analyze([*args[:-1], "8"])  # other random faces: another random_samples.png
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    monkeypatch.undo()
    (tmp_path / "file").write_text("not a folder\n")
    with pytest.raises(FerError, match="--out .* is not a folder"):
        analyze(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "file")])


def test_a_copy_in_publictest_and_privatetest_crosses_splits():
    """Was: val and test counted as one side, so a PublicTest face copied in PrivateTest (model
    selection seeing test faces) was no duplicate across splits. It leaks nothing into training:
    nothing is excluded or listed as leaked for it."""
    images = np.stack([face(i % 7, i) for i in range(6)])
    images[4] = images[3]  # PublicTest face 3 again in PrivateTest
    images[1] = images[0]  # two training copies: within one split
    usage = np.array([0, 0, 0, 1, 2, 2], dtype=np.uint8)
    rep = cleaning_report(images, np.arange(6) % 7, usage, [f"n{i}" for i in range(6)])
    assert rep["duplicate_groups"] == 2 and rep["cross_split_groups"] == 1
    assert rep["exclude"] == [] and rep["leaked"] == []


def test_the_loss_legend_says_when_the_train_loss_is_not_the_val_cross_entropy(tmp_path):
    """Was: the train loss (with label smoothing, which keeps it well above 0, or mixup) and the
    val cross-entropy drawn as one quantity, meeting where the accuracies were 11 points apart."""
    from fer.plot import curve_labels

    (tmp_path / "hparams.yaml").write_text(
        "label_smoothing: 0.1\nmixup: 0.2\nclass_weighted_loss: false\n"
    )
    labels = curve_labels(tmp_path)
    assert labels["train/loss_epoch"] == "train objective (label smoothing 0.1, mixup 0.2)"
    assert labels["val/loss"] == "val cross-entropy"
    (tmp_path / "hparams.yaml").write_text("label_smoothing: 0.0\nmixup: 0.0\n")
    assert curve_labels(tmp_path)["train/loss_epoch"] == "train"


def test_a_face_whose_file_name_is_not_utf8_is_analysed_and_listed(tmp_path):
    """Was: a Latin-1 file name in the folder stopped fer.analyze (and evaluate, train) with a
    UnicodeEncodeError traceback while the dataset cache key was made."""
    import os

    from fer.data import read_exclusions

    root = make_folder(tmp_path / "d", per_class=(2, 1, 1))
    leak = next((root / "test" / "fear").glob("PublicTest_*")).read_bytes()
    name = os.fsdecode(b"Training_caf\xe9.png")  # a copy of a PublicTest face: excluded
    (root / "train" / "fear" / name).write_bytes(leak)
    out = tmp_path / "report"
    assert analyze(["--data", str(root), "--out", str(out), "--random", "4"]) == 0
    excluded = read_exclusions(out / "exclude.txt")
    assert [n for n in excluded if n.endswith(name)] == [f"train/fear/{name}"]


def test_more_faces_per_emotion_than_any_has_draws_as_many_as_the_largest_has(
    tmp_path, monkeypatch
):
    """Was: --per-class 1000 on a few faces a class drew 1,000 columns, nearly all blank (a
    162,274 px wide PNG after 70 s); --random already stopped at the faces there are."""
    import fer.figures

    drawn = []  # (columns, title) of each grid
    grid = fer.figures.face_grid
    monkeypatch.setattr(
        fer.figures,
        "face_grid",
        lambda f, c, cols, title: drawn.append((cols, title)) or grid(f, c, cols=cols, title=title),
    )
    root = make_folder(tmp_path / "d", per_class=(2, 1, 1))  # 4 faces of each emotion at most
    out = tmp_path / "r"
    assert analyze(["--data", str(root), "--out", str(out), "--per-class", "1000"]) == 0
    assert (4, "4 random faces per emotion") in drawn


@pytest.mark.parametrize("option", ["--random", "--per-class"])
def test_a_negative_number_of_faces_to_show_is_refused(tmp_path, option, capsys):
    """Was: --random -3 drew all faces but 3, --per-class -2 four a class under '-2 random...'."""
    with pytest.raises(SystemExit) as e:
        analyze(["--data", str(tmp_path), "--out", str(tmp_path / "r"), option, "-3"])
    assert e.value.code == 2 and f"argument {option}: must be 0 or more" in capsys.readouterr().err


def test_duplicates_shown_across_splits_are_a_pair_that_crosses():
    """Was: the first two copies of a group were drawn under 'Duplicates across splits', two
    Training copies for a group of Training, Training, PublicTest."""
    from fer.analyze import shown_pair

    group = {"names": ["a", "b", "c"], "splits": ["Training", "Training", "PublicTest"],
             "labels": ["angry"] * 3, "cross_split": True, "conflicting_labels": False}  # fmt: skip
    assert shown_pair(group) == ["a", "c"]
    group.update(labels=["angry", "angry", "sad"], cross_split=False, splits=["Training"] * 3)
    assert shown_pair(group) == ["a", "c"]  # the labels that disagree


def test_on_data_without_publictest_duplicates_split_by_fer_trains_draw_are_named():
    """Without PublicTest markers fer.train draws its validation faces from the training ones,
    so one copy of a face may validate while another trains: the groups its default draw splits
    are named, the draw being fer.train's own (was: 'within a split', nothing said). No face is
    excluded for it: a face whose copies all train is kept."""
    import torch

    from fer.choices import DEFAULT_SEED, DEFAULT_VAL_FRACTION
    from fer.data import (
        UNMARKED_TEST,
        UNMARKED_TRAIN,
        FerData,
        split_indices,
    )

    images = np.stack([face(i % 7, i) for i in range(140)])
    for a in range(0, 140, 5):  # 28 pairs of copies
        images[a + 1] = images[a]
    labels = np.array([i % 7 for i in range(140)])
    usage = np.array([UNMARKED_TRAIN] * 130 + [UNMARKED_TEST] * 10, dtype=np.uint8)
    names = [f"n{i}" for i in range(140)]
    rep = cleaning_report(images, labels, usage, names)
    data = FerData(*(torch.from_numpy(a) for a in (images, labels, usage)), names)
    val = set(split_indices(data, DEFAULT_VAL_FRACTION, DEFAULT_SEED)[0]["val"].tolist())
    split = [[f"n{a}", f"n{a + 1}"] for a in range(0, 130, 5) if (a in val) != (a + 1 in val)]
    assert split and rep["straddling"] == split and rep["exclude"] == []
    assert "duplicate groups have a copy on each side" in cleaning_markdown(rep, "x")
    usage[:130] = 0  # Training, with PublicTest faces: fer.train draws nothing
    usage[130:] = 1
    assert cleaning_report(images, labels, usage, names)["straddling"] is None


def test_plot_of_a_run_resumed_from_an_earlier_checkpoint_draws_the_branch_it_kept(
    tmp_path, monkeypatch
):
    """Was: a run resumed from an earlier epoch's checkpoint logs those epochs again, and the plot
    drew both attempts (the lines folding back) and named the best val/acc of the one left."""
    from torch.utils.tensorboard import SummaryWriter

    import fer.plot

    run = tmp_path / "version_0"
    first = SummaryWriter(str(run), filename_suffix=".a")
    for epoch, acc in enumerate([0.3, 0.4, 0.5, 0.6]):  # the branch left: resumed at epoch 2
        for tag, value in (("epoch", epoch), ("val/acc", acc), ("train/acc", acc)):
            first.add_scalar(tag, value, global_step=10 * (epoch + 1))
    first.close()
    resumed = SummaryWriter(str(run), filename_suffix=".b")
    for epoch, acc in [(2, 0.42), (3, 0.45), (4, 0.47)]:
        for tag, value in (("epoch", epoch), ("val/acc", acc), ("train/acc", acc)):
            resumed.add_scalar(tag, value, global_step=10 * (epoch + 1))
    resumed.close()
    for when, suffix in ((1_700_000_000, ".a"), (1_700_000_100, ".b")):  # as two processes name
        (made,) = run.glob(f"*{suffix}")  # them: by the time each started (was a counter here)
        made.rename(run / f"events.out.tfevents.{when}.host.1{suffix}")
    drawn = []
    monkeypatch.setattr(fer.plot, "save_figure", lambda fig, path: drawn.append(fig))
    assert plot(["--logdir", str(run)]) == 0
    val = next(line for line in drawn[0].axes[1].lines if line.get_label() == "val")
    assert val.get_xdata().tolist() == [0, 1, 2, 3, 4]
    assert val.get_ydata().tolist() == pytest.approx([0.3, 0.4, 0.42, 0.45, 0.47])
    assert drawn[0].get_suptitle().endswith("best val/acc 0.4700 at epoch 4")


@pytest.mark.parametrize(
    "case, message",
    [
        ("no epoch", "logged no epoch yet"),  # was a blank figure, written
        ("logdir is a file", "is a file, not a run folder"),
        ("empty out", "--out is empty"),  # was: the run folder, silently
        ("out is a file", "--out .* is not a folder"),  # was "cannot write to ...: File exists"
    ],
)
def test_plot_refuses_what_it_cannot_draw_or_write_in_one_line(tmp_path, capsys, case, message):
    from torch.utils.tensorboard import SummaryWriter

    from fer.common import run_cli

    run = tmp_path / "version_0"
    writer = SummaryWriter(str(run))
    writer.add_scalar("lr-SGD", 0.1, global_step=1)  # a run stopped in its first epoch
    writer.close()
    (tmp_path / "file").write_text("a file\n")
    argv = {
        "no epoch": ["--logdir", str(run)],
        "logdir is a file": ["--logdir", str(tmp_path / "file")],
        "empty out": ["--logdir", str(run), "--out", ""],
        "out is a file": ["--logdir", str(run), "--out", str(tmp_path / "file")],
    }[case]
    with pytest.raises(SystemExit) as e:
        run_cli(plot, argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and re.search(message, err) and err.count("\n") == 1, err
    assert not (run / "curves.png").exists()


def test_near_copies_are_reported_and_near_lists_them_as_copies():
    """Was: only byte-identical faces were copies, so a PublicTest face whose Training copy differs
    at one pixel by one grey level (31 such faces in FER-2013) was no leak, and nothing said so.
    The exact lists stay the default (the reported figures without leaked faces are theirs); the
    report counts the near copies, and `near` (--near) lists them too."""
    images = np.stack([face(i % 7, i) for i in range(8)]).astype(np.uint8)
    images[4] = images[0]
    images[4, 10, 10] = images[0, 10, 10] + 1  # val face 4: training face 0 at one pixel +1
    images[5] = images[4]
    images[5, 20, 20] = images[4, 20, 20] - 2  # val face 5: face 4 again, another pixel -2
    images[6] = images[1]
    images[6, 30, 30] = images[1, 30, 30] + 3  # val face 6: face 1, 3 grey levels off: no copy
    usage = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.uint8)
    labels, names = np.arange(8) % 7, [f"n{i}" for i in range(8)]
    exact = cleaning_report(images, labels, usage, names)
    assert exact["duplicate_groups"] == 0 and exact["leaked"] == [] and exact["exclude"] == []
    assert exact["near_copies"] == {
        "levels": 2,
        "groups": 1,
        "more_exclude": ["n0"],
        "more_leaked": ["n4", "n5"],
    }
    near = cleaning_report(images, labels, usage, names, near=2)
    assert near["duplicate_groups"] == 1 and near["groups"][0]["names"] == ["n0", "n4", "n5"]
    assert near["leaked"] == ["n4", "n5"] and near["exclude"] == ["n0"]
    assert near["near_copies"] is None  # counted above
    assert cleaning_report(images, labels, usage, names, near=3)["leaked"] == ["n4", "n5", "n6"]
    md = cleaning_markdown(exact, "d")
    assert "near copies (at most 2 grey levels apart at every pixel): 1 group" in md
    assert "`--near 2` lists 2 val/test faces more as leaked" in md


def test_the_near_copies_note_counts_the_training_faces_it_would_exclude(tmp_path, capsys):
    """Was: a training face one grey level from a face already leaked (so no val/test face more)
    printed "note: 0 val/test faces more have a near copy in training", and not the training
    face --near would exclude, which cleaning.md counted."""
    rows = [face(i, i).astype(int) for i in range(4)]
    near = rows[0].copy()
    near[10, 10] += 1
    pixels = [rows[0], rows[1], near, rows[0], rows[2], rows[3]]  # 3: PublicTest copy of 0
    usage = ["Training"] * 3 + ["PublicTest", "PublicTest", "PrivateTest"]
    lines = ["emotion,pixels,Usage"] + [
        f"{i % 7},{' '.join(map(str, p.ravel()))},{u}"
        for i, (p, u) in enumerate(zip(pixels, usage))
    ]
    (tmp_path / "fer2013.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "r"
    assert analyze(["--data", str(tmp_path / "fer2013.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lists 0 val/test faces more as leaked and 1 training face more to exclude" in printed
    assert "and 1 training face more to exclude" in (out / "cleaning.md").read_text()


def test_analyze_near_and_blank_std_take_only_sensible_values(tmp_path, capsys):
    """Was: --blank-std nan wrote NaN into cleaning.json (not JSON to strict readers), and a
    negative one silently found no blank face."""
    from fer.common import run_cli

    for flag, value in (("--blank-std", "nan"), ("--blank-std", "-5"), ("--near", "-1")):
        with pytest.raises(SystemExit) as e:
            run_cli(analyze, ["--data", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
        err = capsys.readouterr().err
        assert e.value.code == 2 and flag in err and err.count("\n") == 1, err


def test_the_sample_grid_gives_each_emotion_its_row_and_empty_classes_no_bar(tmp_path, monkeypatch):
    """Was: a class with fewer faces than --per-class shifted every later row (the disgust row
    held a disgust face and two fear faces), and a class with none drew a mean pixel of 0."""
    import shutil

    import matplotlib.pyplot as plt

    root = make_folder(tmp_path / "d", per_class=(3, 1, 0))
    for extra in sorted((root / "train" / "disgust").glob("*.png"))[1:]:
        extra.unlink()  # two disgust faces: one in train/, one in test/
    shutil.rmtree(root / "test" / "fear")
    shutil.rmtree(root / "train" / "fear")  # and no fear face at all
    grids, bars = {}, []

    def grid(faces, captions, cols=8, title="", colors=None):
        grids[title] = (len(faces), list(captions), cols)
        return plt.figure()

    monkeypatch.setattr("fer.figures.face_grid", grid)
    real_bar = plt.Axes.bar

    def bar(self, x, height, *args, **kwargs):
        bars.append(dict(zip(x, height)))
        return real_bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "bar", bar)
    assert analyze(["--data", str(root), "--out", str(tmp_path / "o"), "--per-class", "3"]) == 0
    n, captions, cols = grids["3 random faces per emotion"]
    assert (n, cols) == (21, 3)
    rows = [captions[i : i + 3] for i in range(0, 21, 3)]
    for emotion, row in zip(EMOTIONS, rows):
        assert all(c in (emotion, "") for c in row[1:]), (emotion, row)
    assert rows[1] == ["disgust", "disgust", ""] and rows[2] == ["no fear face", "", ""]
    means = next(b for b in bars if "fear" in b)
    assert math.isnan(means["fear"]) and means["happy"] > 0


def test_splits_come_in_one_order_whatever_the_source(tmp_path):
    """Was: a folder's test/ was read before its train/, so the table, structure.json and the
    figures' colours put PublicTest before Training, the other way round from a CSV."""
    from fer.analyze import structure
    from fer.data import load_fer

    data = load_fer(make_folder(tmp_path / "d", per_class=(2, 1, 0)), tmp_path / "cache")
    assert list(structure(data)["counts"]) == ["Training", "PublicTest"]


def test_a_negative_seed_is_refused_before_the_work(tmp_path, capsys):
    """Was: accepted, and after the whole analysis numpy's 'expected non-negative integer'."""
    with pytest.raises(SystemExit) as stop:
        analyze(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--seed", "-1"])
    assert stop.value.code == 2 and "--seed: must be 0 or more" in capsys.readouterr().err
