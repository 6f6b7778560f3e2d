// fer's page: the webcam's frames go to the server over a WebSocket (/api/stream) and come back
// as faces, drawn over the video; a photo goes to /api/predict and is drawn with its faces.
// No libraries, nothing fetched from elsewhere: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
let card = { classes: [], colors: {} };  // the model card from /api/model (class names, colours)
const IN_FLIGHT = 2;  // frames sent and not yet answered: keeps browser and server both busy
const FRAME_WIDTH = 640;  // frames are sent at most this wide

function percent(p) { return `${Math.round(p * 100)}%`; }

function setStatus(el, text, error = false) {
  el.textContent = text;
  el.classList.toggle("error", error);
}

async function loadModel() {
  try {
    const res = await fetch("/api/model");
    card = await res.json();
    const acc = card.publictest_accuracy;
    const clean = card.publictest_accuracy_without_leaked;
    const parts = [
      card.arch === "ensemble" ? `an ensemble of ${card.members} CNNs` : card.arch,
      card.parameters ? `${(card.parameters / 1e6).toFixed(1)} M parameters` : null,
      acc ? `${(acc * 100).toFixed(1)}% on FER-2013 PublicTest` : null,
      clean ? `${(clean * 100).toFixed(1)}% without the faces leaked from Training` : null,
      `run by ${card.backend}`,
    ].filter(Boolean);
    $("model").textContent = `Model: ${parts.join(", ")}. Faces found by ${card.detector_license}.`;
  } catch (e) {
    $("model").textContent = `The model card could not be read: ${e}`;
  }
}

// Where a face's panel of `size` ([width, height]) starts, `gap` from its box and its top at
// `top`, as fer.annotate's _panel_x places it: beside the face, right where it fits the picture,
// else left, on the side that covers the least of the other faces' boxes (right where they tie).
function panelX(width, box, size, top, others, gap) {
  const [x, , w] = box;
  const sides = [x + w + gap, x - size[0] - gap];
  const inside = sides.filter((bx) => bx >= 0 && bx + size[0] <= width);
  if (!inside.length) return sides[0] + size[0] <= width ? sides[0] : Math.max(sides[1], 0);
  const covered = (bx) => others.reduce((sum, [ox, oy, ow, oh]) =>
    sum + Math.max(0, Math.min(bx + size[0], ox + ow) - Math.max(bx, ox)) *
      Math.max(0, Math.min(top + size[1], oy + oh) - Math.max(top, oy)), 0);
  return inside.reduce((best, bx) => (covered(bx) < covered(best) ? bx : best));
}

// One face drawn as fer.annotate draws it: a box in the emotion's colour, the emotion on a filled
// label, and every emotion's probability as bars on a dark panel beside the face, on the side
// where it covers the least of the picture's other `faces`.
// `width`: the right edge of the picture in the context's units (the panel stays inside it, not
// in a letterbox beside it).
function drawFace(ctx, face, sx, sy, unit, width = ctx.canvas.width, faces = []) {
  const scaled = (b) => [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy];
  const [x, y, w, h] = scaled(face.box);
  const color = card.colors[face.emotion] || "#ffffff";
  ctx.lineWidth = Math.max(2, 2 * unit);
  ctx.strokeStyle = color;
  ctx.strokeRect(x, y, w, h);
  const size = Math.round(16 * unit);
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  const label = `${face.emotion} ${percent(face.confidence)}`;
  const lw = ctx.measureText(label).width + 10 * unit;
  const ly = y - size - 8 * unit >= 0 ? y - size - 8 * unit : y + h;
  ctx.fillStyle = color;
  ctx.fillRect(x, ly, lw, size + 8 * unit);
  ctx.fillStyle = "#111";
  ctx.textBaseline = "top";
  ctx.fillText(label, x + 5 * unit, ly + 4 * unit);
  const rows = card.classes.length ? card.classes : Object.keys(face.probabilities);
  const row = Math.round(14 * unit), panelW = 150 * unit, panelH = rows.length * row + 8 * unit;
  const others = faces.filter((f) => f !== face && f.box).map((f) => scaled(f.box));
  const px = panelX(width, [x, y, w, h], [panelW, panelH], y, others, 6 * unit);
  ctx.fillStyle = "rgba(20, 20, 20, 0.75)";
  ctx.fillRect(px, y, panelW, panelH);
  ctx.font = `${Math.round(11 * unit)}px system-ui, sans-serif`;
  rows.forEach((name, i) => {
    const p = face.probabilities[name] || 0, ry = y + 4 * unit + i * row;
    ctx.fillStyle = "#ddd";
    ctx.fillText(name, px + 4 * unit, ry);
    ctx.fillStyle = card.colors[name] || "#aaa";
    ctx.fillRect(px + 62 * unit, ry + 2 * unit, Math.max(1, p * (panelW - 68 * unit)), row - 5 * unit);
  });
}

// The faces as a list: the top emotion, then every probability as a bar.
function listFaces(ul, faces) {
  ul.replaceChildren(...faces.map((face, i) => {
    const li = document.createElement("li");
    const top = document.createElement("div");
    top.className = "top";
    top.textContent = `${faces.length > 1 ? `face ${i + 1}: ` : ""}${face.emotion} ${percent(face.confidence)}`;
    const bars = document.createElement("div");
    bars.className = "bars";
    for (const name of card.classes.length ? card.classes : Object.keys(face.probabilities)) {
      const p = face.probabilities[name] || 0;
      const label = document.createElement("span");
      label.textContent = name;
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("i");
      fill.style.width = percent(p);
      fill.style.background = card.colors[name] || "#aaa";
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "p";
      value.textContent = percent(p);
      bars.append(label, bar, value);
    }
    li.append(top, bars);
    li.dataset.emotion = face.emotion;
    return li;
  }));
}

// ---- the camera -------------------------------------------------------------------------------
// each camera frame goes to the server at most once: where the browser says when the video shows
// a new frame (requestVideoFrameCallback), a frame already sent waits for the next (the server
// answers faster than a camera films), or for FRAME_WAIT_MS if the browser stops saying (some do
// for a video out of view); `shown` is the number of the frame the video shows and `shownAt` when
// the browser said so, `sent` the number of the last frame sent
const FRAME_WAIT_MS = 500;
// no answer for STALL_MS (a server stalled or far too busy): the last faces and frame rate are
// taken off the video, and the page says it waits
const STALL_MS = 3000;
// a page out of sight (another tab, a minimised window) pauses its live session, also one it was
// starting: the browser stops showing the camera's frames and slows the page's timers, so what it
// would send is stale and sparse (the server closes a stream that sends nothing for a minute);
// shown again, it goes on
let pausedHidden = false;
const PAUSED = "Paused while the page is out of sight: it goes on when shown.";
const IDLE = "Frames go to this server only and are not stored.";  // as the page starts
const LIVE = "Live: frames go to this server only and are not stored.";
const live = {
  running: false, ws: null, stream: null, inFlight: 0, answered: [], grab: null,
  shown: -1, shownAt: 0, sent: null, retry: null, stall: null,
};

function clearLive() {
  const overlay = $("overlay");
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  $("live-faces").replaceChildren();
  $("fps").textContent = "– frames/s";
  delete $("fps").dataset.fps;
  $("latency").textContent = "";
}

function watchAnswers(ws) {
  clearTimeout(live.stall);
  live.stall = setTimeout(() => {
    if (ws !== live.ws || !live.running) return;
    clearLive();
    live.answered = [];
    setStatus($("live-status"), `Waiting for the server: no answer for ${STALL_MS / 1000} s.`, true);
  }, STALL_MS);
}

function watchFrames(video, stream) {
  if (!video.requestVideoFrameCallback) return;
  video.requestVideoFrameCallback((now, meta) => {
    if (live.stream !== stream) return;  // a stopped session's callbacks end with it
    watchFrames(video, stream);
    live.shown = meta.presentedFrames;
    live.shownAt = performance.now();
    if (live.running) sendFrame();  // a new frame: sent if fewer than IN_FLIGHT are out
  });
}

async function startCamera() {
  const status = $("live-status");
  if (!window.isSecureContext || !navigator.mediaDevices) {
    setStatus(status, "Browsers give the camera only to pages on https or localhost: open this page " +
      "as http://localhost:PORT (from another machine, through ssh -L PORT:localhost:PORT).", true);
    return;
  }
  $("start").disabled = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
    const video = $("video");
    video.srcObject = stream;
    await video.play();
  } catch (e) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    setStatus(status, `No camera: ${e.name === "NotAllowedError" ? "permission was refused" : e.message || e.name}`, true);
    $("start").disabled = false;
    return;
  }
  if (document.visibilityState === "hidden") {  // hidden while the camera was being opened
    stream.getTracks().forEach((t) => t.stop());
    $("video").srcObject = null;
    $("start").disabled = false;
    pausedHidden = true;
    setStatus(status, PAUSED);
    return;
  }
  live.stream = stream;
  live.shown = -1;
  live.shownAt = performance.now();
  live.sent = null;
  watchFrames($("video"), stream);
  live.grab = live.grab || document.createElement("canvas");
  live.running = true;
  live.inFlight = 0;
  live.answered = [];
  $("stop").disabled = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/stream`);
  live.ws = ws;
  watchAnswers(ws);  // a server that takes the connection and never opens it is waited for too
  ws.binaryType = "arraybuffer";
  // every handler checks that its socket is still the live one: a stopped session's late events
  // must not touch the next one
  let opened = false;  // a stream that never opened: the server was not reached
  ws.onopen = () => {
    if (ws !== live.ws) return;
    opened = true;
    watchAnswers(ws);
    setStatus(status, LIVE);
    for (let i = 0; i < IN_FLIGHT; i++) sendFrame();
  };
  ws.onmessage = (event) => {
    if (ws !== live.ws) return;
    live.inFlight -= 1;
    watchAnswers(ws);
    const answer = JSON.parse(event.data);
    if (answer.error) {
      setStatus(status, answer.error, true);
      // the last good frame's faces are not this frame's: no box stays over the moving video
      const overlay = $("overlay");
      overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
      $("live-faces").replaceChildren();
    } else {
      if (status.classList.contains("error")) setStatus(status, LIVE);
      showFrame(answer);
    }
    sendFrame();
  };
  ws.onclose = (event) => {
    if (ws !== live.ws || !live.running) return;
    stopCamera(opened ? `The server closed the stream${event.reason ? `: ${event.reason}` : ""}.`
      : `Could not open the stream: the server at ${location.host} is not running, or it refused ` +
        "this page (its log says why; see --allow-origin).");
  };
}

function sendFrame() {
  const video = $("video"), ws = live.ws;
  if (!live.running || ws.readyState !== WebSocket.OPEN || live.inFlight >= IN_FLIGHT) return;
  if (!video.videoWidth) { setTimeout(sendFrame, 50); return; }
  const waited = performance.now() - live.shownAt;
  if (video.requestVideoFrameCallback && live.sent === live.shown) {
    if (waited < FRAME_WAIT_MS) {  // sent already: the next frame sends, or this timer
      if (!live.retry) live.retry = setTimeout(() => { live.retry = null; sendFrame(); }, FRAME_WAIT_MS);
      return;
    }
    live.shownAt = performance.now();  // sent again after a wait: the next resend waits as long
  } else live.sent = live.shown;
  const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
  live.grab.width = Math.round(video.videoWidth * scale);
  live.grab.height = Math.round(video.videoHeight * scale);
  live.grab.getContext("2d").drawImage(video, 0, 0, live.grab.width, live.grab.height);
  live.inFlight += 1;
  live.grab.toBlob((blob) => {
    if (ws === live.ws && live.running && ws.readyState === WebSocket.OPEN) ws.send(blob);
    else if (ws === live.ws) live.inFlight -= 1;
  }, "image/jpeg", 0.8);
}

function showFrame(answer) {
  const now = performance.now();
  live.answered.push(now);
  while (live.answered.length && now - live.answered[0] > 2000) live.answered.shift();
  if (live.answered.length > 1) {
    const fps = (live.answered.length - 1) / ((now - live.answered[0]) / 1000);
    $("fps").textContent = `${fps.toFixed(1)} frames/s`;
    $("fps").dataset.fps = fps.toFixed(2);
  }
  $("latency").textContent = `server ${answer.ms} ms a frame`;
  const overlay = $("overlay"), video = $("video");
  // the overlay covers the video element; the video is letterboxed inside it (object-fit: contain).
  // Drawn in CSS pixels on a canvas of the screen's own (two or three to a CSS pixel on most
  // phones and laptops), so that its lines and text are as sharp as the page's.
  const dpr = window.devicePixelRatio || 1, cw = overlay.clientWidth, ch = overlay.clientHeight;
  if (overlay.width !== Math.round(cw * dpr) || overlay.height !== Math.round(ch * dpr)) {
    overlay.width = Math.round(cw * dpr);  // resizing a canvas reallocates it: only when it changed
    overlay.height = Math.round(ch * dpr);
  }
  const fit = Math.min(cw / answer.width, ch / answer.height);
  const ox = (cw - answer.width * fit) / 2, oy = (ch - answer.height * fit) / 2;
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  ctx.save();
  ctx.scale(dpr, dpr);
  ctx.translate(ox, oy);
  ctx.beginPath();  // nothing drawn in the letterbox around the picture (a panel near its edge)
  ctx.rect(0, 0, answer.width * fit, answer.height * fit);
  ctx.clip();
  const unit = Math.max(0.6, (answer.width * fit) / 640);
  for (const face of answer.faces) drawFace(ctx, face, fit, fit, unit, answer.width * fit, answer.faces);
  ctx.restore();
  listFaces($("live-faces"), answer.faces);
  video.dataset.frames = String(Number(video.dataset.frames || 0) + 1);
}

// `why`: what stopped the session, said as an error; without it, the idle text (not "Live: ...")
function stopCamera(why = null) {
  live.running = false;
  if (live.ws) live.ws.close();
  live.ws = null;
  if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
  live.stream = null;
  clearTimeout(live.stall);
  clearLive();
  if (why) setStatus($("live-status"), why, true);
  else setStatus($("live-status"), IDLE);
  $("start").disabled = false;
  $("stop").disabled = true;
}

// ---- a photo ----------------------------------------------------------------------------------
let photoRequest = 0;  // the latest photo picked: an earlier one answered late is not shown
let photoUpload = null;  // its upload, cancelled when another photo is picked (the server then
// skips the earlier one rather than read it for nobody)

async function predictPhoto(file) {
  const status = $("photo-status"), request = ++photoRequest;
  setStatus(status, `Reading ${file.name}…`);
  $("photo-faces").replaceChildren();
  const shownBefore = $("photo-canvas");  // the last photo and its faces are not this one's
  shownBefore.width = 0;
  shownBefore.height = 0;
  let answer;
  if (photoUpload) photoUpload.abort();
  const upload = new AbortController();
  photoUpload = upload;
  try {
    const res = await fetch("/api/predict", {
      method: "POST",
      body: file,
      headers: { "Content-Type": file.type || "application/octet-stream" },
      signal: upload.signal,
    });
    const text = await res.text();
    if (request !== photoRequest) return;
    try { answer = JSON.parse(text); } catch (e) { answer = { error: `${res.status} ${res.statusText}` }; }
    if (!res.ok) { setStatus(status, `${file.name}: ${answer.error || res.statusText}`, true); return; }
  } catch (e) {
    if (request === photoRequest) setStatus(status, `${file.name}: the server did not answer (${e.message})`, true);
    return;
  }
  let bitmap = null;  // null: a format the server reads and this browser does not show (TIFF)
  try {
    // the browser turns the photo upright by its EXIF orientation, as the server does
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (e) { /* drawn on grey below */ }
  if (request !== photoRequest) { if (bitmap) bitmap.close(); return; }
  // a picture this browser does not turn upright (a WebP's EXIF) would be drawn stretched, under
  // boxes that miss its faces: grey instead
  const turned = bitmap && (bitmap.width !== answer.width || bitmap.height !== answer.height);
  if (turned) { bitmap.close(); bitmap = null; }
  const canvas = $("photo-canvas"), ctx = canvas.getContext("2d");
  canvas.width = answer.width;
  canvas.height = answer.height;
  const shown = bitmap !== null;
  if (shown) {
    ctx.drawImage(bitmap, 0, 0, answer.width, answer.height);
    bitmap.close();  // its pixels freed now, not whenever the garbage is collected
  } else {
    ctx.fillStyle = "#333";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  const unit = Math.max(0.6, answer.width / 640);
  for (const face of answer.faces) drawFace(ctx, face, 1, 1, unit, canvas.width, answer.faces);
  listFaces($("photo-faces"), answer.faces);
  const n = answer.faces.length;
  setStatus(status, `${file.name}: ${answer.width}x${answer.height}, ` +
    `${n ? `${n} face${n > 1 ? "s" : ""}` : "no face found"}` +
    `${shown ? "" : turned ? " (this browser does not show this photo upright)"
      : " (this browser cannot show the photo itself)"}`);
}

function setUpPhoto() {
  const drop = $("drop"), input = $("photo-input");
  input.addEventListener("change", () => {
    if (input.files.length) predictPhoto(input.files[0]);
    input.value = "";  // the same file picked again (after a 503, say) is a change too
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, () => drop.classList.add("over"));
  }
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  // a photo dropped anywhere on the page is read: the browser would otherwise open the file in
  // place of the page, ending a live session
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) predictPhoto(file);
  });
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden" && live.running) {
    stopCamera();
    pausedHidden = true;
    setStatus($("live-status"), PAUSED);
  } else if (document.visibilityState === "visible" && pausedHidden) {
    pausedHidden = false;
    startCamera();
  }
});
$("start").addEventListener("click", startCamera);
$("stop").addEventListener("click", () => { pausedHidden = false; stopCamera(); });
setUpPhoto();
loadModel();
