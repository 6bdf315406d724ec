"""Classifier loading from torchvision names + state dicts and TorchScript files."""

import numpy as np
import pytest
import torch
import torchvision

from interventions.causal import causal_curve
from interventions.explain import grad_cam
from interventions.models import (
    build_demo_cnn,
    default_target_layer,
    file_sha256,
    load_classifier,
)


@pytest.fixture
def resnet_file(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    path = tmp_path / "r18.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_torchvision_state_dict_round_trip(resnet_file):
    model, path = resnet_file
    clf = load_classifier("resnet18", path, class_names=["a", "b", "c", "d"], input_size=64)
    assert not clf.module.training
    assert clf.class_names == ("a", "b", "c", "d")
    assert clf.target_layer == "layer4" and clf.input_size == (64, 64)
    assert clf.weights_sha256 == file_sha256(path)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = clf.preprocess(image)
    expected = (
        torch.from_numpy(image).permute(2, 0, 1).float() / 255
        - torch.tensor(clf.mean).view(3, 1, 1)
    ) / torch.tensor(clf.std).view(3, 1, 1)
    assert x.shape == (1, 3, 64, 64) and torch.allclose(x[0], expected, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(clf.module(x), model(x), atol=1e-6)
    assert torch.allclose(clf.predict_proba(x).sum(1), torch.ones(1))
    # a larger image is resized to the input size
    assert clf.preprocess(np.zeros((100, 80, 3), np.uint8)).shape == (1, 3, 64, 64)


def test_checkpoint_dict_and_class_count(resnet_file, tmp_path):
    model, _ = resnet_file
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    clf = load_classifier("resnet18", path, num_classes=4)
    assert clf.class_names == ("class 0", "class 1", "class 2", "class 3")


def test_bad_loads_are_named(resnet_file, tmp_path):
    _, path = resnet_file
    with pytest.raises(ValueError, match="sha256"):
        load_classifier("resnet18", path, num_classes=4, expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="unknown architecture"):
        load_classifier("resnet19", path, num_classes=4)
    with pytest.raises(ValueError, match="do not fit"):
        load_classifier("resnet18", path, num_classes=1000)
    with pytest.raises(FileNotFoundError):
        load_classifier("resnet18", tmp_path / "missing.pt", num_classes=4)
    with pytest.raises(ValueError, match="3 values"):
        load_classifier("resnet18", path, num_classes=4, mean=[0.5, 0.5])
    clf = load_classifier("resnet18", path, num_classes=4)
    with pytest.raises(ValueError, match="uint8"):
        clf.preprocess(np.zeros((8, 8), np.float32))


def test_torchscript_file(tmp_path):
    torch.manual_seed(1)
    model = build_demo_cnn(3).eval()
    path = tmp_path / "scripted.pt"
    torch.jit.script(model).save(str(path))
    clf = load_classifier("torchscript", path, class_names=["x", "y", "z"], input_size=64)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(clf.module(x), model(x), atol=1e-6)
    curve = causal_curve(clf.module, x, torch.rand(64, 64), step=256)
    assert curve.scores.shape == (1, 17)
    with pytest.raises(ValueError, match="TorchScript"):
        grad_cam(clf.module, x, "features.conv4")


def test_default_target_layers():
    assert default_target_layer("vgg16") == "features.29"  # as in the VOICE reference code
    assert default_target_layer("resnet50") == "layer4"
    assert default_target_layer("demo") == "features.conv4"
    assert default_target_layer("no_such_net") is None
