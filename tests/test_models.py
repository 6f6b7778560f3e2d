import urllib.error

import pytest
import torch
from torchvision.models import vgg16

from fer.common import FerError
from fer.models import MODELS, build_model
from fer.models.vgg import load_backbone_weights


@pytest.mark.parametrize(
    "name,options",
    [("cnn", {}), ("cnn", {"widths": [8, 16], "depth": 1}), ("vgg", {"image_size": 64})],
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
