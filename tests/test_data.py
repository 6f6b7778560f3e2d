import os

import numpy as np
import pytest
import torch

from fer.augment import augment_batch
from fer.choices import PRESETS
from fer.common import EMOTIONS, FerError, to_face48
from fer.data import (
    PUBLIC_TEST,
    TRAINING,
    BatchSampler,
    FerDataModule,
    evaluation_split,
    load_fer,
    split_indices,
)
from tests.conftest import face, make_csv, make_folder


def test_folder_labels_follow_kaggle_order_whatever_the_folder_order(tmp_path):
    root = make_folder(tmp_path / "d", per_class=(2, 1, 0), upper=True)  # ANGRY/, DISGUST/ ...
    data = load_fer(root)
    for name, label in zip(data.names, data.labels.tolist()):
        assert name.split(os.sep)[1].lower() == EMOTIONS[label]
    # the pixel content was drawn for the Kaggle label: a bar at height 4 + 6 * label
    rows = data.images[:, :, 24].float()
    assert torch.equal(rows.argmax(1) // 6, data.labels)
    assert data.images.shape[1:] == (48, 48) and data.images.dtype == torch.uint8


@pytest.mark.parametrize("variant", ["fer2013", "icml", "train_test", "Train_Test", "lower_usage"])
def test_csv_variants_give_the_same_faces(tmp_path, variant):
    """(lower_usage was: its 'usage' column passed over, so every PublicTest and PrivateTest
    face was trained on, and validation was a tenth of the mix. Train_Test was: Train.csv was
    found, its Test.csv was not, and the test faces were dropped without a word.)"""
    name = {"icml": "icml_face_data.csv"}.get(variant, "fer2013.csv")
    name = "train.csv" if variant.lower() == "train_test" else name
    path = make_csv(tmp_path / variant / name, per_class=(3, 2, 1), variant=variant.lower())
    if variant == "Train_Test":  # as Kaggle's page names them
        path = path.rename(path.with_name("Train.csv"))
        (path.parent / "test.csv").rename(path.parent / "Test.csv")
    for arg in (path, path.parent):  # --data takes the file or its folder
        data = load_fer(arg)
        assert len(data) == 7 * 6
        assert torch.equal(data.images[0], torch.from_numpy(face(0, 0)))
        assert data.labels.tolist().count(3) == 6
        # each face with its own label: the row of its class's bar (a mapping of the emotion
        # column to other classes, or faces and labels read apart, would pass the count above)
        bar = data.images[:, :, 6:42].float().mean(2).argmax(1)
        assert torch.equal((bar - 4) // 6, data.labels.long())
    splits, _ = split_indices(data)
    if variant.lower() == "train_test":  # no Usage: val is drawn from train, test is test.csv
        assert len(splits["train"]) + len(splits["val"]) == 21 and len(splits["test"]) == 21
    else:
        assert [len(splits[k]) for k in ("train", "val", "test")] == [21, 14, 7]


def test_canonical_split_from_file_prefixes(tmp_path):
    data = load_fer(make_folder(tmp_path / "d", per_class=(3, 2, 1)))
    splits, notes = split_indices(data)
    names = lambda k: {os.path.basename(data.names[i]).split("_")[0] for i in splits[k].tolist()}  # noqa: E731
    assert (
        names("train") == {"Training"}
        and names("val") == {"PublicTest"}
        and names("test") == {"PrivateTest"}
    )
    assert notes == []


def test_test_faces_without_a_prefix_beside_private_test_are_named_in_a_note(tmp_path):
    """Was: with PrivateTest faces in test/, the test split is PrivateTest, and a face added to
    test/ without a Kaggle prefix (a user's own) was in no split, and nothing said so."""
    import cv2

    root = make_folder(tmp_path / "d", per_class=(3, 2, 1))
    cv2.imwrite(str(root / "test" / "happy" / "my_face.png"), face(3, 9))
    data = load_fer(root)
    splits, notes = split_indices(data)
    assert len(data) == 43 and sum(len(v) for v in splits.values()) == 42
    (note,) = notes
    assert "1 face of test/" in note and "in no split" in note


def test_the_folder_decides_train_or_test_whatever_a_file_is_named(tmp_path):
    """Was: the Kaggle prefix alone decided the split, so Training_ faces a user moved into
    test/ (to hold them out) were still trained on, and a PublicTest_ face moved into train/
    validated on. The folder decides train or test; within test/ the prefix tells PublicTest from
    PrivateTest."""
    root = make_folder(tmp_path / "d", per_class=(3, 2, 1))
    moved = {
        root / "train" / "happy" / "Training_03000.png": root
        / "test"
        / "happy"
        / "Training_03000.png",
        root / "test" / "sad" / "PublicTest_14000.png": root
        / "train"
        / "sad"
        / "PublicTest_14000.png",
    }
    for old, new in moved.items():
        old.rename(new)
    data = load_fer(root)
    splits, notes = split_indices(data)
    split_of = {data.names[i]: name for name, idx in splits.items() for i in idx.tolist()}
    assert "test/happy/Training_03000.png" not in split_of  # not trained on: held out, in no split
    assert split_of["train/sad/PublicTest_14000.png"] == "train"
    assert len(splits["train"]) == 21 and len(splits["val"]) == 13 and len(splits["test"]) == 7
    (note,) = notes
    assert "1 face of test/" in note and "in no split" in note


def test_public_test_without_private_test_gives_no_test_split(tmp_path):
    data = load_fer(make_folder(tmp_path / "d", per_class=(3, 2, 0)))
    splits, notes = split_indices(data)
    assert len(splits["val"]) == 14 and len(splits["test"]) == 0
    assert any("no test split" in n for n in notes)
    index, scored, note = evaluation_split(data, "test")  # falls back to PublicTest, and says so
    assert torch.equal(index, splits["val"]) and scored == "val" and "PublicTest" in note
    # (was "no PrivateTest or test-folder samples", of a test folder full of PublicTest faces)
    assert note.startswith("no test split (no PrivateTest faces") and "test-folder" not in note


def test_unmarked_folders_split_stratified_and_seeded(tmp_path):
    data = load_fer(
        make_folder(tmp_path / "d", per_class=(10, 3, 0), prefixes=("img", "img", "img"))
    )
    a, notes = split_indices(data, val_fraction=0.2, seed=1)
    b, _ = split_indices(data, val_fraction=0.2, seed=1)
    c, _ = split_indices(data, val_fraction=0.2, seed=2)
    assert torch.equal(a["val"], b["val"]) and not torch.equal(a["val"], c["val"])
    assert torch.bincount(data.labels[a["val"]], minlength=7).tolist() == [2] * 7
    assert len(a["test"]) == 21 and set(a["train"].tolist()).isdisjoint(a["val"].tolist())
    assert any("stratified" in n for n in notes)


def test_a_small_unmarked_dataset_still_validates_on_every_class(tmp_path):
    """5 faces a class and no test folder: 10% of 5 rounded to none, an empty validation split and
    a KeyError in the middle of fer.train (the log said it validated on 10% of train)."""
    data = load_fer(make_folder(tmp_path / "d", per_class=(5, 0, 0), prefixes=("img",) * 3))
    splits, notes = split_indices(data, val_fraction=0.1, seed=0)
    assert torch.bincount(data.labels[splits["val"]], minlength=7).tolist() == [1] * 7
    assert len(splits["train"]) == 28 and len(splits["test"]) == 0
    assert any("validation is held out from train" in n for n in notes)


def test_capitalised_split_folders_and_hidden_folders(tmp_path):
    """Train/ and Test/ were not found (class folders are matched case-insensitively, the docs
    said folder names are); a .ipynb_checkpoints folder (Jupyter's) stopped loading as an
    unknown class."""
    import cv2

    root = make_folder(tmp_path / "d", per_class=(2, 1, 0), prefixes=("img",) * 3)
    (root / "train").rename(root / "Train")
    (root / "test").rename(root / "Test")
    for hidden in (root / "Train" / ".ipynb_checkpoints", root / "Train" / "happy" / ".thumbs"):
        hidden.mkdir()
        cv2.imwrite(str(hidden / "junk.png"), face(0, 1))
    data = load_fer(root)
    splits, _ = split_indices(data, val_fraction=0.5, seed=0)
    assert len(data.images) == 21 and len(splits["test"]) == 7  # the 7 of Test/, none hidden
    assert len(splits["train"]) + len(splits["val"]) == 14


def test_cache_is_reused_and_invalidated_when_the_data_changes(tmp_path, monkeypatch):
    import fer.data

    root = make_folder(tmp_path / "d", per_class=(2, 1, 0))
    decoded = []
    read = fer.data.read_folder
    monkeypatch.setattr(fer.data, "read_folder", lambda *a, **k: decoded.append(1) or read(*a, **k))
    first = load_fer(root)
    cache_files = list((tmp_path / "cache").glob("*.safetensors"))
    assert len(cache_files) == 1
    again = load_fer(root)
    assert torch.equal(first.images, again.images) and first.names == again.names
    assert len(decoded) == 1  # the second load read the cache, not the files
    extra = root / "train" / "happy" / "Training_new.png"
    import cv2

    cv2.imwrite(str(extra), face(3, 99))
    changed = load_fer(root)
    assert len(changed) == len(first) + 1
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2


def test_corrupt_cache_is_rebuilt(tmp_path):
    root = make_folder(tmp_path / "d", per_class=(2, 1, 0))
    first = load_fer(root)
    (cache,) = (tmp_path / "cache").glob("*.safetensors")
    cache.write_bytes(cache.read_bytes()[:100])
    assert torch.equal(load_fer(root).images, first.images)
    assert cache.stat().st_size > 100  # written again, whole


def test_a_cache_that_cannot_be_written_costs_only_speed(tmp_path, monkeypatch, caplog):
    """Was: a cache write failing midway (a full disk or quota: safetensors' own error, not an
    OSError) ended fer.train, fer.evaluate and fer.analyze with a traceback after the decoding."""
    from safetensors import SafetensorError

    import fer.data

    def full(tensors, path, metadata=None):
        open(path, "wb").write(b"\0" * 10)
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    root = make_folder(tmp_path / "d", per_class=(2, 1, 0))
    monkeypatch.setattr(fer.data, "save_file", full)
    assert len(load_fer(root)) == 7 * 3
    assert "could not cache the decoded data" in caplog.text
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written left


def test_an_empty_cache_folder_name_is_the_default_not_the_current_folder(tmp_path, monkeypatch):
    """Was: --cache-dir "" or FER_CACHE= (an unset shell variable) cached the decoded faces in ./,
    where `git add -A` would take them."""
    root = make_folder(tmp_path / "d", per_class=(2, 1, 0))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_fer(root, cache_dir="")
    monkeypatch.setenv("FER_CACHE", "")
    load_fer(root)
    assert not list(here.iterdir())
    assert len(list((tmp_path / "home" / ".cache" / "fer").glob("*.safetensors"))) == 1
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1  # FER_CACHE's, set before


def test_a_pixel_value_too_large_for_32_bits_is_refused_not_wrapped_round(tmp_path):
    """Was: 4294967297 was read as 1 (parsed as 32-bit integers), inside 0..255: no error."""
    path = make_csv(tmp_path / "fer2013.csv", per_class=(1, 1, 0))
    lines = path.read_text().splitlines()
    emotion, pixel_text, usage = lines[3].split(",")
    lines[3] = ",".join([emotion, "4294967297 " + pixel_text.split(" ", 1)[1], usage])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FerError, match="line 4: pixels must be integers 0..255"):
        load_fer(path)


def test_colour_and_odd_size_images_become_48x48_gray():
    rng = np.random.default_rng(0)
    for img in (
        rng.integers(0, 255, (100, 80, 3), np.uint8),
        rng.integers(0, 255, (30, 30, 4), np.uint8),
        rng.integers(0, 65535, (48, 48), np.uint16),
    ):
        out = to_face48(img)
        assert out.shape == (48, 48) and out.dtype == np.uint8
    assert (to_face48(np.full((48, 48), 65535, np.uint16)) == 255).all()  # 16 bits: full is white
    blue = np.zeros((48, 48, 3), np.uint8)
    blue[..., 0] = 255  # OpenCV's BGR: pure blue is gray 29 (0.114 of 255)
    assert (to_face48(blue) == 29).all()


def test_missing_data_names_the_path_and_how_to_get_it(tmp_path):
    with pytest.raises(FerError, match="does not exist.*download FER-2013"):
        load_fer(tmp_path / "nowhere")


@pytest.mark.parametrize("world", [1, 2, 3])
def test_eval_batches_cover_every_sample_once_across_ranks(monkeypatch, world):
    seen = []
    for rank in range(world):
        monkeypatch.setattr(BatchSampler, "_rank_world", staticmethod(lambda r=rank: (r, world)))
        s = BatchSampler(23, 4, train=False)
        batches = list(s)
        assert len(batches) == len(s)
        seen += [i for b in batches for i in b.tolist()]
    assert sorted(seen) == list(range(23))


def test_a_share_of_the_evaluation_batches_holds_every_class(folder_data):
    """Faces are read class by class: evaluated in that order, --limit-val-batches 0.1 scored the
    first classes alone (on FER-2013's PublicTest one batch of 512 was 467 angry faces and 45
    disgust). The evaluation order is one fixed shuffle: the same batches every epoch."""
    dm = FerDataModule(str(folder_data), eval_batch_size=7)
    dm.setup("fit")
    labels = dm.splits["val"].labels
    assert labels[:7].unique().numel() <= 3  # the faces as read: class by class
    loader = dm.val_dataloader()
    first = [labels[b].unique().numel() for b in loader.sampler][0]
    assert first >= 4
    loader.sampler.set_epoch(1)  # a later epoch: the same batches
    again = [b.tolist() for b in dm.val_dataloader().sampler]
    assert again == [b.tolist() for b in loader.sampler]


def test_train_batches_are_equal_per_rank_and_reshuffled_each_epoch(monkeypatch):
    monkeypatch.setattr(BatchSampler, "_rank_world", staticmethod(lambda: (1, 2)))
    s = BatchSampler(50, 8, train=True, seed=3)
    e0 = torch.cat(list(s))
    s.set_epoch(1)
    e1 = torch.cat(list(s))
    assert len(list(s)) == len(s) == 3 and not torch.equal(e0, e1)
    monkeypatch.setattr(BatchSampler, "_rank_world", staticmethod(lambda: (0, 2)))
    r0 = BatchSampler(50, 8, train=True, seed=3)
    assert len(r0) == len(s) and [len(b) for b in r0] == [len(b) for b in s]  # equal per rank
    assert not set(torch.cat(list(r0)).tolist()) & set(e0.tolist())  # and each rank its own


@pytest.mark.parametrize("preset", list(PRESETS))
def test_batched_augmentation_keeps_range_shape_and_label_alignment(preset):
    torch.manual_seed(0)
    labels = torch.arange(7).repeat(20)
    x = (
        torch.stack([torch.from_numpy(face(int(y), i)) for i, y in enumerate(labels)])
        .unsqueeze(1)
        .float()
        / 255
    )
    out = augment_batch(x.clone(), preset)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    if preset != "none":
        assert not torch.equal(out, x)
    # each face still carries its own class bar: a flip or a small warp keeps its height close
    bar_row = out[:, 0, :, 14:34].mean(2).argmax(1)
    assert ((bar_row - (5 + 6 * labels)).abs() <= 6).float().mean() > 0.9


def test_photo_degradations_touch_only_their_share_and_stay_in_their_ranges():
    from fer.augment import (
        BLUR_SIGMA,
        EXPOSURE_GAIN,
        NOISE_SIGMA,
        exposure,
        gaussian_blur,
        gaussian_noise,
    )

    torch.manual_seed(0)
    x = torch.rand(64, 1, 48, 48) * 0.6 + 0.2  # no pixel near black or white
    many = torch.rand(1000, 1, 48, 48) * 0.6 + 0.2
    for degrade in (exposure, gaussian_blur, gaussian_noise):
        assert torch.allclose(degrade(x, 0.0), x, atol=1e-6)
        changed = ((degrade(many, 0.3) - many).abs() > 1e-4).flatten(1).any(1)
        assert 0.25 <= changed.float().mean() <= 0.35  # the share asked for, whole faces
    # exposure: each face is gain * x + offset (clipped), the gain within its range
    out = exposure(x, 1.0)
    inside = (out > 0) & (out < 1)
    for original, seen, ok in zip(x, out, inside):
        gain = (seen[ok].std() / original[ok].std()).item()
        assert EXPOSURE_GAIN[0] - 1e-3 <= gain <= EXPOSURE_GAIN[1] + 1e-3
    assert out.min() >= 0 and out.max() <= 1 and ((out == 0) | (out == 1)).any()
    # blur: a flat face stays flat; random pixels lose detail, each face by its own sigma
    flat = torch.full((4, 1, 48, 48), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.0), flat, atol=1e-6)
    blurred = gaussian_blur(x, 1.0)
    detail = (blurred - blurred.mean((2, 3), keepdim=True)).std((1, 2, 3))
    assert (detail < x.std((1, 2, 3))).all() and detail.std() > 0.005
    # a white dot spreads over its face's sigma: some by little, some by about the largest
    dot = torch.zeros(64, 1, 48, 48)
    dot[:, :, 24, 24] = 1
    spread = gaussian_blur(dot, 1.0)[:, 0, 24]  # the row through the dot
    cols = torch.arange(48.0) - 24
    sigma = ((spread * cols**2).sum(1) / spread.sum(1)).sqrt()
    assert (sigma < 1.05 * BLUR_SIGMA[1]).all() and sigma.max() > 0.9 * BLUR_SIGMA[1]
    assert sigma.min() < 2 * BLUR_SIGMA[0]
    # noise: what was added has a spread within NOISE_SIGMA
    added = (gaussian_noise(x, 1.0) - x).std((1, 2, 3))
    assert (added > 0.8 * NOISE_SIGMA[0]).all() and (added < 1.2 * NOISE_SIGMA[1]).all()


def test_camera_degradation_takes_its_share_and_the_detail_a_small_jpeg_face_loses(monkeypatch):
    import fer.augment as aug

    torch.manual_seed(0)
    many = torch.rand(1000, 1, 48, 48) * 0.6 + 0.2
    assert torch.equal(aug.camera(many[:8], 0.0), many[:8])
    changed = ((aug.camera(many, 0.3) - many).abs() > 1e-3).flatten(1).any(1)
    assert 0.25 <= changed.float().mean() <= 0.35  # the share asked for, whole faces
    # a one-pixel checkerboard: seen at half the pixels or fewer, its detail is gone
    monkeypatch.setattr(aug, "CAMERA_SIDE", (20, 24))
    checker = (torch.arange(48).view(1, -1) + torch.arange(48).view(-1, 1)) % 2 * 0.5 + 0.25
    faces = checker.expand(16, 1, 48, 48).clone()
    small = aug.camera(faces, 1.0)
    assert small.shape == faces.shape and small.min() >= 0 and small.max() <= 1
    assert (small.std((1, 2, 3)) < 0.5 * faces.std((1, 2, 3))).all()
    # at the batch's own size only the JPEG is left: close to the face, closer at a higher quality
    smooth = torch.nn.functional.avg_pool2d(many[:16], 5, 1, 2)
    monkeypatch.setattr(aug, "CAMERA_SIDE", (48, 48))
    errors = {}
    for quality in (30, 90):
        monkeypatch.setattr(aug, "JPEG_QUALITY", (quality, quality))
        errors[quality] = (aug.camera(smooth, 1.0) - smooth).abs().mean().item()
    assert 0 < errors[90] < errors[30] < 0.05


def test_datamodule_batches_are_standardised_uint8_made_float(folder_data):
    dm = FerDataModule(str(folder_data), batch_size=8)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (8, 1, 48, 48)
    x2, _ = dm.on_after_batch_transfer((x, y), 0)
    assert x2.dtype == torch.float32 and x2.is_contiguous(memory_format=torch.channels_last)
    assert (dm.splits["train"].usage == TRAINING).all() and (
        dm.splits["val"].usage == PUBLIC_TEST
    ).all()


def test_real_folder_layout(shared_data):
    data = load_fer(shared_data / "fer2013")
    splits, notes = split_indices(data)
    assert len(splits["train"]) == 28709 and len(splits["val"]) == 3589 and len(splits["test"]) == 0
    counts = torch.bincount(data.labels[splits["val"]], minlength=7).tolist()
    assert counts == [467, 56, 496, 895, 653, 415, 607]  # Kaggle order: angry ... neutral


def test_real_csv_sample(shared_data):
    data = load_fer(shared_data / "fer2013-sample.csv")
    splits, _ = split_indices(data)
    assert len(splits["train"]) == 700 and len(splits["val"]) == 350
    assert torch.bincount(data.labels, minlength=7).tolist() == [150] * 7


def test_strict_fails_on_unreadable_files_after_a_lenient_load_cached_them(tmp_path):
    """Was: --strict was ignored once the data was cached."""
    from fer.common import FerError
    from fer.data import load_fer

    root = make_folder(tmp_path / "d", per_class=(3, 1, 0))
    (root / "train" / "happy" / "Training_bad.png").write_bytes(b"not a png")
    assert len(load_fer(root).skipped) == 1  # lenient: skipped, and cached
    with pytest.raises(FerError, match="1 files are not readable images"):
        load_fer(root, strict=True)


def test_other_local_ranks_wait_for_rank_0_to_decode_and_cache(tmp_path, monkeypatch):
    """Ranks started together (torchrun, SLURM): local rank 0 decodes and writes the cache once;
    the others wait for it instead of decoding the same files again."""
    import threading
    import time

    import fer.data

    root = make_folder(tmp_path / "d", per_class=(3, 1, 0))
    decoded = []
    read = fer.data.read_folder
    monkeypatch.setattr(fer.data, "read_folder", lambda *a, **k: decoded.append(1) or read(*a, **k))
    first = load_fer(root, tmp_path / "c")  # rank 0: decodes and caches
    monkeypatch.setenv("LOCAL_RANK", "1")
    again = load_fer(root, tmp_path / "c")  # rank 1: reads the cache
    assert len(decoded) == 1 and torch.equal(again.images, first.images)

    cache, marker = tmp_path / "x.safetensors", tmp_path / "x.safetensors.decoding"
    marker.touch()  # rank 0 is decoding: rank 1 waits until the cache appears
    threading.Timer(0.6, cache.touch).start()
    start = time.monotonic()
    fer.data._wait_for(cache, marker, start_grace=0.1)
    assert cache.is_file() and time.monotonic() - start >= 0.5
    cache.unlink(), marker.unlink()  # nobody is decoding: rank 1 waits only the grace period
    start = time.monotonic()
    fer.data._wait_for(cache, marker, start_grace=0.2)
    assert time.monotonic() - start < 5 and not cache.exists()


def test_a_split_folder_fer_does_not_read_is_named_in_a_warning(tmp_path, caplog):
    """Was: a dataset with train/ val/ test/ loaded train and test and left val/ out silently."""
    import cv2

    from fer.data import load_fer

    root = make_folder(tmp_path / "d", per_class=(2, 1, 0))
    (root / "val" / "happy").mkdir(parents=True)
    cv2.imwrite(str(root / "val" / "happy" / "v.png"), face(3, 0))
    with caplog.at_level("WARNING", logger="fer"):
        data = load_fer(root, tmp_path / "cache")
    assert len(data.labels) == 21
    assert any("val is not read" in r.getMessage() for r in caplog.records), caplog.text


def test_folder_odds_a_user_may_have_are_read_or_named(tmp_path, caplog):
    """Were: a broken link among the faces stopped the whole load (FileNotFoundError); a linked
    folder inside a class folder was passed over; with both train/ and Train/ one was read and
    the other dropped, silently."""
    import logging

    root = make_folder(tmp_path / "d", per_class=(2, 1, 0))
    os.symlink(tmp_path / "gone.png", root / "train" / "happy" / "Training_gone.png")
    more = make_folder(tmp_path / "more", per_class=(1, 0, 0))
    os.symlink(more / "train" / "sad", root / "train" / "sad" / "more")
    with caplog.at_level(logging.WARNING):
        data = load_fer(root, cache_dir=tmp_path / "cache")
    assert len(data) == 7 * 3 + 1  # the broken link skipped, the linked folder's face read
    assert "skipped 1 files that are not readable images" in caplog.text
    assert any("more" in n for n in data.names)
    (root / "Train").mkdir()
    with pytest.raises(FerError, match="two train folders"):
        load_fer(root, cache_dir=tmp_path / "cache")


def test_a_csv_named_in_capitals_is_found_in_its_folder(tmp_path):
    path = make_csv(tmp_path / "d" / "fer2013.csv", per_class=(2, 1, 1))
    path.rename(tmp_path / "d" / "FER2013.csv")
    assert len(load_fer(tmp_path / "d", cache_dir=tmp_path / "cache")) == 7 * 4


def test_links_back_up_the_tree_and_a_linked_split_folder_are_read_once(tmp_path):
    """Was (in this change's first version): a link to train/ inside train/happy read every
    class's faces again, labelled happy; a train -> Train link was 'two train folders'."""
    root = make_folder(tmp_path / "d", per_class=(2, 1, 0))
    os.symlink("..", root / "train" / "happy" / "up")  # back to train/
    os.symlink(".", root / "train" / "sad" / "here")
    assert len(load_fer(root, cache_dir=tmp_path / "c1")) == 7 * 3
    (root / "train").rename(root / "Train")
    os.symlink("Train", root / "train")
    data = load_fer(root, cache_dir=tmp_path / "c2")
    assert len(data) == 7 * 3 and sorted(data.labels.tolist()) == sorted(list(range(7)) * 3)
