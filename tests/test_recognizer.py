"""The Python API (fer.EmotionRecognizer), and the model that travels with an installed package."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer import EmotionRecognizer, FaceEmotion
from fer.common import EMOTIONS, FerError
from fer.inference import SHIPPED, load_classifier
from fer.predict import main as predict
from fer.recognizer import ImageError, UndecodableImage, as_image
from tests.conftest import RowCounter, copy_without_parts, face, photo_with

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rec():
    return EmotionRecognizer()  # the shipped model, YuNet, aligned, the fastest backend


def test_every_kind_of_picture_gives_the_same_faces_as_fer_predict(
    rec, real_faces, tmp_path, capsys
):
    from PIL import Image

    bgr = photo_with(real_faces)
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), bgr)
    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    faces = rec.predict(path)
    assert len(faces) == 2 and all(isinstance(f, FaceEmotion) for f in faces)
    for same in (str(path), path.read_bytes(), bgr, rgb, gray):
        assert [f.to_dict() for f in rec.predict(same)] == [f.to_dict() for f in faces]
    with pytest.raises(ImageError, match="truncated or damaged PNG"):
        rec.predict(path.read_bytes()[:100])
    # PIL rounds its own conversion to gray a little differently from OpenCV's
    near = rec.predict(rgb.convert("L"))
    assert [f.box for f in near] == [f.box for f in faces]
    for a, b in zip(near, faces):
        assert np.allclose(
            list(a.probabilities.values()), list(b.probabilities.values()), atol=0.01
        )
    for f in faces:
        assert f.emotion == max(f.probabilities, key=f.probabilities.get)
        assert list(f.probabilities) == list(EMOTIONS)
        assert abs(sum(f.probabilities.values()) - 1) < 1e-4
        assert len(f.landmarks) == 5 and len(f.box) == 4
    assert sorted(f.box[0] for f in faces)[0] < 200 < sorted(f.box[0] for f in faces)[1]
    # fer.predict --json writes the same records, with the file and the detector
    out = tmp_path / "p.json"
    assert predict([str(path), "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [{k: v for k, v in r.items() if k not in ("file", "detector")} for r in records] == [
        f.to_dict() for f in faces
    ]
    assert "happy" in repr(faces[0]) or "surprise" in repr(faces[0])


def test_a_face_in_a_photo_is_read_from_nine_views_of_its_box_and_one_without_jitter(
    rec, real_faces, tmp_path
):
    """A found face's probabilities are the mean of the classifier's on its nine views
    (fer.faces.CROP_JITTER), cut independently here by crop_face from the moved and scaled
    box; without jitter (fer.predict --no-jitter), the classifier's on the centre crop."""
    from fer.faces import CROP_JITTER, CROP_SCALE, Face, crop_face, crop_transform, to_gray

    bgr = photo_with(real_faces)
    gray = to_gray(bgr)
    faces = rec.predict(bgr)
    found = rec.detector.detect(gray)
    assert [f.box for f in faces] == [f.box for f in found] and len(found) == 2
    scale = CROP_SCALE["yunet"]
    views = rec.crop(gray, found, jitter=True)  # (2, 9, 48, 48)
    means = rec.classifier.predict_proba(views.reshape(-1, 48, 48)).reshape(2, 9, -1).mean(1)
    assert np.allclose([list(f.probabilities.values()) for f in faces], means, atol=1e-5)
    for got, face_ in zip(faces, found):
        back = cv2.invertAffineTransform(crop_transform(face_)[0])[:, :2]
        views = []
        for dx, dy, side in CROP_JITTER:
            mx, my = back @ (dx * face_.box[2], dy * face_.box[2])
            box = (face_.box[0] + mx, face_.box[1] + my) + face_.box[2:]
            views.append(crop_face(gray, Face(box, face_.landmarks + (mx, my)), True, scale * side))
        mean = rec.classifier.predict_proba(np.stack(views)).mean(0)
        assert np.allclose(list(got.probabilities.values()), mean, atol=0.02)
        centre = rec.classifier.predict_proba(crop_face(gray, face_, True, scale))[0]
        assert not np.allclose(mean, centre, atol=0.005)  # the views do change the answer
        # and the answer is the views' mean, well closer to it than to the centre view's
        got = np.array(list(got.probabilities.values()))
        assert np.abs(got - mean).max() < 0.5 * np.abs(got - centre).max()
    plain = EmotionRecognizer(rec.classifier, jitter=False).predict(bgr)
    for got, face_ in zip(plain, found):
        centre = rec.classifier.predict_proba(crop_face(gray, face_, True, scale))[0]
        assert np.allclose(list(got.probabilities.values()), centre, atol=1e-5)
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), bgr)
    out = tmp_path / "p.json"
    assert predict([str(path), "--no-jitter", "--json", str(out)]) == 0
    assert [r["probabilities"] for r in json.loads(out.read_text())] == [
        f.to_dict()["probabilities"] for f in plain
    ]


def test_cropped_faces_are_classified_as_the_classifier_does(folder_data):
    rec = EmotionRecognizer(detector=None)
    faces = np.stack([face(k, 99 + k) for k in range(7)])
    expected = load_classifier(backend="auto").predict_proba(faces)
    for given in (faces, list(faces), faces[..., None]):
        got = rec.predict_faces(given)
        assert [f.box for f in got] == [None] * 7
        assert np.allclose([list(f.probabilities.values()) for f in got], expected, atol=1e-5)
    assert rec.predict_faces(faces[0])[0].emotion == EMOTIONS[int(expected[0].argmax())]
    # without a detector, predict takes the whole picture as one face, at any size
    big = cv2.resize(faces[3], (96, 96), interpolation=cv2.INTER_CUBIC)
    assert len(rec.predict(big)) == 1 and rec.predict(big)[0].box is None
    assert rec.predict_faces([]) == []


def test_pil_images_of_every_mode_and_single_channel_arrays_are_read(rec):
    from PIL import Image

    face48 = face(3, 5)
    expected = rec.predict_faces(face48)[0].to_dict()
    as_float = Image.fromarray(face48.astype(np.float32) / 255)  # mode F, 0..1
    as_int = Image.fromarray(face48.astype(np.int32))  # mode I, 0..255
    for given in (face48[..., None], Image.fromarray(face48), as_float, as_int):
        got = rec.predict_faces(given)
        assert len(got) == 1
        assert np.allclose(
            list(got[0].probabilities.values()), list(expected["probabilities"].values()), atol=2e-3
        )
    assert len(rec.predict_faces(Image.fromarray(face48).convert("LA"))) == 1
    # mode F of an 8-bit picture (whole numbers 0..255, or mostly above 1 within 0..255): the
    # 8-bit picture, as such a file is read; values of another scale are refused as an array of
    # them is
    for eight_bit in (face48.astype(np.float32), face48.astype(np.float32) + 0.3):
        assert rec.predict_faces(Image.fromarray(eight_bit))[0].to_dict() == expected
    with pytest.raises(ValueError, match="scaled to 0..1"):
        rec.predict_faces(Image.fromarray(face48.astype(np.float32) * 100))


def test_a_path_like_entry_and_a_big_endian_array_are_read(rec, real_faces, tmp_path):
    """Was: TypeError for os.scandir's entries (an os.PathLike that is not a Path), and "image
    arrays must be uint8, uint16 or float in 0..1, not >u2" for a 16-bit array in big-endian
    order, as some TIFF and FITS readers give."""
    photo = photo_with(real_faces)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    want = [f.to_dict() for f in rec.predict(tmp_path / "photo.png")]
    assert len(want) == 2
    (entry,) = os.scandir(tmp_path)
    assert [f.to_dict() for f in rec.predict(entry)] == want
    wide = photo.astype(np.uint16) * 257
    assert [f.to_dict() for f in rec.predict(wide.astype(">u2"))] == [
        f.to_dict() for f in rec.predict(wide)
    ]


def test_a_float_picture_resampled_a_little_past_0_1_is_read_clipped(rec):
    """Cubic resampling of a 0..1 picture overshoots both ends (-0.09..1.13 on a photo): was
    refused whole, with advice to divide by 255 that would have made it black."""
    picture = face(3, 5) / 255.0
    overshot = picture * 1.2 - 0.1
    got = rec.predict_faces(overshot)[0].probabilities
    assert got == rec.predict_faces(np.clip(overshot, 0, 1))[0].probabilities
    with pytest.raises(ValueError, match=r"scaled to 0..1 \(this one spans \d+\.\.\d+\)"):
        rec.predict_faces(face(3, 5).astype(np.float32))


@pytest.mark.parametrize(
    "image,error,message",
    [
        (3, TypeError, "expected a path, image bytes, a PIL image or a numpy array, not int"),
        (np.zeros((40, 40), np.int32), TypeError, "uint8, uint16 or float in 0..1"),
        (np.full((40, 40), 7.0), ValueError, "scaled to 0..1"),
        (np.zeros((40, 40, 2), np.uint8), ValueError, "is not H x W"),
        (np.zeros((1, 3000), np.uint8), ValueError, "3000x1 pixels is too small"),
        ("missing.jpg", FileNotFoundError, "no such file"),
        ("album", IsADirectoryError, "is a folder, not a picture: give one picture at a time"),
        # was OSError 'File name too long' quoting all of it (a data: URL, a file's text)
        ("data:image/png;base64," + "A" * 5000, FileNotFoundError, "data:image/png;base64,AAA"),
        ("https://example.com/a.jpg", FileNotFoundError, "reads files on this machine"),
    ],
)
def test_a_wrong_picture_is_a_clear_error(rec, image, error, message, tmp_path):
    (tmp_path / "album").mkdir()
    local = isinstance(image, str) and ":" not in image
    with pytest.raises(error, match=re.escape(message)) as raised:
        rec.predict(str(tmp_path / image) if local else image)
    assert len(str(raised.value)) < 400


def test_a_pil_image_that_cannot_be_read_is_an_undecodable_image(rec, tmp_path):
    """Was Pillow's own errors: OSError 'image file is truncated' (a path or bytes of the same
    file are an UndecodableImage) and a bare AssertionError for an image whose file was closed."""
    from PIL import Image

    photo = np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    body = cv2.imencode(".jpg", photo)[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(body[: len(body) * 3 // 4])  # its header whole
    with Image.open(tmp_path / "cut.jpg") as cut:
        with pytest.raises(UndecodableImage, match="truncated"):
            rec.predict(cut)
    (tmp_path / "whole.jpg").write_bytes(body)
    with Image.open(tmp_path / "whole.jpg") as closed:
        pass
    with pytest.raises(UndecodableImage, match="closed"):
        rec.predict(closed)


def test_a_pil_image_of_32_bit_integers_is_read_as_its_file_is(rec, tmp_path):
    """Was: a PIL image of mode I holding 24-bit values was clipped at 65535, all white (no
    face), where its file is brought to 8 bits by the range its values use."""
    from PIL import Image

    picture = np.ascontiguousarray(face(3, 5).astype(np.int32) << 16)  # 0..255 * 65536
    Image.fromarray(picture).save(tmp_path / "wide.tiff")
    with Image.open(tmp_path / "wide.tiff") as opened:
        assert opened.mode == "I"
        assert np.array_equal(as_image(opened), as_image(tmp_path / "wide.tiff"))
    assert as_image(tmp_path / "wide.tiff").max() > 200  # not white: the face's own values
    small = Image.fromarray(face(3, 5).astype(np.int32) * 257)  # 16-bit values: kept as 16 bits
    assert np.array_equal(as_image(small), face(3, 5).astype(np.uint16) * 257)


def test_an_undecodable_file_is_a_fer_error(rec, tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(FerError, match="notes.jpg: not a readable image"):
        rec.predict(tmp_path / "notes.jpg")


def test_a_header_claiming_more_pixels_than_opencv_decodes_is_an_image_error(rec, tmp_path):
    """Was: OpenCV raised cv2.error for it (neither an ImageError nor a ValueError), from a file
    and from its bytes alike."""
    bmp = bytearray(cv2.imencode(".bmp", np.full((20, 30, 3), 128, np.uint8))[1].tobytes())
    bmp[22:26] = (2_000_000).to_bytes(4, "little")  # the height: 30 x 2,000,000 pixels
    (tmp_path / "tall.bmp").write_bytes(bmp)
    for picture in (tmp_path / "tall.bmp", bytes(bmp)):
        with pytest.raises(UndecodableImage, match="header claiming 30x2000000 pixels"):
            rec.predict(picture)
    # a damaged file OpenCV would decode whole, of more pixels than Pillow opens: damaged
    import struct
    import zlib

    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 15_000, 15_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    with pytest.raises(UndecodableImage, match="is a truncated or damaged PNG file"):
        rec.predict(png + bytes(100))


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(FerError, match="unknown tta"):
        EmotionRecognizer(tta="rotate")
    with pytest.raises(FerError, match="unknown detector"):
        EmotionRecognizer(detector="mtcnn")
    with pytest.raises(FerError, match="does not exist"):
        EmotionRecognizer(tmp_path / "nothing")
    with pytest.raises(FerError, match="needs a face detector"):
        EmotionRecognizer(detector=None).tracker()
    rec = EmotionRecognizer()
    for options in ({"smooth": 7.5}, {"every": 1.5}, {"smooth": True}):  # was a TypeError later
        with pytest.raises(FerError, match="smooth and every must be whole numbers from 1"):
            rec.tracker(**options)


def test_a_tracker_averages_each_face_over_its_last_frames(rec, real_faces):
    """Each face's probabilities are averaged over its last `smooth` frames. The shipped model is
    an ensemble that averages each face with its mirror image: when frames are averaged, a frame
    runs one member on the face or on its mirror, in turn (one of its six pieces; all of them on
    a face's first frame), and each piece weighs the same, averaged over the last max(smooth, 6)
    frames, which hold every piece, so a still face gets the model's own answer on every frame;
    with smooth=1, the whole model every frame."""
    from fer.faces import make_detector

    def probs(faces):
        return np.array([list(f.probabilities.values()) for f in faces])

    detector = make_detector("yunet")  # what a tracker looks with

    def piece(frame, view):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return rec.classify(rec.crop(gray, detector.detect(gray)), *view)[0]

    views = rec.classifier.views
    n = len(views)
    assert n == 6 and {side for side, _ in views} == {"face", "mirror"}
    still = photo_with(real_faces[:1], size=220)
    whole = probs(rec.tracker(smooth=1).update(still))
    assert np.allclose(whole, np.mean([piece(still, v) for v in views], 0), atol=1e-5)
    for smooth in (2, 5):
        tracker = rec.tracker(smooth=smooth)
        for _ in range(10):
            assert np.allclose(probs(tracker.update(still)), whole, atol=1e-5)

    # a face that changes: each piece averaged over the last max(smooth, 6) frames, which hold
    # every piece (the face's first frame ran them all)
    frames = [photo_with([f], size=200 + 4 * i) for i, f in enumerate(real_faces * 10)]
    raw = [rec.tracker(smooth=1).update(f) for f in frames]
    ran = [
        {v: piece(f, v) for v in (views if i == 0 else [views[i % n]])}
        for i, f in enumerate(frames)
    ]
    for smooth, window in ((3, 6), (10, 10)):
        tracker = rec.tracker(smooth=smooth)
        assert tracker.window == window
        for i, frame in enumerate(frames):
            (smoothed,) = tracker.update(frame)
            last = ran[max(0, i - window + 1) : i + 1]
            means = [np.mean([r[v] for r in last if v in r], 0) for v in views]
            assert np.allclose(probs([smoothed]), np.mean(means, 0), atol=1e-5), (smooth, i)
            assert smoothed.box == raw[i][0].box
    # a face close to the camera beside a smaller one: both found (the close one on the smaller
    # copy, which the video detector looks at when the frame size leaves a face too large)
    frame = photo_with(real_faces[:1], 640, 480, 300, x=20, y=90)
    frame[100:210, 470:580] = cv2.resize(real_faces[1], (110, 110))[..., None]
    boxes = [f.box for f in rec.tracker(min_face=40).update(frame)]
    assert len(boxes) == 2, boxes
    # the detector runs every `every` frames; its faces are reused in between
    slow = rec.tracker(every=2)
    moved = [slow.update(photo_with(real_faces[:1], size=s))[0].box for s in (200, 260)]
    assert moved[0] == moved[1]


def test_a_tracker_runs_one_row_of_one_member_a_face_and_a_model_without_mirror_always_its_own_view(
    real_faces, tmp_path
):
    """Counted at onnxruntime: a face's first frame and one round of the pieces after it (seven
    frames for the shipped ensemble of three members, each on the face and its mirror) run each
    member's graph on four rows (the face and its mirror on the face's first frame, then one a
    frame, member after member) and the whole ensemble's graph on none; with smooth=1, the whole
    graph on both views every frame. A model that does not average mirror images is run as it is
    on every frame (never on the mirror image alone)."""
    from fer.faces import make_detector

    classifier = load_classifier(backend="onnx")
    parts, pieces = classifier.parts, len(classifier.views)
    assert parts > 1 and pieces == 2 * parts
    classifier.session = whole = RowCounter(classifier.session)
    classifier.load_parts()  # each member's graph, made before a video's first frame
    classifier.part_sessions = [RowCounter(session) for session in classifier.part_sessions]
    still = photo_with(real_faces[:1], size=220)
    tracker = EmotionRecognizer(classifier).tracker(smooth=5)
    for _ in range(1 + pieces):
        tracker.update(still)
    assert whole.rows == []
    assert [classifier.part_sessions[p].rows for p in range(parts)] == [[1, 1, 1, 1]] * parts
    rec_whole = EmotionRecognizer(classifier)
    (face,) = rec_whole.tracker(smooth=1).update(still)
    whole_still = list(face.probabilities.values())
    assert whole.rows == [2]
    # a second face comes in beside a tracked one: only it runs the other pieces, and it
    # gets the model's answer on its first frame (the first face, found a pixel apart beside it,
    # keeps its own track: about the model's answer, not the newcomer's)
    pair = photo_with(real_faces, size=220)
    answers = {
        f.box: list(f.probabilities.values()) for f in rec_whole.tracker(smooth=1).update(pair)
    }
    tracker = EmotionRecognizer(classifier).tracker(smooth=5)
    for _ in range(4):  # pieces 0 to 3, the first frame all of them
        (alone,) = tracker.update(still)
    assert np.allclose(list(alone.probabilities.values()), whole_still, atol=1e-5)
    for counter in classifier.part_sessions:
        counter.rows.clear()
    faces = tracker.update(pair)  # piece 4 (of part 2) on both faces, then the newcomer's rest
    member = classifier.views[4][1]
    expected = [[2, 1] if p == member else [1, 1] for p in range(parts)]
    assert [classifier.part_sessions[p].rows for p in range(parts)] == expected
    assert {f.box for f in faces} == set(answers)
    old, new = sorted(faces, key=lambda f: f.box[0])
    assert np.allclose(list(new.probabilities.values()), answers[new.box], atol=1e-5)
    assert np.allclose(list(old.probabilities.values()), answers[old.box], atol=0.02)
    # the two faces' answers differ by far more than those tolerances (each is its own face's)
    assert np.abs(np.subtract(answers[old.box], answers[new.box])).max() > 0.2

    # the shipped files copied without the members' graphs: the whole model, one side a frame
    whole_only = load_classifier(copy_without_parts(SHIPPED, tmp_path / "bare"), backend="onnx")
    assert whole_only.parts == 1 and whole_only.views == [("face", None), ("mirror", None)]
    tracker = EmotionRecognizer(whole_only).tracker(smooth=5)
    for _ in range(3):
        (face,) = tracker.update(still)
        assert np.allclose(list(face.probabilities.values()), whole_still, atol=1e-5)

    plain = load_classifier(backend="onnx")
    plain.mirror = False  # as a model that sees each face once, e.g. a single network
    rec = EmotionRecognizer(plain)
    gray = cv2.cvtColor(still, cv2.COLOR_BGR2GRAY)
    crops = rec.crop(gray, make_detector("yunet").detect(gray))  # as a tracker finds the face
    own, mirrored = rec.classify(crops)[0], rec.classify(crops[..., ::-1])[0]
    assert np.abs(own - mirrored).max() > 1e-3
    tracker = rec.tracker(smooth=3)
    for _ in range(4):
        (face,) = tracker.update(still)
        assert np.allclose(list(face.probabilities.values()), own, atol=1e-5)


def test_a_frame_of_another_size_is_looked_at_afresh(rec, real_faces):
    """A stream whose frames change size (a phone turned, a camera that changed its mode) has its
    faces found again on the first frame of the new size, with the smallest face for that size.
    (Was: the last frame's boxes, in another picture's coordinates, until the next detection,
    and the smallest face of the first frame's size for ever.)"""
    from fer.faces import iou, video_min_face

    tracker = rec.tracker(every=10)
    big = photo_with(real_faces[:1], 1280, 960, size=220, x=900, y=600)
    (first,) = tracker.update(big)
    assert tracker.min_face == video_min_face(960, 1280)
    small = photo_with(real_faces[:1], 320, 240, size=110, x=30, y=40)
    (second,) = tracker.update(small)
    assert iou(second.box, (30, 40, 110, 110)) > 0.4, second.box
    assert tracker.min_face == video_min_face(240, 320) < video_min_face(960, 1280)
    # a size given by the caller stays as it was given
    fixed = rec.tracker(every=10, min_face=50)
    fixed.update(big)
    fixed.update(small)
    assert fixed.min_face == 50


class FailsOnce:
    """An onnxruntime session whose first run fails (a member's graph that could not run)."""

    def __init__(self, session):
        self.session, self.get_inputs, self.armed = session, session.get_inputs, True

    def run(self, names, feed):
        if self.armed:
            self.armed = False
            raise FerError("the graph could not run")
        return self.session.run(names, feed)


def test_a_tracker_gives_each_face_its_own_track_and_a_face_that_moved_far_a_new_one(rec):
    """Faces take the last frame's tracks in order of overlap across all of them (was: in the
    detector's order, so a face that moved toward its neighbour's place, found first, took the
    neighbour's track and history, and the neighbour started afresh); a track goes to one face
    only, and a box overlapping its last place by 0.3 or less is a new face."""
    from fer.faces import Face

    class Placed:  # a detector that finds the boxes it is given, in their order
        name, min_face, boxes = "yunet", 1, []

        def detect(self, gray):
            return [Face(box, None, 0.9) for box in self.boxes]

    tracker = rec.tracker(smooth=5)
    tracker.detector, tracker._min_face_by_frame, tracker.min_face = Placed(), False, 1
    frame = np.random.default_rng(0).integers(0, 255, (480, 640), dtype=np.uint8)

    def step(*boxes):
        Placed.boxes = list(boxes)
        tracker.update(frame)
        return [t.frames for t in tracker._tracks]

    left, right = (100, 100, 150, 150), (205, 100, 150, 150)
    for _ in range(3):
        history = step(left, right)
    # the left face, found first, moved toward the right one's place: it overlaps that track
    # more (0.60) than its own (0.38), but the right face overlaps it most (0.54 against 0.00)
    moved = step((167, 100, 150, 150), (250, 100, 150, 150))
    assert [len(h) for h in moved] == [4, 4]
    assert moved[0][0] is history[0][0] and moved[1][0] is history[1][0]
    # two faces over one track: the one overlapping it more keeps it, the other is new
    shared = step((167, 100, 150, 150), (150, 100, 150, 150))  # (0.80 with it, 0.20 the other)
    assert [len(h) for h in shared] == [5, 1] and shared[0][0] is history[0][0]
    # overlapping its last place by 0.3 or less: a new face
    far = step((248, 100, 150, 150))  # IoU 0.299 with the first, 0.21 with the second
    assert [len(h) for h in far] == [1]
    near = step((248 - 81 + 80, 100, 150, 150))  # 0.987 with it
    assert [len(h) for h in near] == [2]


def test_a_frame_that_fails_part_way_leaves_the_tracker_as_it_was(real_faces):
    """A frame whose classification fails (here: a member's graph, on a newcomer's first frame)
    raises, and the next frames go on as if it had not come: a face tracked before it, absent
    from it, keeps every piece in its window. (Was: the rotation had moved on, and that face's
    window lacked a piece: KeyError.)"""

    classifier = load_classifier(backend="onnx")
    tracker = EmotionRecognizer(classifier).tracker(smooth=5)
    still = photo_with(real_faces[:1], size=220)
    (face,) = tracker.update(still)
    expected = list(face.probabilities.values())
    for _ in range(8):
        tracker.update(still)
    last = classifier.parts - 1  # a member the newcomer's first frame runs
    classifier.part_sessions[last] = FailsOnce(classifier.part_sessions[last])
    with pytest.raises(FerError, match="could not run"):
        tracker.update(photo_with(real_faces[1:], size=220, x=500))  # only a newcomer
    for _ in range(8):
        (face,) = tracker.update(still)
        assert np.allclose(list(face.probabilities.values()), expected, atol=1e-5)


def test_a_frame_that_fails_part_way_keeps_the_tracks_of_the_faces_it_held(real_faces):
    """A frame holding a tracked face and a newcomer, whose classification fails on the
    newcomer's first frame, leaves the tracker as a tracker that never saw it: the tracked face
    keeps its window. (Was: its track was taken out of the tracks before the failure, so it
    started afresh, and the next frames' answers were not smoothed over the frames before.)"""

    classifier = load_classifier(backend="onnx")
    before = [photo_with(real_faces[:1], size=220)] * 3  # one face, then another in its place
    after = [photo_with(real_faces[1:], size=220)] * 3
    twin = EmotionRecognizer(classifier).tracker(smooth=5)
    want = [twin.update(frame)[0].probabilities for frame in before + after][len(before) :]
    tracker = EmotionRecognizer(classifier).tracker(smooth=5)
    for frame in before:
        tracker.update(frame)
    last = classifier.parts - 1  # a member the newcomer's first frame runs, not the frame's own
    assert classifier.views[len(before) % len(classifier.views)][1] != last
    classifier.part_sessions[last] = FailsOnce(classifier.part_sessions[last])
    with pytest.raises(FerError, match="could not run"):
        tracker.update(photo_with(real_faces, size=220))  # the face tracked, and a newcomer
    got = [tracker.update(frame)[0].probabilities for frame in after]
    assert got == want
    assert (
        got[0] != EmotionRecognizer(classifier).tracker(smooth=5).update(after[0])[0].probabilities
    )


def test_the_readme_python_example_runs_as_written(real_faces, tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block, "the README has no ```python example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 5 and "photo.jpg" in code
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("photo.jpg", photo_with(real_faces))
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert len(printed.strip().splitlines()) == 2
    assert any(e in printed for e in EMOTIONS)


def test_an_installed_wheel_carries_the_model(real_faces, tmp_path):
    """Built as a wheel and installed without dependencies into a folder of its own, fer finds its
    model from any directory: through the API and through fer-predict. (Was: 'model
    .../site-packages/checkpoints does not exist'.)"""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("fer", "checkpoints"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path)]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.startswith("fer_lightning-")  # `pip install fer` is another project
    names = zipfile.ZipFile(wheel).namelist()
    shipped = json.loads((REPO / "checkpoints" / "model.json").read_text())
    for part in shipped["onnx_parts"]:  # what video runs, one member a frame
        assert f"fer/checkpoints/{part['file']}" in names
    assert "fer/checkpoints/model.safetensors" in names
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cv2.imwrite(str(elsewhere / "photo.jpg"), photo_with(real_faces))
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "import fer; from fer import EmotionRecognizer; r = EmotionRecognizer(); "
        "print(fer.__file__); print(r.classifier.source); print(len(r.predict('photo.jpg')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    module, model, n = run.stdout.split()
    assert module.startswith(str(site)) and model.startswith(str(site / "fer" / "checkpoints"))
    assert n == "2"
    cli = subprocess.run(
        [str(site / "bin" / "fer-predict"), "photo.jpg", "--json", "-"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert len(json.loads(cli.stdout)) == 2


@pytest.mark.parametrize("shape", [(10, 12), (16, 12), (9, 8), (12, 40)])
def test_a_tiny_picture_has_no_face_rather_than_an_error(shape):
    """YuNet gives rows of garbage (infinities, boxes off the picture, with a score of 1) on some
    tiny inputs: they are no face. (Was: an OverflowError, or a face in a black picture.)"""
    from fer import EmotionRecognizer

    assert EmotionRecognizer().predict(np.zeros(shape, np.uint8)) == []
