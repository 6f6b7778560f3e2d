"""Faults: a run killed mid-epoch resumes to the same result; Ctrl-C saves a checkpoint first."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NET = [
    "--widths",
    "32",
    "64",
    "--depth",
    "2",
    "--batch-size",
    "32",
    "--precision",
    "32-true",
    "--seed",
    "3",
    "--deterministic",
    "--no-test",
]


def launch(data: Path, root: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "fer.train",
        "--data",
        str(data),
        "--default-root-dir",
        str(root),
        *NET,
        *extra,
    ]
    # A shell running CI in the background ignores SIGINT, and children inherit that: restore the
    # default so Python turns Ctrl-C into KeyboardInterrupt, as in a terminal.
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-2000:]
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def last_row(root: Path) -> dict:
    with open(root / "lightning_logs" / "version_0" / "metrics.csv") as f:
        return list(csv.DictReader(f))[-1]


@pytest.fixture
def real_subset(shared_data):
    return shared_data / "fer2013-sample.csv"  # 700 training and 350 PublicTest faces


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(real_subset, tmp_path):
    epochs = ["--max-epochs", "3"]
    whole = launch(real_subset, tmp_path / "whole", *epochs)
    assert whole.wait(timeout=600) == 0, whole.stdout.read()[-2000:]

    killed = launch(real_subset, tmp_path / "killed", *epochs)
    last = tmp_path / "killed" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    wait_for(last, killed)  # epoch 0 is done; epoch 1 is under way
    time.sleep(0.3)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(last, weights_only=True)["epoch"] < 2  # it really did not finish

    resumed = launch(real_subset, tmp_path / "killed", *epochs, "--ckpt-path", "last")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()[-2000:]
    a, b = last_row(tmp_path / "whole"), last_row(tmp_path / "killed")
    assert a["epoch"] == b["epoch"] == "2"
    assert a["val/acc"] == b["val/acc"]
    assert abs(float(a["val/loss"]) - float(b["val/loss"])) < 0.01 * float(a["val/loss"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_saves_a_checkpoint_then_resumes(real_subset, tmp_path, sig):
    run = launch(real_subset, tmp_path, "--max-epochs", "3")
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    wait_for(last, run)
    step_at_epoch_end = torch.load(last, weights_only=True)["global_step"]
    time.sleep(0.5)
    run.send_signal(sig)
    out, _ = run.communicate(timeout=120)
    assert run.returncode != 0 and "): saved" in out, out[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] > step_at_epoch_end  # saved mid-epoch
    resumed = launch(real_subset, tmp_path, "--max-epochs", "3", "--ckpt-path", "last")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()[-2000:]
    assert last_row(tmp_path)["epoch"] == "2"
