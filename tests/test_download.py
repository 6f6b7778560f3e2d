"""Getting FER-2013 with kagglehub, with the downloader replaced by a function that returns a folder."""

import os
from pathlib import Path

import pytest

import fer.download
from fer.common import FerError, run_cli
from fer.data import main as data_main
from fer.train import main as train
from tests.conftest import make_folder

TINY = {"train": 7 * 4, "test": 7 * (2 + 2)}


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """A fake kagglehub: dataset_download returns a tiny complete Kaggle folder, and counts calls."""
    import kagglehub

    folder = make_folder(tmp_path / "kagglehub" / "msambare" / "fer2013", per_class=(4, 2, 2))
    calls = []

    def dataset_download(handle, *args, **kwargs):
        calls.append(handle)
        return str(folder)

    monkeypatch.setattr(kagglehub, "dataset_download", dataset_download)
    monkeypatch.setattr(fer.download, "EXPECTED_FACES", TINY)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {"folder": folder, "calls": calls, "work": work}


def test_training_without_data_downloads_links_and_reuses_it(kaggle):
    args = ["--max-epochs", "1", "--widths", "8", "--depth", "1", "--precision", "32-true"]
    assert train([*args, "--no-test"]) == 0
    link = kaggle["work"] / "data" / "fer2013"
    assert link.is_symlink() and link.resolve() == kaggle["folder"].resolve()  # no second copy
    assert kaggle["calls"] == ["msambare/fer2013"]
    config = (kaggle["work"] / "lightning_logs" / "version_0" / "config.yaml").read_text()
    assert "data: data/fer2013" in config
    assert train([*args, "--no-test"]) == 0
    assert len(kaggle["calls"]) == 1  # the second run found it


def test_a_given_data_path_is_never_downloaded(kaggle):
    with pytest.raises(FerError, match="does not exist"):
        train(["--data", "data/fer2013", "--max-epochs", "1"])
    assert kaggle["calls"] == [] and not (kaggle["work"] / "data").exists()


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("train", ["--ckpt-path", "nope.ckpt"], "checkpoint nope.ckpt does not exist"),
        ("train", ["--exclude", "nope.txt"], "exclusion list nope.txt does not exist"),
        ("train", ["--model", "vgg", "--weights", "nope.pth"], "weights file nope.pth does not"),
        ("evaluate", ["--skip", "nope.txt"], "exclusion list nope.txt does not exist"),
    ],
)
def test_a_mistyped_file_is_refused_before_fer2013_is_downloaded(kaggle, command, args, message):
    """Were refused only after FER-2013 had been downloaded (and decoded) into data/fer2013."""
    from fer.evaluate import main as evaluate

    main = {"train": train, "evaluate": evaluate}[command]
    with pytest.raises(FerError, match=message):
        main([*args, "--max-epochs", "1"] if command == "train" else args)
    assert kaggle["calls"] == [] and not (kaggle["work"] / "data").exists()


def test_download_command_links_the_folder_it_was_asked_for(kaggle, capsys):
    assert data_main(["download", "--to", "mine/fer"]) == 0
    assert Path("mine/fer").resolve() == kaggle["folder"].resolve()
    assert "ready at mine/fer" in capsys.readouterr().out


def test_a_partial_download_is_refused_and_links_nothing(kaggle):
    next((kaggle["folder"] / "train" / "sad").iterdir()).unlink()
    with pytest.raises(FerError, match=r"incomplete \(27 train, 28 test faces, expected 28 train"):
        fer.download.download()
    (kaggle["folder"] / "test" / "fear").rename(kaggle["folder"] / "test" / "scared")
    with pytest.raises(FerError, match="test/ lacks fear"):
        fer.download.download()
    assert not os.path.lexists("data/fer2013")


def test_offline_is_one_line_naming_the_dataset_and_the_ways_around(kaggle, monkeypatch, capsys):
    import kagglehub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'\nmore detail")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(SystemExit) as e:
        run_cli(data_main, ["download"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "msambare/fer2013" in err and "kaggle datasets download" in err and "--data PATH" in err
    assert "Failed to resolve" in err and not os.path.lexists("data/fer2013")


def test_offline_names_the_cause_and_the_folder_asked_for_and_leaves_no_folder(
    kaggle, monkeypatch, capsys
):
    """The cause is said whole (it was cut at 100 characters, mid-URL, before the reason), the
    command to get the data by hand names the --to folder (it named data/fer2013), and no empty
    folder is left behind."""
    import kagglehub

    message = (
        "HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded with url: "
        '/v1/datasets.DatasetApiService/GetDataset (Caused by NameResolutionError("HTTPSConnection'
        "(host='api.kaggle.com', port=443): Failed to resolve 'api.kaggle.com' ([Errno -2] Name or "
        'service not known)"))'
    )

    def offline(*args, **kwargs):
        raise ConnectionError(message)

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(SystemExit) as e:
        run_cli(data_main, ["download", "--to", "mine/fer"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "Failed to resolve 'api.kaggle.com' ([Errno -2] Name or service not known)" in err
    assert "-p mine/fer" in err and "data/fer2013" not in err
    assert not os.path.lexists("mine")
    # a folder with a space is quoted, so that the command pasted into a shell names it (was: -p
    # my data/fer, two arguments)
    with pytest.raises(SystemExit):
        run_cli(data_main, ["download", "--to", "my data/fer"])
    err = capsys.readouterr().err
    assert "-p 'my data/fer' --unzip` and pass --data 'my data/fer'," in err


@pytest.mark.parametrize("blocker", ["folder", "file in the way"])
def test_a_destination_that_cannot_be_linked_is_refused_before_downloading(
    kaggle, tmp_path, blocker
):
    """Was: `fer.data download --to DIR` downloaded first, then refused DIR (or, with a file where
    its parent folder should be, failed with a traceback)."""
    if blocker == "folder":
        Path("mine/fer").mkdir(parents=True)
        to, needle = "mine/fer", "mine/fer exists"
    else:
        Path("mine").write_text("a file where a folder should be")
        to, needle = "mine/fer", "cannot create"
    with pytest.raises(FerError, match=needle):
        data_main(["download", "--to", to])
    assert kaggle["calls"] == []


def test_a_link_that_cannot_be_made_leaves_the_old_one(kaggle, tmp_path, monkeypatch):
    """Was: the old link was removed before the new one was made, so a failure (or an
    interrupt) in between left no data at data/fer2013 at all."""
    old = make_folder(tmp_path / "mine", per_class=(1, 1, 0))
    Path("data").mkdir()
    os.symlink(old, "data/fer2013", target_is_directory=True)

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", refuse)
    with pytest.raises(FerError, match="could not link data/fer2013"):
        fer.download.download()
    assert Path("data/fer2013").resolve() == old.resolve()
    assert os.listdir("data") == ["fer2013"]  # nothing half-made beside it


def test_an_empty_default_folder_says_how_to_download_into_it(kaggle, capsys):
    """Was: with an empty data/fer2013 (a download by hand that never finished), training
    without --data said to leave out --data to download, which is what the user had done."""
    Path("data/fer2013").mkdir(parents=True)
    with pytest.raises(SystemExit, match="2"):
        run_cli(train, ["--max-epochs", "1"])
    err = capsys.readouterr().err
    assert "data/fer2013 holds no FER-2013 data" in err and "remove" in err
    assert "leave out --data" not in err and kaggle["calls"] == []


def test_a_link_left_half_made_by_a_killed_run_is_replaced(kaggle, tmp_path):
    Path("data").mkdir()
    os.symlink(tmp_path / "gone", "data/.fer2013.new-link")  # killed between link and rename
    fer.download.download()
    assert Path("data/fer2013").resolve() == kaggle["folder"].resolve()
    assert os.listdir("data") == ["fer2013"]
