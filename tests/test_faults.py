"""Faults: a run killed mid-epoch resumes to the same result; Ctrl-C saves a checkpoint first;
SIGTERM after training, or on fer.detect, keeps what was done."""

import contextlib
import csv
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import make_csv, make_video

ROOT = Path(__file__).resolve().parents[1]
UNIX = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="a system without SIGHUP")
#: a network small enough for in-process runs of a few seconds
TINY = ["--widths", "8", "--depth", "1", "--batch-size", "16", "--precision", "32-true"]
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
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=terminal_signals,
    )


def terminal_signals() -> None:
    """A shell running CI in the background ignores SIGINT, and `nohup` SIGHUP, and children
    inherit that: restore the defaults, so that Python turns Ctrl-C into KeyboardInterrupt and a
    closed terminal's SIGHUP reaches the run, as in a terminal."""
    for s in (signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


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


@pytest.mark.slow  # CI runs these too: .ci/run
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


@pytest.mark.slow  # CI runs these too: .ci/run
@pytest.mark.parametrize(
    "sig, code, why",
    [
        pytest.param(signal.SIGINT, 130, "Ctrl-C", id="ctrl-c"),
        pytest.param(signal.SIGTERM, 143, "SIGTERM", id="sigterm"),
        # the terminal of a run not started with nohup closed
        pytest.param(getattr(signal, "SIGHUP", 1), 129, "SIGHUP", id="sighup", marks=UNIX),
    ],
)
def test_an_interrupt_saves_a_checkpoint_then_resumes(real_subset, tmp_path, sig, code, why):
    run = launch(real_subset, tmp_path, "--max-epochs", "3")
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    wait_for(last, run)
    step_at_epoch_end = torch.load(last, weights_only=True)["global_step"]
    time.sleep(0.5)
    run.send_signal(sig)
    out, _ = run.communicate(timeout=120)
    assert run.returncode == code, out[-2000:]
    # a hang-up silences the run's pipes (their reader, `| tee`, would be gone with the terminal)
    assert (f"interrupted ({why}): saved" in out) == (why != "SIGHUP"), out[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] > step_at_epoch_end  # saved mid-epoch
    resumed = launch(real_subset, tmp_path, "--max-epochs", "3", "--ckpt-path", "last")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()[-2000:]
    assert last_row(tmp_path)["epoch"] == "2"


@pytest.mark.slow  # CI runs these too: .ci/run
def test_training_whose_terminal_closes_saves_a_checkpoint_and_exits_as_sighup(
    real_subset, tmp_path
):
    """Was: closing the terminal of `python -m fer.train` (not started with nohup) ended it at
    once, losing the epoch under way; then, stopped as by SIGTERM, it exited 1 where its message
    could no longer be written to the terminal."""
    import pty

    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    argv = [sys.executable, "-m", "fer.train", "--data", str(real_subset)]
    argv += ["--default-root-dir", str(tmp_path), *NET, "--max-epochs", "3"]
    pid, terminal = pty.fork()  # the run on a terminal of its own, as its session's leader
    if pid == 0:  # (only exec here: the child of a process with threads)
        os.chdir(ROOT)
        terminal_signals()
        os.execve(sys.executable, argv, {**os.environ, "OMP_NUM_THREADS": "1"})
    seen = b""

    def read_for(seconds: float) -> None:
        nonlocal seen
        end = time.time() + seconds
        while time.time() < end:
            if select.select([terminal], [], [], 0.1)[0]:
                seen += os.read(terminal, 65536)

    try:
        end = time.time() + 240
        while not last.exists():
            assert time.time() < end and os.waitpid(pid, os.WNOHANG) == (0, 0), seen[-2000:]
            read_for(0.1)
        step_at_epoch_end = torch.load(last, weights_only=True)["global_step"]
        read_for(0.5)
    finally:
        os.close(terminal)  # the window closes: its writes fail, SIGHUP arrives
    end = time.time() + 120
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        assert time.time() < end, "still running"
        time.sleep(0.1)
    assert os.waitstatus_to_exitcode(done[1]) == 129, seen[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] > step_at_epoch_end  # mid-epoch


@contextlib.contextmanager
def sigterm_fails_the_test(sig: int = signal.SIGTERM):
    """`sig` sent by a test to its own process: where the code under test does not handle it, the
    test fails (instead of pytest being killed, or going on where it was started with nohup)."""

    def unhandled(signum, frame):
        pytest.fail(f"{signal.Signals(signum).name} was not handled")

    before = signal.signal(sig, unhandled)
    try:
        yield
    finally:
        signal.signal(sig, before)


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGTERM, id="sigterm"),
        pytest.param(getattr(signal, "SIGHUP", 1), id="sighup", marks=UNIX),
    ],
)
def test_sigterm_while_testing_the_best_checkpoint_keeps_the_finished_run(
    tmp_path, monkeypatch, capsys, sig
):
    """Was: SIGTERM during the final test exited 0, wrote no summary.json (so the run folder no
    longer stood for its best checkpoint), overwrote last.ckpt with the best weights labelled as
    the last epoch, and advised resuming a run that had finished. SIGHUP (the terminal closed)
    ended the process there."""
    from fer.inference import load_classifier
    from fer.module import FerModule
    from fer.train import main as train

    data = make_csv(tmp_path / "csv" / "fer2013.csv", per_class=(8, 2, 75))  # 2 test batches
    run = tmp_path / "lightning_logs" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    seen: list[bytes] = []
    test_step = FerModule.test_step

    def test_step_then_sigterm(self, batch, batch_idx):
        if not seen:  # the first test batch: training is over, last.ckpt is its last epoch
            seen.append(last.read_bytes())
            os.kill(os.getpid(), sig)
        return test_step(self, batch, batch_idx)

    monkeypatch.setattr(FerModule, "test_step", test_step_then_sigterm)
    args = ["--data", str(data), "--default-root-dir", str(tmp_path), "--max-epochs", "2"]
    args += TINY
    # SIGHUP: where nothing takes it, the test fails (pytest may have been started with nohup);
    # SIGTERM: Lightning's handler would call such a handler too, after its own
    ignored = sigterm_fails_the_test(sig) if sig != signal.SIGTERM else contextlib.nullcontext()
    saved = {fd: os.dup(fd) for fd in (1, 2)}  # a hang-up silences a terminal (pytest -s) for good
    try:
        with ignored:
            code = train(args)
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
    assert code == 128 + sig  # as for the signal during training
    name = signal.Signals(sig).name
    out = capsys.readouterr()
    assert seen and last.read_bytes() == seen[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_checkpoint"] and "test_acc" not in summary
    assert summary["test_interrupted"] is True
    assert load_classifier(run).source == summary["best_checkpoint"]
    assert "resume with" not in out.out + out.err
    assert f"interrupted ({name}) while testing" in out.err


@UNIX
def test_a_hangup_stops_training_as_sigterm_and_silences_the_terminal_and_pipes(tmp_path):
    """Was: after SIGHUP the run's last lines went to a terminal that was gone, or a pipe whose
    reader (`| tee log`) the closed terminal had ended: the write failed and the run exited 1
    (with the tee, before saving its checkpoint); and with `--json -` only stderr was silenced."""
    script = (
        "import os, signal, sys, types\n"
        "from fer.callbacks import CheckpointOnInterrupt, hangup_stops\n"
        "got = []\n"
        "signal.signal(signal.SIGTERM, lambda s, f: got.append(s))  # as Lightning's\n"
        "sys.stdout = sys.stderr  # as fer.train --json - does\n"
        "print('before', flush=True)\n"
        "stop = CheckpointOnInterrupt()\n"
        "with hangup_stops(types.SimpleNamespace(callbacks=[stop])):\n"
        "    os.kill(os.getpid(), signal.SIGHUP)\n"
        "print('after', flush=True)\n"
        "os.write(1, b'after')\n"
        "open(sys.argv[1], 'w').write(f'{got} {stop.sigterm_from}')\n"
    )
    seen = tmp_path / "seen.txt"
    run = subprocess.run(
        [sys.executable, "-c", script, str(seen)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=terminal_signals,
    )
    assert run.returncode == 0, run.stderr
    assert (run.stdout, run.stderr) == ("", "before\n")
    assert seen.read_text() == f"[{int(signal.SIGTERM)}] SIGHUP"


@UNIX
def test_sighup_before_training_starts_ends_the_run_as_sighup_does():
    """Before Lightning has its SIGTERM handler (the data being decoded), there is no one to stop
    training: SIGHUP ends the process as it did before fer.train took it (was: as SIGTERM, 143)."""
    script = (
        "import os, signal, time, types\n"
        "from fer.callbacks import hangup_stops\n"
        "with hangup_stops(types.SimpleNamespace(callbacks=[])):\n"
        "    os.kill(os.getpid(), signal.SIGHUP)\n"
        "    time.sleep(30)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, timeout=120, preexec_fn=terminal_signals
    )
    assert run.returncode == -signal.SIGHUP


@UNIX
def test_training_started_with_nohup_goes_on_when_the_terminal_closes(tmp_path, monkeypatch):
    """A run started ignoring SIGHUP (`nohup python -m fer.train ... &`) finishes, tested too."""
    from fer.module import FerModule
    from fer.train import main as train

    data = make_csv(tmp_path / "csv" / "fer2013.csv", per_class=(8, 2, 75))
    sent: list[int] = []
    step = FerModule.training_step

    def training_step_then_sighup(self, batch, batch_idx):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGHUP) or 1)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(FerModule, "training_step", training_step_then_sighup)
    args = ["--data", str(data), "--default-root-dir", str(tmp_path), "--max-epochs", "2"]
    args += TINY
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert train(args) == 0
    finally:
        signal.signal(signal.SIGHUP, before)
    summary = json.loads((tmp_path / "lightning_logs" / "version_0" / "summary.json").read_text())
    assert sent and summary["epochs"] == 2 and "test_acc" in summary


@pytest.mark.parametrize("nohup", [False, True])
def test_a_run_under_nohup_goes_on_when_the_terminal_closes(nohup):
    """Was: Stoppable put its own handler over the SIGHUP that `nohup` ignores, so closing the
    terminal stopped `nohup python -m fer.predict folder &` (and reported SIGTERM, exit 143)."""
    script = (
        "import os, signal\n"
        "from fer.common import Stoppable, run_cli\n"
        "def main(argv):\n"
        "    with Stoppable():\n"
        "        os.kill(os.getpid(), signal.SIGHUP)\n"
        "        print('went on')\n"
        "run_cli(main, [])\n"
    )

    def start() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN if nohup else signal.SIG_DFL)

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, preexec_fn=start
    )
    if nohup:
        assert done.returncode == 0 and "went on" in done.stdout, done.stderr
    else:  # the terminal closed: stopped, and said so (128 + SIGHUP)
        assert done.returncode == 129 and "stopped by SIGHUP" in done.stderr, done.stderr


def stopped_source(stop: str, at_read: int):
    """fer.detect's open_source, whose video is stopped at its read number `at_read`: by Ctrl-C,
    or by SIGTERM sent to this process."""
    import fer.detect

    opened = fer.detect.open_source

    class Stopped:
        def __init__(self, source):
            self.cap, self.reads = opened(source), 0

        def read(self):
            self.reads += 1
            if self.reads == at_read:
                if stop == "ctrl-c":
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGTERM)
            return self.cap.read()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    return Stopped


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_sigterm_keeps_what_detect_wrote_playable(tmp_path, exported, monkeypatch, stop):
    """Was: SIGTERM (timeout, kill, docker stop) left only hidden .part files, the mp4 without the
    index that makes it play; now it stops as Ctrl-C does, keeping every frame processed. Either
    way the exit status says it was stopped (130 after Ctrl-C, as fer.predict and fer.train; was 0)."""
    import fer.detect

    video = make_video(tmp_path / "in.mp4", frames=30)
    monkeypatch.setattr(fer.detect, "open_source", stopped_source(stop, at_read=6))
    out = tmp_path
    args = ["--source", str(video), "--model", str(exported), "--detector", "haar"]
    args += ["--output", str(out / "a.mp4"), "--json", str(out / "frames.jsonl")]
    with sigterm_fails_the_test():
        assert fer.detect.main(args) == (143 if stop == "sigterm" else 130)
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(5))
    cap = cv2.VideoCapture(str(out / "a.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert cap.read()[0]
    assert not list(out.glob(".*part*"))


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_detect_stopped_before_its_first_frame_says_stopped(
    tmp_path, exported, monkeypatch, capsys, stop
):
    """Ctrl-C or SIGTERM while the first frame is awaited (a webcam warming up) is a stop: exit
    130 or 143 and "stopped by", no file left. (Was: "error: no frames could be read", exit 2.)"""
    import fer.detect

    video = make_video(tmp_path / "in.mp4", frames=5)
    monkeypatch.setattr(fer.detect, "open_source", stopped_source(stop, at_read=1))
    out = tmp_path / "out"
    args = ["--source", str(video), "--model", str(exported), "--detector", "haar"]
    args += ["--output", str(out / "a.mp4"), "--json", str(out / "frames.jsonl")]
    with sigterm_fails_the_test():
        assert fer.detect.main(args) == (143 if stop == "sigterm" else 130)
    err = capsys.readouterr().err
    assert "stopped by" in err and "0 frames" in err, err
    assert not out.exists() or not list(out.iterdir())


def test_a_resumed_run_stands_for_no_checkpoint_until_it_finishes_again(
    tmp_path, monkeypatch, csv_data
):
    """Was: a finished run resumed for more epochs kept its summary.json while training on, so
    when it was stopped again its folder still stood for the best checkpoint of the first part
    (by then perhaps replaced by a better one, or deleted)."""
    from fer.common import FerError
    from fer.inference import load_classifier
    from fer.module import FerModule
    from fer.train import main as train

    run = tmp_path / "lightning_logs" / "version_0"
    args = ["--data", str(csv_data), "--default-root-dir", str(tmp_path), "--no-test"]
    args += TINY
    args += ["--scheduler", "cosine"]  # a run that can be extended
    assert train([*args, "--max-epochs", "1"]) == 0
    assert (run / "summary.json").is_file()
    training_step = FerModule.training_step

    def training_step_then_sigterm(self, batch, batch_idx):
        os.kill(os.getpid(), signal.SIGTERM)
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(FerModule, "training_step", training_step_then_sigterm)
    assert train([*args, "--max-epochs", "3", "--ckpt-path", "last"]) == 143
    assert not (run / "summary.json").exists()
    with pytest.raises(FerError, match="no summary.json yet"):
        load_classifier(run)


@contextlib.contextmanager
def live_stream():
    """A live MJPEG stream at a local URL, as an IP camera serves it (frames as they come, none
    announced), whose frames stop, the connection open, once `stall` is set: a network gone
    quiet."""
    stall, done = threading.Event(), threading.Event()
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)

    class Camera(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            while not stall.is_set():
                self.wfile.write(head + jpeg + b"\r\n")
                self.wfile.flush()
                time.sleep(0.05)
            done.wait()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/live.mjpg", stall
    finally:
        done.set()
        server.shutdown()
        server.server_close()


def test_sigterm_stops_detect_on_a_stalled_stream(tmp_path, exported):
    """Was: a network stream that stopped sending held OpenCV's read until FFmpeg gave up, 30 s
    later, and Ctrl-C or SIGTERM went unheard until then (`docker stop` ends in SIGKILL after
    10 s: the JSON and video lost). Now the signal stops the run at once, keeping what was done."""
    out = tmp_path / "frames.jsonl"
    with live_stream() as (url, stall):
        run = subprocess.Popen(
            [sys.executable, "-m", "fer.detect", "--source", url, "--model", str(exported)]
            + ["--detector", "haar", "--json", str(out), "--output", str(tmp_path / "a.mp4")],
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            end = time.time() + 120
            part = tmp_path / f".{out.name}.part"  # its lines, each written as its frame is done
            while run.poll() is None and not (part.exists() and part.stat().st_size):
                assert time.time() < end, "no frame was read"
                time.sleep(0.05)
            stall.set()
            time.sleep(2.0)  # the frames on their way are read; the next read waits
            run.send_signal(signal.SIGTERM)
            # 20 s: well under FFmpeg's 30 s, after which the old code heard the signal
            _, err = run.communicate(timeout=20)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
    assert run.returncode == 143 and "stopped by SIGTERM" in err, err
    frames = [json.loads(line)["frame"] for line in out.read_text().splitlines()]
    assert frames and frames == list(range(len(frames)))
    cap = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)


def test_a_read_left_blocked_ends_the_process_at_once_not_in_an_abort(monkeypatch, capsys):
    """Was: a stalled stream's read, still blocked when detect ended (SIGTERM during the stall),
    returned during the interpreter's shutdown, which stopped its thread inside OpenCV's C++
    code: the process aborted (SIGABRT, exit 134, 'terminate called without an active
    exception') after writing its files. Now the reader is given up (ABANDONED) and run_cli ends
    the process at once with the run's own exit status."""
    import fer.common
    import fer.detect

    entered, release = threading.Event(), threading.Event()

    class Stalled:
        def read(self):
            entered.set()
            release.wait()
            return False, None

    reader = fer.detect.FrameReader(Stalled())
    try:
        reader.asked.put(True)  # a read asked for, as reader.read() does
        assert entered.wait(10)
        assert reader.close() is False  # still blocked after its second: given up
        assert reader.thread in fer.common.ABANDONED

        class Exited(Exception):
            pass

        def exit_now(code):
            raise Exited(code)

        monkeypatch.setattr(fer.common.os, "_exit", exit_now)

        def stopped(argv):
            print("stopped by SIGTERM: 5 frames")
            return 143

        with pytest.raises(Exited) as ended:
            fer.common.run_cli(stopped, [])
        assert ended.value.args == (143,) and "5 frames" in capsys.readouterr().out

        def failed(argv):  # an error run_cli leaves to Python (--debug): its traceback, then 1
            raise fer.common.FerError("the video cannot be written")

        with pytest.raises(Exited) as ended:
            fer.common.run_cli(failed, ["--debug"])
        assert ended.value.args == (1,) and "Traceback" in capsys.readouterr().err
    finally:
        release.set()
        reader.thread.join(10)
        fer.common.ABANDONED.remove(reader.thread)
    with pytest.raises(SystemExit) as ended:  # none left: the usual exit
        fer.common.run_cli(lambda argv: 143, [])
    assert ended.value.code == 143
