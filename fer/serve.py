"""Emotions in the browser and over HTTP: `python -m fer.serve`, then open http://127.0.0.1:8000.

The page shows the webcam with each face's box, emotion and probability bars drawn over it, reads
a photo dropped on it, and says which model is running; everything it loads ships in the package
(fer/web/), so it works offline. Programs use the JSON API:

    POST /api/predict    an image as the body (Content-Type: image/...) or as the multipart field
                         `image`; answers {"faces": [...], "width": W, "height": H}, the face
                         records of fer.predict --json (without file and detector), boxes in the
                         photo's displayed (EXIF-upright) pixels
    WS   /api/stream     the live loop: send encoded frames (JPEG, PNG, WebP) as binary messages,
                         receive one JSON message a frame, faces smoothed over frames as fer.detect
    GET  /api/health     {"status": "ok", ...}
    GET  /api/model      the model card's headline figures, the detector and its license

Inference runs off the event loop: photos in a pool of one thread a core (--workers), each with
its own face detector and one classifier shared by all; live streams in threads of their own, so
a frame never queues behind a large photo (the cores are still shared). Bad input is answered
and the server goes on: a body over --max-body-mb is refused with 413 before it is read whole, an
image whose header claims more than --max-megapixels with 413 before it is decoded, what is not
an image with 415, an image that cannot be used with 400, each with a JSON {"error": "..."}
naming the problem (and a bug with a JSON 500); a page of another site (--allow-origin apart)
is refused with 403. Uploads are kept in memory only, never written
to disk or logged.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import math
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from fer.annotate import COLORS
from fer.common import (
    HEADER_BYTES,
    FerError,
    Parser,
    add_debug_flag,
    add_model_options,
    header_size,
    heif_decoder,
    image_kind,
    usable_cores,
    why_undecodable,
)
from fer.faces import add_face_options, add_photo_options
from fer.recognizer import EmotionRecognizer, ImageError, UndecodableImage, as_image

WEB = Path(__file__).resolve().parent / "web"
MB = 1 << 20
#: Streams served at once; a client beyond them is told to come back later (close code 1013).
MAX_STREAMS = 16
#: The most pixels a stream's frame may have (a 4K frame; the page sends them 640 px wide): up to
#: MAX_STREAMS frames are read at once, whatever --workers says, so they are held well below a
#: photo's --max-megapixels.
STREAM_MAX_PIXELS = 3840 * 2160
#: Seconds a stream may go without a frame before it is closed (code 1000) and its place freed.
STREAM_IDLE = 60.0
#: Photos a server holds at once, for each worker: a request beyond them gets 503.
PHOTOS_PER_WORKER = 4
#: What `curl -d` sends a body as (having dropped its newlines and carriage returns)
FORM_ENCODED = "application/x-www-form-urlencoded"
#: Seconds a request body may go without a byte before the request gets 408 (--upload-timeout)
UPLOAD_TIMEOUT = 30.0
#: The slowest a body may come, on average, once it has taken --upload-timeout seconds (bytes a
#: second, 16 kbit/s): a client trickling a byte now and then keeps no place for photos for
#: ever, while a phone on a poor 2G link (30-60 kbit/s) still sends its photo
MIN_UPLOAD_RATE = 2 * 1024
#: Parts a multipart body may have (a form with the photo and a few fields needs far fewer).
MAX_PARTS = 16
DETECTOR_LICENSES = {
    "yunet": "YuNet (libfacedetection, OpenCV model zoo), MIT License: fer/assets/LICENSE.yunet",
    "haar": "OpenCV's frontal-face Haar cascade, shipped with OpenCV under its license",
}


class RequestError(Exception):
    """A request the server answers with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ClientLeft(Exception):
    """The client of a photo left before a worker came to it: nobody to read it for."""


#: How often a photo waiting for a worker checks that its client is still there (seconds).
LEAVE_CHECK = 0.2


async def note_leaving(request: Request, left: threading.Event) -> None:
    """Set `left` once the client of `request` (its body read) has gone."""
    while not await request.is_disconnected():
        await asyncio.sleep(LEAVE_CHECK)
    left.set()


#: What the pictures a server reads are, in its messages.
READS = "JPEG, PNG, WebP, BMP, TIFF, GIF, AVIF, HEIC"


class PageFiles(StaticFiles):
    """The page's scripts and styles, checked again (by their ETag) on every load, as the page
    is: a browser's cache never pairs a newer page with an older app.js."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def image_from_bytes(
    data: bytes,
    max_pixels: float,
    what: str = "the body",
    limit: str = "fer.serve --max-megapixels",
) -> np.ndarray:
    """The pixels of an encoded image, upright as its EXIF orientation says, decoded as the Python
    API decodes a file. Its size is read from the header first, and an image of more than
    `max_pixels` is refused undecoded. Messages call the image `what` (the body of a request, a
    frame of a stream) and say what sets the limit (`limit`)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        if what != "the body":
            raise RequestError(400, f"no image: {what} is empty")
        raise RequestError(
            400, "no image: send it as the body (Content-Type: image/jpeg) or as the field 'image'"
        )
    heif_decoder()  # Pillow reads a HEIC photo's size too
    try:
        width, height = header_size(data)  # the limit below decides, not PIL's warning
    except Image.DecompressionBombError:
        raise RequestError(
            413, f"the image has more than {max_pixels / 1e6:g} megapixels"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, RuntimeError):
        # (RuntimeError: Pillow's AVIF plugin, on a damaged file)
        head = data[:HEADER_BYTES]
        if image_kind(head):  # an image, damaged: a bad request, not a wrong media type
            raise RequestError(400, f"{what} {why_undecodable(head)}") from None
        raise RequestError(
            415, f"not an image this server reads ({READS}): {what} {why_not_read(head)}"
        ) from None
    if width * height > max_pixels:
        raise RequestError(
            413,
            f"the image is {width}x{height}, {width * height / 1e6:.1f} megapixels; this server "
            f"reads up to {max_pixels / 1e6:g} ({limit})",
        )
    try:
        return as_image(data, name=what)
    except UndecodableImage as e:  # one Pillow knows the size of (ICO, TGA...) but fer not
        if image_kind(data[:HEADER_BYTES]):
            raise RequestError(400, str(e)) from None
        raise RequestError(
            415,
            f"not an image this server reads ({READS}): {what} {why_not_read(data[:HEADER_BYTES])}",
        ) from None
    except ImageError as e:
        raise RequestError(400, str(e)) from None


def why_not_read(head: bytes) -> str:
    """Why the server does not read an upload whose first bytes are `head`: of READS' formats,
    none (a kind OpenCV decodes, such as Radiance HDR, is not one of them either), or one this
    installation lacks a decoder for (HEIC without pillow-heif)."""
    return why_undecodable(head, unknown="is none of these")


def answer(faces: list, pixels: np.ndarray) -> dict[str, Any]:
    """The JSON answer for the faces of a picture: their records and the picture's size."""
    height, width = pixels.shape[:2]
    return {"faces": [f.to_dict() for f in faces], "width": width, "height": height}


def multipart_field(body: bytes, content_type: str, name: str = "image") -> bytes:
    """The content of the multipart/form-data field `name`, parsed in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise RequestError(400, "a multipart/form-data body needs a boundary in its Content-Type")
    fields: dict[str, list[list[bytes]]] = {}
    part: dict[str, Any] = {}
    parts, ended = 0, False

    def on_part_begin() -> None:
        nonlocal parts
        parts += 1
        if parts > MAX_PARTS:
            raise RequestError(400, f"a multipart body of more than {MAX_PARTS} parts")
        part.update(headers={}, field=b"", value=b"", data=[])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"] = part["value"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part["data"].append(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        fields.setdefault(name, []).append(part["data"])

    def on_end() -> None:
        nonlocal ended
        ended = True

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # it refuses some boundaries (too long)
        parser.write(body)
        parser.finalize()
    except RequestError:
        raise
    except Exception as e:  # python-multipart raises its own error types
        raise RequestError(400, f"a malformed multipart/form-data body: {e}") from None
    if name not in fields and not ended:
        raise RequestError(400, "the multipart body ends before its closing boundary (cut short?)")
    if name not in fields:
        got = ", ".join(repr(k) for k in fields) or "none"
        raise RequestError(400, f"the multipart body has no field {name!r} (fields: {got})")
    if len(fields[name]) > 1:
        raise RequestError(
            400, f"the multipart body has {len(fields[name])} fields {name!r}: send one"
        )
    return b"".join(fields[name][0])


class Engine:
    """The model behind the server: `workers` recognizers sharing one classifier, each with its own
    face detector (a detector holds state of its own: Haar's OpenCV cascade is not to be shared
    between threads), and a thread pool of
    the same size that runs them off the event loop."""

    def __init__(
        self,
        model: str | None = None,
        *,
        detector: str = "yunet",
        backend: str = "auto",
        min_face: int | None = None,
        align: bool = True,
        jitter: bool = True,
        workers: int | None = None,
        max_pixels: float = 50e6,
        every: int = 2,
    ):
        self.workers = workers or usable_cores()
        options = dict(detector=detector, min_face=min_face, align=align, jitter=jitter)
        first = EmotionRecognizer(model, backend=backend, **options)
        self.recognizer = first
        self._idle: queue.SimpleQueue[EmotionRecognizer] = queue.SimpleQueue()
        for i in range(self.workers):
            recognizer = first if i == 0 else EmotionRecognizer(first.classifier, **options)
            _ = recognizer.detector  # made now: a missing or damaged one stops the start-up
            self._idle.put(recognizer)
        # photos in hand (read, waiting or being read): beyond `max_photos`, 503, so that the
        # bodies held in memory stay bounded
        self.photos, self.max_photos = 0, PHOTOS_PER_WORKER * self.workers
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="fer-photo")
        # live streams get threads of their own, so a frame never queues behind a large photo
        self.stream_pool = ThreadPoolExecutor(MAX_STREAMS, thread_name_prefix="fer-stream")
        self.max_pixels, self.every = max_pixels, every
        # a stream's frames: STREAM_MAX_PIXELS at most, and what sets their limit, for messages
        self.frame_limit = (
            (STREAM_MAX_PIXELS, "a stream's frames: at most 3840x2160 pixels")
            if max_pixels > STREAM_MAX_PIXELS
            else (max_pixels, "fer.serve --max-megapixels")
        )
        self.streams = 0
        from PIL import Image

        # PIL refuses images over twice its own limit: make that limit this server's
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, int(max_pixels))

    async def run(self, fn: Callable[..., Any], *args: Any, stream: bool = False) -> Any:
        """fn(*args) in the photo pool (or the streams' pool), off the event loop; a FerError
        (a picture the model cannot use) becomes a 400."""

        def call() -> Any:
            try:
                return fn(*args)
            except FerError as e:
                raise RequestError(400, str(e)) from None

        pool = self.stream_pool if stream else self.pool
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    def predict(self, data: bytes, left: threading.Event | None = None) -> dict[str, Any]:
        """The JSON answer for one encoded photo (runs in a worker); ClientLeft, unread, where
        `left` says its client has gone (checked as the worker comes to it, and once decoded)."""
        if left is not None and left.is_set():
            raise ClientLeft
        pixels = image_from_bytes(data, self.max_pixels)
        if left is not None and left.is_set():
            raise ClientLeft
        recognizer = self._idle.get()
        try:
            faces = recognizer.predict(pixels)
        finally:
            self._idle.put(recognizer)
        return answer(faces, pixels)

    def track(self, tracker, data: bytes) -> dict[str, Any]:
        """The JSON answer for the next frame of a stream (runs in a worker)."""
        start = time.perf_counter()
        pixels = image_from_bytes(data, self.frame_limit[0], "the frame", self.frame_limit[1])
        faces = tracker.update(pixels)
        return {**answer(faces, pixels), "ms": round((time.perf_counter() - start) * 1000, 1)}

    def model_card(self) -> dict[str, Any]:
        """What the page shows of the model: its source, size, headline metrics, the detector."""
        classifier = self.recognizer.classifier
        extra = classifier.spec.extra
        metrics = extra.get("metrics", {})
        headline = {
            name: metrics[key]["accuracy"]
            for name, key in (
                ("publictest_accuracy", "val_tta_none"),
                ("publictest_accuracy_without_leaked", "val_tta_none_skip"),
            )
            if isinstance(metrics.get(key), dict) and "accuracy" in metrics[key]
        }
        return {
            "model": classifier.source,
            "arch": classifier.spec.arch,
            "members": len(extra.get("members", [])) or 1,
            "parameters": extra.get("parameters"),
            "backend": classifier.backend,
            "classes": list(classifier.classes),
            "colors": {e: "#{2:02x}{1:02x}{0:02x}".format(*bgr) for e, bgr in COLORS.items()},
            **headline,
            "detector": self.recognizer.detector_name,
            "detector_license": DETECTOR_LICENSES.get(self.recognizer.detector_name or "", ""),
        }

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.stream_pool.shutdown(wait=False, cancel_futures=True)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before it is read whole, by its
    Content-Length when it has one, else as soon as the bytes received pass the limit. (FastAPI's
    own max_body_size answers an oversized Content-Length with a plain-text 413; every error of
    this API is JSON.) A body whose next bytes do not come within `idle` seconds gets 408, and so
    does one that, past its first `idle` seconds, has come at under MIN_UPLOAD_RATE on average: a
    client that stalls or trickles mid-upload would otherwise hold one of the server's places for
    photos for as long as it keeps its connection open (uvicorn has no such timeout of its
    own)."""

    def __init__(self, app, limit: int, idle: float = UPLOAD_TIMEOUT):
        self.app, self.limit, self.idle = app, limit, idle

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = RequestError(
            413, f"the body is over {self.limit / MB:g} MB (fer.serve --max-body-mb)"
        )
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            return await _send_error(send, too_large)
        received, started, whole = 0, False, False
        stalled = RequestError(
            408, f"no byte of the body came for {self.idle:g} s (fer.serve --upload-timeout)"
        )
        trickled = RequestError(
            408,
            f"the body came at under {MIN_UPLOAD_RATE // 1024} KB/s on average over "
            f"{self.idle:g} s and more (fer.serve --upload-timeout; send it over a faster link)",
        )
        start = time.monotonic()

        async def limited_receive():
            nonlocal received, whole
            if whole or started:  # the body is in, or the answer going out: what comes now is
                return await receive()  # the client leaving, whenever it does
            try:
                message = await asyncio.wait_for(receive(), self.idle)
            except (TimeoutError, asyncio.TimeoutError):  # two classes before Python 3.11
                raise stalled from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise too_large
                whole = not message.get("more_body", False)
                took = time.monotonic() - start
                if not whole and took > self.idle and received < MIN_UPLOAD_RATE * took:
                    raise trickled
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except RequestError as e:
            if e not in (too_large, stalled, trickled) or started:
                raise
            await _send_error(send, e)


async def _send_error(send, error: RequestError) -> None:
    body = json.dumps({"error": error.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def foreign_origin(headers, allowed: Sequence[str]) -> str | None:
    """The Origin of a request from a page of another site, unless `allowed` lets it in ("*": any
    site); None for the server's own page and for clients that are no browser (they send none). A
    browser sends a page's Origin with its WebSockets and posts, and leaves the check to the
    server: without it, any page the user has open could use the server."""
    origin = headers.get("origin")
    if origin is None or "*" in allowed or origin.rstrip("/").lower() in allowed:
        return None
    if split(origin).netloc.lower() == headers.get("host", "").lower():
        return None
    return origin


def split(url: str):
    """urlsplit(url), or that of nothing for a malformed one ('http://[x'): a header a client
    made up names no host, and is refused as another site's, not answered with a 500."""
    try:
        return urlsplit(url)
    except ValueError:
        return urlsplit("")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def foreign_host(headers, allowed: Sequence[str]) -> str | None:
    """The Host a request names where it is no loopback name or address, nor the host of a site
    `allowed` lets in; None where it is. A server listening on loopback is reached by those
    alone: another name is one an attacker's page points at 127.0.0.1 (DNS rebinding), whose
    requests a browser sends as the page's own, Origin and Host both the attacker's."""
    host = headers.get("host", "")
    if not host or "*" in allowed:  # no browser sends none; '*': any site, through any name
        return None
    name = (split(f"//{host}").hostname or "").rstrip(".")
    if name == "localhost" or name.endswith(".localhost") or is_loopback(name):
        return None
    return None if name and name in {split(o).hostname for o in allowed} else host


def create_app(
    engine: Engine,
    max_body: int = 20 * MB,
    upload_timeout: float = UPLOAD_TIMEOUT,
    allow_origins: Sequence[str] = (),
    local_only: bool = False,
):
    """The ASGI application: the page, the JSON API and the live stream, over `engine`; pages of
    other sites (`allow_origins` apart) may not post photos or stream, nor, on a server that
    listens on loopback (`local_only`), requests for a Host of another name."""
    allow_origins = tuple(o.rstrip("/").lower() for o in allow_origins)

    def refused(headers) -> str | None:
        """Why a post or stream is refused, or None."""
        if local_only and (host := foreign_host(headers, allow_origins)) is not None:
            return (
                f"this server listens on loopback and answers requests for localhost, not for "
                f"{host!r} (DNS rebinding?); to serve a site through a proxy, start it with "
                "--allow-origin https://that.site"
            )
        if origin := foreign_origin(headers, allow_origins):
            return (
                f"a page of {origin} may not use this server; start it with --allow-origin "
                f"{origin} to let it"
            )
        return None

    app = FastAPI(
        title="fer",
        summary="Facial emotion recognition: the shipped FER-2013 model over HTTP",
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN: the page must work offline
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.engine = engine

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):  # 404, 405...: the same shape
        return JSONResponse({"error": e.detail}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception):  # a bug: logged, answered in JSON
        return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", PageFiles(directory=WEB), name="static")

    @app.api_route("/api/health", methods=["GET", "HEAD"])  # (HEAD: uptime checkers)
    async def health() -> dict[str, Any]:
        """The server is up: its model, detector, workers and live streams."""
        return {
            "status": "ok",
            "model": engine.recognizer.classifier.source,
            "backend": engine.recognizer.classifier.backend,
            "detector": engine.recognizer.detector_name,
            "workers": engine.workers,
            "photos": engine.photos,
            "max_photos": engine.max_photos,
            "streams": engine.streams,
        }

    @app.get("/api/model")
    async def model() -> dict[str, Any]:
        """The model card's headline figures, the detector and its license."""
        return engine.model_card()

    @app.post(
        "/api/predict",
        openapi_extra={
            "requestBody": {
                "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"image": {"type": "string", "format": "binary"}},
                            "required": ["image"],
                        }
                    },
                },
                "required": True,
            }
        },
    )
    async def predict(request: Request) -> Any:
        """Every face of a photo with its emotion: the face records of `fer.predict --json`
        (without its file and detector)."""
        content_type = request.headers.get("content-type", "")
        if why := refused(request.headers):
            raise RequestError(403, why)
        if engine.photos >= engine.max_photos:
            raise RequestError(
                503, f"the server is busy with {engine.photos} photos; send this one again shortly"
            )
        engine.photos += 1  # from its first byte: the bodies held in memory stay bounded
        try:
            try:
                body = await request.body()
            except ClientDisconnect:  # the client left mid-upload: nobody to answer
                return Response(status_code=400)
            except asyncio.CancelledError:  # the server stops (Ctrl-C) while the body comes
                return JSONResponse({"error": "the server is stopping"}, status_code=503)
            if content_type.lower().startswith("multipart/form-data"):
                body = await engine.run(multipart_field, body, content_type)
            # a client that leaves while its photo waits for a worker (a page's user picked
            # another, a script timed out) gets it skipped, its place freed for the next
            left = threading.Event()
            watcher = asyncio.create_task(note_leaving(request, left))
            try:
                return await engine.run(engine.predict, body, left)
            except ClientLeft:
                return Response(status_code=400)  # nobody to answer
            except RequestError as e:  # `curl -d @photo.jpg`, which drops the file's newlines
                # (and says the body is a form, as --data-binary does without -H: a body that
                # kept a newline or carriage return was sent whole)
                if (
                    e.status in (400, 415)
                    and content_type.lower().startswith(FORM_ENCODED)
                    and not (b"\n" in body or b"\r" in body)
                ):
                    e.message += "; send a file with curl --data-binary, not -d, which alters it"
                raise
            finally:
                watcher.cancel()
        except asyncio.CancelledError:  # ... or while the photo is read: the same answer
            return JSONResponse({"error": "the server is stopping"}, status_code=503)
        finally:
            engine.photos -= 1

    @app.websocket("/api/stream")
    async def stream(websocket: WebSocket):
        """Frames in (binary messages), faces out (one JSON message a frame)."""
        if why := refused(websocket.headers):
            await websocket.close(code=1008, reason=why[:120])  # a 403 handshake
            return
        await websocket.accept()
        if engine.streams >= MAX_STREAMS:
            await websocket.close(code=1013, reason=f"{MAX_STREAMS} streams are live; try later")
            return
        engine.streams += 1
        try:
            try:
                tracker = engine.recognizer.tracker(every=engine.every)
            except FerError as e:
                await websocket.close(code=1011, reason=str(e)[:120])
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STREAM_IDLE  # a frame read moves it on, nothing else
            while True:
                try:
                    wait = max(deadline - loop.time(), 0.0)
                    message = await asyncio.wait_for(websocket.receive(), wait)
                except asyncio.TimeoutError:  # a client that sends no frame keeps no place
                    await websocket.close(code=1000, reason=f"no frame for {STREAM_IDLE:g} s")
                    break
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:
                    await websocket.send_json({"error": "send frames as binary messages"})
                    continue
                try:
                    answer = await engine.run(engine.track, tracker, data, stream=True)
                except RequestError as e:
                    answer = {"error": e.message}
                await websocket.send_json(answer)
                if "error" not in answer:  # a frame read: the stream is live
                    deadline = loop.time() + STREAM_IDLE
        except WebSocketDisconnect:
            pass
        finally:
            engine.streams -= 1

    if allow_origins:  # their pages' posts: the preflight, and the answer theirs to read
        app.add_middleware(
            CORSMiddleware,
            allow_origins=allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
        )
    return BodyLimit(app, max_body, upload_timeout)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m fer.serve",
        description="Serve the emotion model: a page for the webcam and photos, and a JSON API.",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 makes the server reachable from other machines",
    )
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    add_model_options(p)
    add_face_options(p)
    add_photo_options(p)
    p.add_argument(
        "--workers",
        type=int,
        default=usable_cores(),
        help="inference threads for photos (photos read at once; live streams, up to 16, have "
        "a thread each)",
    )
    p.add_argument(
        "--every",
        type=int,
        default=2,
        help="live streams: find the faces on every Nth frame (the frames between reuse the boxes; "
        "each frame's faces are still read); 1: every frame",
    )
    p.add_argument("--max-body-mb", type=float, default=20, help="largest request body, MB")
    p.add_argument(
        "--upload-timeout",
        type=float,
        default=UPLOAD_TIMEOUT,
        help="seconds an upload may go without a byte before it gets 408 (its place for a photo "
        f"freed); past them, one that came at under {MIN_UPLOAD_RATE // 1024} KB/s on average "
        "gets 408 too",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=50,
        help="largest photo, by its header, megapixels (a live stream's frames: at most 8.3, "
        "a 3840x2160 frame's)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages of this site (https://example.org; '*': any) post photos and stream, as "
        "the server's own page does; repeat for more",
    )
    add_debug_flag(p)
    return p


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line error saying why there is none."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        hint = "; choose another with --port" if e.errno == errno.EADDRINUSE else ""
        raise FerError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = (args.max_body_mb, args.max_megapixels, args.upload_timeout)
    if min(args.workers, args.every) < 1 or not all(0 < x < math.inf for x in sizes):  # nan too
        raise FerError(
            "--workers, --every, --max-body-mb, --max-megapixels and --upload-timeout must be "
            "positive"
        )
    if not 0 <= args.port <= 65535:
        raise FerError(f"--port {args.port} is not a port: give one of 0-65535 (0: any free one)")
    for origin in args.allow_origin:  # as a browser sends it, or it matches no page
        if origin != "*" and not (split(origin).scheme and split(origin).netloc):
            raise FerError(
                f"--allow-origin {origin!r} is no origin: give its scheme and host, as "
                "https://example.org (or '*' for any)"
            )
    import uvicorn

    sock = bind(args.host, args.port)
    engine = Engine(
        args.model,
        detector=args.detector,
        backend=args.backend,
        min_face=args.min_face,
        align=not args.no_align,
        jitter=not args.no_jitter,
        workers=args.workers,
        max_pixels=args.max_megapixels * 1e6,
        every=args.every,
    )
    host, port = sock.getsockname()[:2]
    app = create_app(  # on loopback (the default): requests for a loopback host alone
        engine,
        int(args.max_body_mb * MB),
        args.upload_timeout,
        args.allow_origin,
        is_loopback(host),
    )
    shown = f"[{host}]" if ":" in host else host
    print(
        f"fer.serve: http://{shown}:{port}  ({engine.recognizer.classifier.source}, "
        f"{engine.recognizer.classifier.backend}, detector {args.detector}, {engine.workers} "
        "workers; Ctrl+C stops it)",
        flush=True,
    )
    if host in ("0.0.0.0", "::"):
        print(
            "fer.serve: listening on every interface: anyone who can reach this machine can use "
            "it, and browsers allow the camera only on https or localhost (an SSH tunnel, "
            "ssh -L 8000:localhost:8000, gives localhost)",
            file=sys.stderr,
        )
    # a frame over --max-body-mb closes the stream (1009); at most 4 frames wait in its queue
    # Ctrl-C stops it within 5 s even while a client holds a connection open (an upload that
    # never ends, say): uvicorn would wait for every connection to close
    config = uvicorn.Config(
        app,
        log_level="warning",
        ws_max_size=int(args.max_body_mb * MB),
        ws_max_queue=4,
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    from fer.common import run_cli

    run_cli(main)
