import urllib.error

import pytest
import torch
from torch import nn
from torchvision.models import vgg16

from fer.common import FerError
from fer.models import MODELS, build_model
from fer.models.vgg import load_backbone_weights


@pytest.mark.parametrize(
    "name,options",
    [
        ("cnn", {}),
        ("cnn", {"widths": [8, 16], "depth": 1}),
        ("cnn", {"widths": [8, 16, 16], "depth": 1, "residual": True}),
        ("vgg", {"image_size": 64}),
    ],
)
def test_models_map_gray_faces_to_seven_logits(name, options):
    model = build_model(name, **options).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 48, 48))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(FerError, match="known models: " + ", ".join(MODELS)):
        build_model("resnet")


def test_vgg_backbone_loads_a_state_dict_file(tmp_path):
    reference = vgg16(
        weights=None
    )  # stands in for the ImageNet weights, which cannot be fetched here
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("vgg")
    assert load_backbone_weights(model, path) == str(path)
    for (k, a), b in zip(
        model.backbone.state_dict().items(), reference.features.state_dict().values()
    ):
        assert torch.equal(a, b), k


def test_vgg_backbone_loads_features_only_safetensors(tmp_path):
    from safetensors.torch import save_file

    reference = vgg16(weights=None).features
    path = tmp_path / "features.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    model = build_model("vgg")
    load_backbone_weights(model, path)
    assert torch.equal(model.backbone[0].weight, reference[0].weight)


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(FerError, match="does not hold VGG16 features"):
        load_backbone_weights(build_model("vgg"), path)
    with pytest.raises(FerError, match="does not exist"):
        load_backbone_weights(build_model("vgg"), tmp_path / "missing.pth")


def test_unreachable_imagenet_weights_name_both_fixes(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    import torchvision.models._api as api

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)  # never download in a test
    with pytest.raises(FerError) as e:
        load_backbone_weights(build_model("vgg"))
    msg = str(e.value)
    assert "--weights FILE" in msg and "--no-pretrained" in msg and "\n" not in msg


def test_a_cropping_cnn_trains_on_random_crops_and_judges_the_centre():
    from fer.models.cnn import crop_faces

    faces = torch.randn(64, 1, 48, 48)
    centre = faces[..., 4:44, 4:44]
    torch.manual_seed(0)
    crops = crop_faces(faces, 40, random=True)
    assert crops.shape == (64, 1, 40, 40)
    # every random crop is a window of its own face, and the windows are not all the centre one
    places = []
    for face, crop in zip(faces, crops):
        hits = [
            (i, j)
            for i in range(9)
            for j in range(9)
            if torch.equal(face[:, i : i + 40, j : j + 40], crop)
        ]
        assert len(hits) == 1
        places.append(hits[0])
    assert len(set(places)) > 10
    model = build_model("cnn", widths=[8, 16], crop=40).eval()
    plain = build_model("cnn", widths=[8, 16]).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(faces), plain(centre), atol=1e-6)
        assert torch.equal(model(centre), plain(centre))  # a face already cropped stays as it is


def test_gradcam_of_a_cropping_network_lies_on_its_crop():
    """A network that sees only the centre 40x40 pixels gets maps there, aligned, and nothing on
    the border it never sees (was: its map stretched over the whole 48x48 face)."""
    import numpy as np

    from fer.gradcam import cam_maps, conv_sizes, target_layers

    torch.manual_seed(0)
    model = build_model(
        "ensemble",
        members=[
            {"arch": "cnn", "options": {"widths": [8, 8, 8, 8], "crop": 40}},
            {"arch": "cnn", "options": {"widths": [8, 8, 8, 8]}},
        ],
    )
    faces = np.random.default_rng(0).integers(0, 255, (6, 48, 48), dtype=np.uint8)
    # 40, 20, 10, 5: the crop's 5x5 map has the 8 px cells of the whole face's 6x6 map
    layers = target_layers(model)
    assert [conv_sizes(net)[m] for net, m in zip(model.members, layers)] == [5, 6]
    crop_only = cam_maps(model.members[0], faces, [0] * 6, target_layers(model.members[0]))
    assert crop_only.shape == (6, 48, 48)
    border = np.ones((48, 48), bool)
    border[4:44, 4:44] = False
    assert np.abs(crop_only[:, border]).max() == 0 and crop_only[:, ~border].max() > 0
    both = cam_maps(model, faces, [0] * 6, target_layers(model))
    assert both.shape == (6, 48, 48) and both[:, border].max() > 0  # the whole-face member
    # no faces, no maps (was an AttributeError inside pytorch-grad-cam)
    assert cam_maps(model, faces[:0], [], target_layers(model)).shape == (0, 48, 48)


def test_gradcam_leaves_the_model_as_it_was_and_works_under_no_grad_in_batches():
    """Were: target_layers ran a zero face through a model in training mode, moving its
    BatchNorm statistics; cam_maps left a model in training mode in eval mode; cam_maps inside
    torch.no_grad() or inference_mode() failed (Grad-CAM needs gradients); and every face went
    through the network in one batch, memory growing with --gradcam N (12 MB a face)."""
    import numpy as np

    from fer.gradcam import CAM_BATCH, cam_maps, target_layers

    torch.manual_seed(0)
    model = build_model("cnn", widths=[8, 8, 8, 8]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = target_layers(model)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    faces = np.random.default_rng(0).integers(0, 255, (CAM_BATCH + 6, 48, 48), dtype=np.uint8)
    seen = []
    hook = model.register_forward_hook(lambda mod, inputs, out: seen.append(len(inputs[0])))
    maps = cam_maps(model, faces, [3] * len(faces), layers, mirror=True)
    hook.remove()
    assert maps.shape == (len(faces), 48, 48) and seen and max(seen) <= CAM_BATCH
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    one = cam_maps(model, faces[:4], [3] * 4, layers, mirror=True)
    assert np.allclose(one, maps[:4], atol=1e-5)  # a face's map is its own, whatever its batch
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            assert np.allclose(cam_maps(model, faces[:4], [3] * 4, layers, mirror=True), one)
    empty = np.zeros((0, 1, 48, 48), np.uint8)  # (was (0, 1, 48))
    assert cam_maps(model, empty, [], layers).shape == (0, 48, 48)


def test_the_hottest_share_of_a_mostly_flat_map_is_that_share_of_the_face():
    """Were: a map with more than 85% of its cells at 0 put its 15% quantile at 0, and every
    pixel counted among the hottest: the whole face masked."""
    import numpy as np

    from fer.gradcam import hottest

    maps = np.zeros((2, 48, 48), np.float32)
    maps[0, :5, :] = np.linspace(0.1, 1, 5 * 48).reshape(5, 48)  # 90% of it at 0
    maps[1] = np.random.default_rng(0).random((48, 48))
    masks = hottest(maps, 0.15)
    assert masks.sum(axis=(1, 2)).tolist() == [round(0.15 * 48 * 48)] * 2
    assert masks[0, :5].all()  # all 240 warm cells, and 106 of the flat ones
    assert maps[1][masks[1]].min() >= maps[1][~masks[1]].max()


def test_gradcam_of_an_ensemble_of_ensembles_reads_every_network():
    """fer.export --ckpt A B of two ensembles nests them: every network of each gets its layer,
    and a cropping one its crop (was: one layer an inner ensemble, the last 6 px convolution of
    all its networks, so the others were left out of the maps)."""
    import numpy as np

    from fer.gradcam import cam_maps, conv_sizes, networks, target_layers

    torch.manual_seed(0)
    inner = [
        {"arch": "cnn", "options": {"widths": [8, 8, 8, 8], "crop": 40}},
        {"arch": "cnn", "options": {"widths": [8, 8, 8, 8]}},
    ]
    ensemble = {"arch": "ensemble", "options": {"members": inner, "flip": True}}
    model = build_model("ensemble", members=[ensemble, ensemble])
    assert len(networks(model)) == 4
    layers = target_layers(model)
    assert [conv_sizes(net)[m] for net, m in zip(networks(model), layers)] == [5, 6, 5, 6]
    faces = np.random.default_rng(0).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    maps = cam_maps(model, faces, [0] * 3, layers)
    assert maps.shape == (3, 48, 48) and maps.max() > 0
    assert all(m.flip for m in model.members)  # the inner ensembles' mirror restored


def test_a_residual_network_adds_its_blocks_to_their_shortcuts_and_strides_instead_of_pooling():
    from fer.models.cnn import Residual

    torch.manual_seed(0)
    model = build_model("cnn", widths=[8, 16, 16, 32], residual=True).eval()
    blocks = [m for m in model.features if isinstance(m, Residual)]
    assert len(blocks) == 4 and not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # the first block keeps the stem's shape (identity shortcut); the others halve the map
    assert isinstance(blocks[0].shortcut, nn.Identity)
    assert [b.shortcut.stride for b in blocks[1:]] == [2] * 3
    x, sides = model.features[0](torch.randn(2, 1, 48, 48)), []
    with torch.no_grad():
        for block in blocks:
            y = block(x)
            assert torch.allclose(y, torch.relu(block.body(x) + block.shortcut(x)))
            assert not torch.allclose(y, torch.relu(block.shortcut(x)))
            x = y
            sides.append(x.shape[-1])
    assert sides == [48, 24, 12, 6]


def test_a_residual_network_learns_where_a_face_is_bright():
    """Was: with zero-initialised block outputs and projection shortcuts, the network started as
    1x1 convolutions of subsampled pixels and learned nothing in two epochs of FER-2013."""
    torch.manual_seed(0)
    model = build_model("cnn", widths=[16, 32, 32, 64], residual=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(40):
        y = torch.randint(0, 4, (64,))
        x = 0.5 * torch.randn(64, 1, 48, 48)
        for i, quadrant in enumerate(y.tolist()):
            r, c = divmod(quadrant, 2)
            x[i, 0, r * 24 : (r + 1) * 24, c * 24 : (c + 1) * 24] += 1
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2  # chance: ln 4 = 1.39; the old network: 0.89


def test_gradcam_of_a_residual_network_reads_the_last_convolution_of_a_block_body():
    """Not the 1x1 shortcut, which sees the block's input only."""
    from fer.gradcam import conv_sizes, target_layers

    model = build_model("cnn", widths=[8, 16, 16, 32], residual=True)
    (layer,) = target_layers(model)
    assert layer is model.features[-1].body[-2]
    assert layer.kernel_size == (3, 3) and conv_sizes(model)[layer] == 6


@pytest.mark.parametrize("cin", [4, 8])
def test_a_narrow_residual_network_gets_the_gradients_of_the_reference_convolutions(cin):
    """Was: with fewer input channels than oneDNN's block (8 on AVX2, 16 on AVX-512), a strided
    1x1 convolution's weight gradient in channels_last wrote past its workspace (oneDNN issue
    6035): a segmentation fault on AVX-512 machines, wrong gradients or a hang on others, so
    `fer.train --residual --widths 8 16` died in its first step."""
    from fer.models.cnn import Residual

    torch.manual_seed(0)
    block = Residual(cin, 16, depth=1, stride=2).to(memory_format=torch.channels_last)
    x = torch.randn(16, cin, 48, 48).contiguous(memory_format=torch.channels_last)

    def gradients(x: torch.Tensor) -> list[torch.Tensor]:
        block.zero_grad()
        block(x.requires_grad_()).square().mean().backward()
        return [x.grad, *(p.grad for p in block.parameters())]

    got = gradients(x.clone())
    with torch.backends.mkldnn.flags(enabled=False):
        reference = gradients(x.clone().contiguous())
    assert all(torch.allclose(g, r, rtol=1e-4, atol=1e-6) for g, r in zip(got, reference))


def test_gradcam_of_a_model_that_averages_a_face_and_its_mirror_explains_both():
    """A model whose answer is the mean over a face and its mirror image (the shipped ensemble)
    gets the mean of the two views' maps, so the map of a mirrored face is the mirrored map
    (was: the face's own view alone, a map of half the answer); and no gradients are left on the
    model, which may be a loaded classifier's."""
    import numpy as np

    from fer.gradcam import cam_maps, target_layers

    torch.manual_seed(0)
    model = build_model("ensemble", members=[{"arch": "cnn", "options": {"widths": [8, 8, 8, 8]}}])
    faces = np.random.default_rng(0).integers(0, 255, (4, 48, 48), dtype=np.uint8)
    layers = target_layers(model)
    maps = cam_maps(model, faces, [3] * 4, layers, mirror=True)
    mirrored = cam_maps(model, faces[:, :, ::-1].copy(), [3] * 4, layers, mirror=True)
    assert np.allclose(maps, mirrored[:, :, ::-1], atol=1e-5)
    one_view = cam_maps(model, faces, [3] * 4, layers)
    assert not np.allclose(maps, one_view, atol=1e-3)
    assert maps.min() >= 0 and np.allclose(maps.reshape(4, -1).max(1), 1)
    assert all(p.grad is None for p in model.parameters())
