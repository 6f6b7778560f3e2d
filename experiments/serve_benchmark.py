"""fer.serve measured as a user meets it: the JSON API under load, and the page's live loop in a
real browser with a camera that shows a PublicTest face.

    python experiments/serve_benchmark.py [--data data/fer2013] [--clients 8] [--requests 50] \\
        [--seconds 30] [--model DIR] [--every 2] [--json docs/serve_benchmark.json] \\
        [--screenshot docs/serve_page.png]

(1) latency and load: one client, then `--clients` clients at once, on loopback, each POST a
640x480 JPEG (one PublicTest face) to /api/predict (20 times, then `--requests` times), one after
another; every answer is checked (status 200, one face) and the latency of each is kept: p50 /
p95 / max, requests per second, answers lost.
(2) browser: headless Chromium (Debian's chromium and chromium-driver, driven by Selenium) opens
the page with a fake camera playing a 640x480 video of the same face, starts the camera, and
after a warm-up reads the page's own frames-per-second figure every second for `--seconds`;
browser and server share this machine's cores. Then it drops a photo on the page and takes a
screenshot. The server is started as a user starts it: `python -m fer.serve --port 0`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import run_cli  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@contextlib.contextmanager
def running_server(
    *args: str, cwd: str | Path | None = None, env=None, log: Path | None = None
) -> Iterator[str]:
    """`python -m fer.serve --port 0 ARGS` started, its URL given, stopped on leaving; what it
    prints on stderr goes to `log` (default: a temporary file, shown if it does not start)."""
    with contextlib.ExitStack() as stack:
        err = open(log, "w+") if log else stack.enter_context(tempfile.TemporaryFile("w+"))
        stack.callback(err.close)
        proc = subprocess.Popen(
            [sys.executable, "-m", "fer.serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=cwd,
            env=env,
        )
        try:
            line = proc.stdout.readline()
            found = re.search(r"http://\S+", line)
            if not found:
                proc.wait(timeout=60)
                err.seek(0)
                raise RuntimeError(f"fer.serve did not start: {line}{err.read()[-2000:]}")
            yield found.group(0)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def face_frame(face: np.ndarray, width: int = 640, height: int = 480, size: int = 200) -> bytes:
    """A JPEG of a 48x48 face upscaled to `size` px in the middle of a textured frame."""
    import cv2

    from fer.demo import background

    frame = background(width, height)
    x, y = (width - size) // 2, (height - size) // 2
    frame[y : y + size, x : x + size] = cv2.resize(face, (size, size), cv2.INTER_CUBIC)[..., None]
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def load(url: str, body: bytes, clients: int = 8, requests: int = 50, faces: int = 1) -> dict:
    """`clients` threads each POST `body` `requests` times; every answer must be 200 with `faces`
    faces. Returns the counts and latencies (ms)."""
    import httpx

    stopping = threading.Event()  # the run is ending (SIGTERM, Ctrl-C): clients leave

    def client(_: int) -> tuple[list[float], list[str]]:
        times, errors = [], []
        with httpx.Client(timeout=60) as http:
            for _ in range(requests):
                if stopping.is_set():
                    break
                start = time.perf_counter()
                try:
                    r = http.post(
                        f"{url}/api/predict", content=body, headers={"content-type": "image/jpeg"}
                    )
                    ok = r.status_code == 200 and len(r.json()["faces"]) == faces
                    if not ok:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    errors.append(f"{type(e).__name__}: {e}")
                else:
                    if ok:
                        times.append((time.perf_counter() - start) * 1000)
        return times, errors

    start = time.perf_counter()
    pool = concurrent.futures.ThreadPoolExecutor(clients)
    try:
        results = list(pool.map(client, range(clients)))
    finally:  # on SIGTERM or Ctrl-C, without waiting for the clients' remaining requests
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
    wall = time.perf_counter() - start
    times = np.array([t for ts, _ in results for t in ts])
    errors = [e for _, es in results for e in es]
    return {
        "clients": clients,
        "requests": clients * requests,
        "answered": int(len(times)),
        "errors": errors[:5],
        "lost": clients * requests - int(len(times)),
        "p50_ms": round(float(np.percentile(times, 50)), 1) if len(times) else None,
        "p95_ms": round(float(np.percentile(times, 95)), 1) if len(times) else None,
        "max_ms": round(float(times.max()), 1) if len(times) else None,
        "requests_per_s": round(len(times) / wall, 1),
    }


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing (Debian: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def chromium(camera: Path | None, profile: Path, width: int = 1280, height: int = 900):
    """Headless Debian Chromium driven by Selenium; with `camera`, a .y4m file plays as the webcam
    and the page is allowed to use it without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    if camera is not None:
        options.add_argument("--use-fake-ui-for-media-stream")
        options.add_argument("--use-fake-device-for-media-stream")
        options.add_argument(f"--use-file-for-fake-video-capture={camera}")
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def wait_for(condition, timeout: float, what: str, every: float = 0.25):
    """condition()'s first true value, polled until `timeout` seconds pass (then TimeoutError)."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(every)


def live_labels(driver) -> list[str]:
    """The emotions the page lists for the faces of the latest camera frame."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#live-faces li')].map(li => li.dataset.emotion)"
    )


def page_fps(driver) -> float:
    return float(driver.execute_script("return document.getElementById('fps').dataset.fps || 0"))


def first_face(data: Path, emotion: str = "happy") -> tuple[np.ndarray, str]:
    import cv2

    folder = data / "test" / emotion
    if not folder.is_dir():
        raise SystemExit(f"error: {folder} is not there: pass --data, the Kaggle folder layout")
    path = sorted(folder.glob("PublicTest_*"))[0]
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), path.name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/fer2013", help="FER-2013 in the Kaggle folder layout")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=50, help="requests per client")
    p.add_argument(
        "--seconds", type=int, default=30, help="how long the live loop is read (1 or more)"
    )
    p.add_argument("--model", help="the server's --model (default: the shipped model)")
    p.add_argument("--every", type=int, default=2, help="the server's --every")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--screenshot", help="save a PNG of the page here")
    args = p.parse_args(argv)
    for option in ("seconds", "clients", "requests", "every"):
        if getattr(args, option) < 1:  # was: 0 readings, then min([]) after minutes of work
            p.error(f"--{option} must be 1 or more")
    from fer.common import atomic_path, check_outputs, machine, write_text

    # refused before the server starts, not after minutes of measuring
    check_outputs({"--json": args.json, "--screenshot": args.screenshot})
    # SIGTERM (timeout, kill) ends the run as Ctrl-C does, through the `finally`s that stop the
    # server and the browser it started; by default it would end this process alone
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from fer.demo import face_video

    face, name = first_face(Path(args.data))
    out: dict = {
        "machine": machine(),
        "face": name,
    }
    server_args = ["--every", str(args.every)] + (["--model", args.model] if args.model else [])
    out["server_args"] = server_args
    with running_server(*server_args) as url:
        out["latency"] = load(url, face_frame(face), 1, 20)  # one client: the time of a request
        print(
            f"latency: one client, p50 {out['latency']['p50_ms']} ms, p95 {out['latency']['p95_ms']} ms"
        )
        out["load"] = load(url, face_frame(face), args.clients, args.requests)
        print(
            f"load: {out['load']['answered']}/{out['load']['requests']} answered, "
            f"p50 {out['load']['p50_ms']} ms, p95 {out['load']['p95_ms']} ms, "
            f"{out['load']['requests_per_s']} requests/s"
        )
        if why := browser_missing():
            print(f"browser: skipped, {why}")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                camera = Path(tmp) / "camera.y4m"
                face_video(camera, [face], frames=300, size=200)
                driver = chromium(camera, Path(tmp) / "profile")
                try:
                    driver.get(url)
                    driver.find_element("id", "start").click()
                    wait_for(lambda: live_labels(driver), 60, "the first answered frame")
                    time.sleep(5)  # warm-up
                    readings = []
                    for _ in range(int(args.seconds)):
                        time.sleep(1)
                        readings.append(page_fps(driver))
                    out["browser"] = {
                        "fps_median": round(float(np.median(readings)), 1),
                        "fps_min": round(min(readings), 1),
                        "seconds": args.seconds,
                        "labels": live_labels(driver),
                        "chromium": driver.capabilities.get("browserVersion"),
                    }
                    print(
                        f"browser: {out['browser']['fps_median']} frames/s (median of "
                        f"{len(readings)} readings, lowest {out['browser']['fps_min']})"
                    )
                    if args.screenshot:
                        photo = Path(tmp) / "photo.jpg"
                        photo.write_bytes(face_frame(face, 640, 480, 260))
                        driver.find_element("id", "photo-input").send_keys(str(photo))
                        wait_for(
                            lambda: driver.find_elements("css selector", "#photo-faces li"),
                            60,
                            "the photo's faces",
                        )
                        time.sleep(1)
                        with atomic_path(args.screenshot) as part:  # PNG, whatever its name
                            part.write_bytes(driver.get_screenshot_as_png())
                finally:
                    driver.quit()
    if args.json:
        write_text(args.json, json.dumps(out, indent=2) + "\n")
    return 0 if out["load"]["lost"] == 0 else 1


if __name__ == "__main__":
    run_cli(main)
