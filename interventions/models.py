"""Classifier loading: torchvision architectures, TorchScript files and the demo CNN.

Weights are files on disk; nothing is downloaded. ``load_classifier`` returns a ``Classifier``
(eval-mode module, class names, input size, normalisation, target layer) whose ``preprocess``
turns a uint8 (H, W, 3) image into the normalised (1, 3, h, w) tensor the module expects.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEMO_ARCHITECTURE = "demo"
DEMO_INPUT_SIZE = 64
DEMO_MEAN = (0.5, 0.5, 0.5)
DEMO_STD = (0.25, 0.25, 0.25)
DEMO_TARGET_LAYER = "features.conv4"
DEMO_WEIGHTS = Path(__file__).resolve().parent / "weights" / "demo_cnn.pt"

# Last convolutional feature map per torchvision family (as in the VOICE reference code).
_TARGET_LAYERS: tuple[tuple[str, str], ...] = (
    ("resnet", "layer4"),
    ("resnext", "layer4"),
    ("wide_resnet", "layer4"),
    ("densenet", "features.norm5"),
    ("alexnet", "features.11"),
    ("squeezenet", "features.12.expand3x3_activation"),
    ("mobilenet", "features"),
    ("efficientnet", "features"),
    ("convnext", "features"),
    ("regnet", "trunk_output"),
    ("shufflenet", "conv5"),
    ("mnasnet", "layers"),
)


@dataclass
class Classifier:
    """A loaded classifier and what is needed to feed and explain it."""

    module: nn.Module
    architecture: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    target_layer: str | None
    weights_sha256: str | None = None

    @property
    def device(self) -> torch.device:
        for tensor in self.module.parameters():
            return tensor.device
        return torch.device("cpu")

    def preprocess(self, image: np.ndarray) -> Tensor:
        """uint8 (H, W, 3) RGB -> float in [0, 1] -> bilinear resize to ``input_size``
        (antialiased, align_corners=False) -> (x - mean) / std, as (1, 3, h, w)."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image must be a uint8 (H, W, 3) RGB array, got {image.dtype} {image.shape}"
            )
        x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255.0  # copies
        if tuple(x.shape[-2:]) != tuple(self.input_size):
            x = F.interpolate(
                x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True
            )
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    def predict_proba(self, x: Tensor) -> Tensor:
        """softmax(module(x)) for normalised (B, 3, h, w) inputs, without gradients."""
        with torch.inference_mode():
            return torch.softmax(self.module(x.to(self.device)), dim=1)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_demo_cnn(num_classes: int = 6) -> nn.Module:
    """The demo CNN: four 3x3 conv-BN-ReLU blocks (24, 48, 64, 96 channels; max-pooling after
    the first three), global average pooling and a linear layer; ``features.conv4`` (96 x 8 x 8
    on a 64 x 64 input) is the target layer. It sees the fixed-normalised input directly (no
    per-image standardisation), so the ``zero`` substrate stays the data set's grey and a
    deleted object's silhouette is not rescaled into a high-contrast shape."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )

    features = nn.Sequential(
        OrderedDict(
            conv1=block(3, 24),
            pool1=nn.MaxPool2d(2),
            conv2=block(24, 48),
            pool2=nn.MaxPool2d(2),
            conv3=block(48, 64),
            pool3=nn.MaxPool2d(2),
            conv4=block(64, 96),
        )
    )
    return nn.Sequential(
        OrderedDict(
            features=features,
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(96, num_classes),
        )
    )


def default_target_layer(architecture: str) -> str | None:
    """The usual Grad-CAM layer for a torchvision family (``vgg*``: the last ReLU of
    ``features``), the demo CNN's ``features.conv4``, or None when unknown."""
    if architecture == DEMO_ARCHITECTURE:
        return DEMO_TARGET_LAYER
    if architecture.startswith("vgg"):
        with torch.device("meta"):  # structure only, no memory
            model = torchvision.models.get_model(architecture, weights=None)
        relus = [n for n, m in model.features.named_children() if isinstance(m, nn.ReLU)]
        return f"features.{relus[-1]}"
    for prefix, layer in _TARGET_LAYERS:
        if architecture.startswith(prefix):
            return layer
    return None


def _state_dict(path: Path) -> dict[str, Tensor]:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if (
        isinstance(loaded, dict)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], dict)
    ):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def load_classifier(
    architecture: str,
    weights_path: str | Path | None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    target_layer: str | None = None,
    device: str | torch.device = "cpu",
    expected_sha256: str | None = None,
) -> Classifier:
    """Load a classifier in eval mode: ``architecture`` is a torchvision model name (weights
    from the state-dict file ``weights_path``), ``"torchscript"`` (``weights_path`` is a
    TorchScript file) or ``"demo"`` (default: the committed demo CNN weights). Unspecified
    class names become "class 0", ...; input size 224 and ImageNet normalisation are the
    torchvision defaults. A given ``expected_sha256`` must match the file."""
    if architecture == DEMO_ARCHITECTURE:
        from interventions.demo_data import CLASS_NAMES

        weights_path = DEMO_WEIGHTS if weights_path is None else weights_path
        class_names = CLASS_NAMES if class_names is None else class_names
        input_size = DEMO_INPUT_SIZE if input_size is None else input_size
        mean = DEMO_MEAN if mean is None else mean
        std = DEMO_STD if std is None else std
    if weights_path is None:
        raise ValueError(f"architecture {architecture!r} needs a weights file (weights_path)")
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    sha = file_sha256(path)
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise ValueError(f"sha256 of {path} is {sha}, expected {expected_sha256}")

    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"num_classes={num_classes} but {len(class_names)} class names given")
        num_classes = len(class_names)

    if architecture == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "jit.load is deprecated"
            module = torch.jit.load(str(path), map_location=device)
        layer = target_layer
    else:
        if architecture == DEMO_ARCHITECTURE:
            module = build_demo_cnn(num_classes or 6)
        else:
            if architecture not in torchvision.models.list_models(module=torchvision.models):
                raise ValueError(
                    f"unknown architecture {architecture!r}: use a torchvision classification "
                    "model name, 'torchscript' or 'demo'"
                )
            module = torchvision.models.get_model(
                architecture, weights=None, num_classes=num_classes or 1000
            )
        try:
            module.load_state_dict(_state_dict(path))
        except RuntimeError as exc:
            raise ValueError(f"weights in {path} do not fit {architecture!r}: {exc}") from None
        layer = target_layer or default_target_layer(architecture)
        if layer is not None:
            module.get_submodule(layer)  # fails early with the module's own message
        module = module.to(device)
    module.eval()

    if num_classes is None:
        size = _pair(input_size or 224)
        with torch.inference_mode():
            probe = torch.zeros(1, 3, *size, device=device)
            num_classes = int(module(probe).shape[1])
    names = class_names or tuple(f"class {i}" for i in range(num_classes))
    return Classifier(
        module=module,
        architecture=architecture,
        class_names=tuple(names),
        input_size=_pair(input_size or 224),
        mean=_triple(mean or IMAGENET_MEAN, "mean"),
        std=_triple(std or IMAGENET_STD, "std"),
        target_layer=layer,
        weights_sha256=sha,
    )


def load_demo_classifier(weights_path: str | Path | None = None, device: str = "cpu") -> Classifier:
    """The committed demo CNN (``interventions/weights/demo_cnn.pt``)."""
    return load_classifier(DEMO_ARCHITECTURE, weights_path, device=device)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    if len(values) != 3:
        raise ValueError(f"{what} needs 3 values (R, G, B), got {list(values)}")
    return (float(values[0]), float(values[1]), float(values[2]))
