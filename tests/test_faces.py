"""Face detectors (YuNet, Haar), the model file's checksum, eye alignment and multi-face photos."""

import json
import shutil

import cv2
import numpy as np
import pytest

from fer.common import FerError
from fer.demo import background
from fer.faces import YUNET, YuNetFaceDetector, crop_faces, eye_angle, iou, make_detector


@pytest.fixture(scope="module")
def real_faces():
    from tests.conftest import SHARED

    root = SHARED / "fer2013" / "test"
    if not root.is_dir():
        pytest.skip("needs real faces from ../shared/data for the face detector")
    names = ("happy", "surprise", "neutral")
    return [
        cv2.imread(str(sorted((root / n).glob("*.png"))[3]), cv2.IMREAD_GRAYSCALE) for n in names
    ]


def paste(frame: np.ndarray, face48: np.ndarray, x: int, y: int, size: int, angle: float = 0.0):
    """Paste a face, `size` px wide and turned `angle` degrees counter-clockwise, at (x, y)."""
    big = cv2.resize(face48, (size, size), interpolation=cv2.INTER_CUBIC)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    m[:, 2] += (x, y)
    h, w = frame.shape[:2]
    mask = cv2.warpAffine(np.full_like(big, 255), m, (w, h)) > 0
    frame[mask] = cv2.warpAffine(big, m, (w, h))[mask]
    return (x, y, size, size)


def gray_background(width=640, height=480):
    return cv2.cvtColor(background(width, height), cv2.COLOR_BGR2GRAY)


def test_detectors_are_chosen_by_name():
    assert make_detector("yunet").name == "yunet" and make_detector("haar").name == "haar"
    assert make_detector("yunet", photos=True).work_size > make_detector("yunet").work_size
    with pytest.raises(FerError, match="unknown detector 'mtcnn'"):
        make_detector("mtcnn")


@pytest.mark.parametrize("photos", [False, True])
@pytest.mark.parametrize("detector", ["yunet", "haar"])
def test_a_long_strip_is_looked_at_without_an_error(detector, photos):
    """Was (Haar): a 16x30000 picture shrunk to 0 rows for the cascade, an OpenCV assertion that
    fer.serve answered with 500."""
    for shape in ((16, 30000), (30000, 16)):
        assert make_detector(detector, photos=photos).detect(np.zeros(shape, np.uint8)) == []


def test_a_damaged_yunet_file_is_refused_with_one_line(tmp_path):
    bad = tmp_path / YUNET.name
    shutil.copy(YUNET, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(FerError, match="is damaged .*--detector haar") as e:
        YuNetFaceDetector(model=bad)
    assert "\n" not in str(e.value)
    with pytest.raises(FerError, match="is missing"):
        YuNetFaceDetector(model=tmp_path / "gone.onnx")


def test_alignment_turns_a_tilted_face_upright(real_faces):
    frame = gray_background()
    paste(frame, real_faces[0], 200, 120, 220, angle=30)
    (face,) = YuNetFaceDetector().detect(frame)
    assert abs(eye_angle(face.landmarks)) > 15  # the detector sees the tilt

    def tilt_after(align: bool) -> float:
        crop = crop_faces(frame, [face], align=align, scale=1.3)[0]
        again = gray_background()
        paste(again, crop, 200, 120, 240)
        (seen,) = YuNetFaceDetector().detect(again)
        return abs(eye_angle(seen.landmarks))

    assert tilt_after(align=True) < 5  # eyes level in the aligned crop
    assert tilt_after(align=False) > 12


@pytest.mark.parametrize("detector,expected", [("yunet", 3), ("haar", 2)])
def test_predict_finds_the_faces_of_a_group_photo(real_faces, tmp_path, detector, expected):
    """YuNet (the default) finds all three faces; the Haar cascade misses the surprised one."""
    from fer.predict import main as predict

    photo = gray_background(1000, 500)
    truth = [
        paste(photo, f, 40 + 330 * i, 100 + 40 * i, 200 + 20 * i) for i, f in enumerate(real_faces)
    ]
    cv2.imwrite(str(tmp_path / "group.jpg"), cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR))
    args = [str(tmp_path / "group.jpg"), "--detector", detector, "--json", str(tmp_path / "p.json")]
    assert predict(args) == 0
    records = json.loads((tmp_path / "p.json").read_text())
    assert {r["detector"] for r in records} == {detector} and len(records) == expected
    found = [r["box"] for r in records]
    hits = sum(max(iou(tuple(b), t) for b in found) > 0.3 for t in truth)
    assert hits == expected


@pytest.mark.skipif(not hasattr(cv2, "FaceDetectorYN"), reason="this OpenCV has no FaceDetectorYN")
@pytest.mark.parametrize("size", [(640, 480), (333, 517), (1000, 500)])
def test_yunet_through_onnxruntime_finds_what_opencvs_face_detector_finds(real_faces, size):
    """YuNetNet (onnxruntime, OpenCV's decoding written out) gives the rows cv2.FaceDetectorYN
    gives on the same picture: same faces, boxes, landmarks and scores; sizes that are not
    multiples of 32 are padded as OpenCV pads them."""
    from fer.faces import YuNetNet

    w, h = size
    photo = gray_background(w, h)
    for i, face in enumerate(real_faces):
        paste(photo, face, 20 + (w // 3) * i, 40 + 20 * i, min(w // 4, h // 2) - 10 * i, 10 * i)
    bgr = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)
    for score in (0.6, 0.3):  # at 0.3 also the weak, overlapping candidates NMS must sort out
        ours = YuNetNet(YUNET, 0.3).detect(photo, score)
        _, theirs = cv2.FaceDetectorYN.create(str(YUNET), "", size, score, 0.3, 5000).detect(bgr)
        assert len(ours) == len(theirs) >= 2
        np.testing.assert_allclose(ours, theirs, atol=0.01)
        np.testing.assert_allclose(YuNetNet(YUNET, 0.3).detect(bgr, score), ours)


def test_each_view_of_a_face_is_the_crop_of_its_shifted_and_scaled_box():
    """crop_views turns the face upright once and cuts every view from it: each view is what
    crop_face makes of the box moved by (dx, dy) box widths along the face's own axes and
    cropped `side` times as wide; the centre view is crop_face's own crop."""
    from fer.faces import CROP_JITTER, Face, crop_face, crop_transform, crop_views

    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (400, 500)).astype(np.uint8), (0, 0), 3)
    marks = np.array([[180, 170], [250, 150], [215, 200], [190, 240], [245, 225]], np.float32)
    face = Face((160, 130, 110, 130), marks)  # eyes tilted: about -16 degrees
    for width in (21, 39, 110, 113):  # squares of odd and even sides in odd and even patches
        for align in (True, False):
            box = Face((160, 130, width, width), marks)
            centre = crop_views(gray, box, align, 1.3)[0] - crop_face(gray, box, align, 1.3).astype(
                int
            )
            assert np.abs(centre).max() <= 1, (width, align)  # but for warpAffine's rounding
    views = crop_views(gray, face, align=True, scale=1.3)
    assert views.shape == (len(CROP_JITTER), 48, 48) and views.dtype == np.uint8
    m, _ = crop_transform(face, align=True)
    back = cv2.invertAffineTransform(m)[:, :2]  # from the face's upright frame to the image's
    x, y, w, h = face.box
    for view, (dx, dy, side) in zip(views[1:], CROP_JITTER[1:]):
        mx, my = back @ (dx * w, dy * w)
        moved = Face((x + mx, y + my, w, h), marks + (mx, my))
        alone = crop_face(gray, moved, align=True, scale=1.3 * side).astype(int)
        assert np.abs(view.astype(int) - alone).mean() < 1.5, (dx, dy, side)  # < 1 px of rounding
        assert np.abs(view.astype(int) - views[0]).mean() > 4  # and not the centre crop
    for odd in (Face((0, 0, 30, 30)), Face((5, 5, 0, 0))):  # in a corner; a box of no width
        assert crop_views(gray, odd, align=False).shape == (len(CROP_JITTER), 48, 48)


def test_a_synthetic_video_that_cannot_be_written_is_an_error(tmp_path):
    """Was: fer.demo.face_video returned the boxes of a video it never wrote (OpenCV's writer,
    not opened for a missing folder or an unknown extension, drops every frame without a word),
    so a benchmark would have measured a missing file."""
    from fer.demo import face_video

    face = np.full((48, 48), 128, np.uint8)
    for path in (tmp_path / "missing" / "clip.mp4", tmp_path / "clip.unknown"):
        with pytest.raises(OSError, match="cannot write the video"):
            face_video(path, [face], frames=3, width=160, height=120, size=60)
        assert not path.exists()
    assert (
        len(face_video(tmp_path / "clip.mp4", [face], frames=3, width=160, height=120, size=60))
        == 3
    )
