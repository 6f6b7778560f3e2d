"""The console scripts setup.cfg installs beside `python -m fer.*`."""

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ("train", "evaluate", "predict", "detect", "serve", "analyze", "export", "plot", "data")


def declared() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def test_every_cli_has_a_console_script():
    assert declared() == {f"fer-{c}": f"fer.cli:{c}" for c in COMMANDS}


@pytest.mark.parametrize("command", ["predict", "data", "serve"])
def test_a_console_script_runs_its_module(command):
    script = Path(sys.executable).parent / f"fer-{command}"
    if not script.is_file():
        pytest.skip(f"{script.name} is not installed (pip install -e . installs it)")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and f"python -m fer.{command}" in out.stdout


def test_a_console_script_gives_one_line_errors(capsys, monkeypatch):
    from fer.cli import predict

    monkeypatch.setattr(sys, "argv", ["fer-predict", "no/such/photo.jpg", "--no-detect"])
    with pytest.raises(SystemExit) as e:
        predict()
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "no/such/photo.jpg" in x]  # one line, no traceback
    assert e.value.code in (1, 2) and line.startswith("error: ") and "Traceback" not in err


def test_using_a_model_loads_neither_the_dataset_reader_nor_lightning():
    """fer.predict and fer.detect start about as fast as importing torch and OpenCV."""
    code = (
        "import sys, fer.predict, fer.detect, fer.inference, fer.faces; "
        "print(sorted(m for m in ('pytorch_lightning', 'torchvision', 'fer.data', 'pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-500:]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_states_each_default_once_and_only_where_it_says_something(command, capsys):
    """Was: '(default: the model shipped in checkpoints/) (default: None)', '(default: False)'."""
    import importlib
    import re

    with pytest.raises(SystemExit):
        importlib.import_module(f"fer.{command}").main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    for option in re.split(r" (?=--?[a-z][\w-]* )", text.split(" options: ", 1)[1]):
        assert option.count("(default") <= 1, option
    if command == "evaluate":
        assert "(default: none)" in text and "(default: 0)" in text  # --tta, --gradcam
    if command == "train":  # an option without help text still says its default
        assert "--optimizer {sgd,adamw} (default: sgd)" in text
        # validation's batches are not --batch-size's (was: unsaid, so --limit-val-batches 2
        # with --batch-size 128 validated on 1,024 faces, not 256)
        from fer.data import FerDataModule

        size = FerDataModule().hparams.eval_batch_size
        assert f"validate on this many batches of {size} faces" in text
        assert f"validation and test take {size} a batch" in text


@pytest.mark.parametrize("module", ["fer.predict", "fer.serve"])
def test_photo_options_are_shared_and_a_min_face_below_one_is_refused(module, capsys):
    """fer.predict and fer.serve read photos alike (--min-face, --no-jitter), and both refuse a
    smallest face under 1 px in one line, before loading anything."""
    import importlib

    parser = importlib.import_module(module).build_parser()
    args = parser.parse_args(
        ["--min-face", "60", "--no-jitter"] + ["x.jpg"] * (module == "fer.predict")
    )
    assert args.min_face == 60 and args.no_jitter
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--min-face", "0"] + ["x.jpg"] * (module == "fer.predict"))
    assert e.value.code == 2 and "--min-face: must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "predict", "detect", "export", "analyze", "plot", "serve"]
)
def test_help_loads_neither_pytorch_nor_lightning(command):
    """--help answers at once: it imports neither PyTorch nor Lightning (was: fer.train's took
    5 s, loading both for the names of its presets, optimizers and defaults)."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['fer.{command}', '--help']\n"
        "try:\n"
        f"    runpy.run_module('fer.{command}', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-1000:]
    assert "usage:" in run.stdout and run.stdout.strip().splitlines()[-1] == "[]"
