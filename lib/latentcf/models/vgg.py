"""VGG16 networks for the Galaxy10 chapter, in plain torch (no torchvision import).

The official LeapFactual code (``training_scripts/``: ``wraped_vgg.py`` and the WAE's perceptual
loss) uses torchvision's VGG16-BN with ImageNet weights as the classifier and the frozen VGG16 ``features``
as a perceptual loss. The
modules here carry torchvision's parameter names, so its published ImageNet weights load into them
directly: :func:`imagenet_state_dict` fetches them with ``torch.hub`` where the download is possible
and says clearly when it is not. ``width`` scales every layer for narrow smoke-scale networks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from latentcf.core.errors import LatentcfError
from latentcf.core.weights import published_state_dict

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
IMAGENET_WEIGHTS = {
    "vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
    "vgg16_features": "https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth",
}
"""torchvision's IMAGENET1K_V1 (VGG16-BN) and IMAGENET1K_FEATURES (VGG16) weights; the hash prefix is checked."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PERCEPTUAL_BLOCKS = ((0, 4), (4, 9), (9, 16), (16, 23))
"""Slices of VGG16 ``features`` ending at relu1_2, relu2_2, relu3_3 and relu4_3."""


def vgg_features(batch_norm: bool, width: float = 1.0) -> nn.Sequential:
    """The 13 convolutions and 5 max-pools of VGG16 (with BatchNorm after each conv if ``batch_norm``)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        out = max(1, round(item * width))
        layers += [nn.Conv2d(channels, out, 3, padding=1)] + ([nn.BatchNorm2d(out)] if batch_norm else [])
        layers.append(nn.ReLU(inplace=True))
        channels = out
    return nn.Sequential(*layers)


def imagenet_preset(x: torch.Tensor) -> torch.Tensor:
    """The preset of torchvision's ImageNet weights: short side to 256, centre crop 224, normalise.

    The resize is bilinear with antialiasing, as torchvision's.

    Shapes: ``(B, 3, H, W)`` in [0, 1] ``-> (B, 3, 224, 224)``. A 128x128 Galaxy10 image is upsampled.
    """
    height, width = x.shape[-2:]
    scale = 256 / min(height, width)
    resized = F.interpolate(x, size=(round(height * scale), round(width * scale)), mode="bilinear",
                            antialias=True, align_corners=False)
    top, left = (resized.shape[-2] - 224) // 2, (resized.shape[-1] - 224) // 2
    cropped = resized[..., top:top + 224, left:left + 224]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (cropped - mean) / std


class VGG16BN(nn.Module):
    """VGG16-BN classifier. ``(B, 3, H, W)`` in [0, 1] ``-> (B, num_classes)`` logits.

    ``imagenet_input=True`` applies :func:`imagenet_preset` first, as the official wrapper does; a
    smoke-scale network (``width < 1``, ``hidden`` small) can take its images as they are.
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0, hidden: int = 4096,
                 imagenet_input: bool = True) -> None:
        super().__init__()
        self.imagenet_input = imagenet_input
        self.features = vgg_features(batch_norm=True, width=width)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        channels = max(1, round(512 * width))
        self.classifier = nn.Sequential(nn.Linear(channels * 49, hidden), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.imagenet_input:
            x = imagenet_preset(x)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def load_imagenet(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load ImageNet weights into everything but the last layer (which has 1000 classes there)."""
        kept = {key: value for key, value in state_dict.items() if not key.startswith("classifier.6.")}
        missing, unexpected = self.load_state_dict(kept, strict=False)
        if unexpected or set(missing) != {"classifier.6.weight", "classifier.6.bias"}:
            raise LatentcfError(f"ImageNet weights do not fit this VGG16-BN (missing {missing}, "
                                f"unexpected {unexpected}); only width=1, hidden=4096 matches them")


class PerceptualLoss(nn.Module):
    """Mean over four VGG16 blocks of the MSE between feature maps of two images (frozen network).

    Shapes: ``x, y: (B, 3, H, W)`` in [0, 1] ``-> ()``; the images enter without ImageNet
    normalisation, as in the official code. Without ImageNet weights the features are random, which
    the caller must say (see :func:`imagenet_state_dict`).
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.features = vgg_features(batch_norm=False, width=width)[:PERCEPTUAL_BLOCKS[-1][1]]
        self.requires_grad_(False)

    def load_imagenet(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load the ``features`` part of torchvision's VGG16 ImageNet weights (the first 23 layers)."""
        own = self.state_dict()
        self.load_state_dict({key: state_dict[key] for key in own})

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = []
        for start, stop in PERCEPTUAL_BLOCKS:
            block = self.features[start:stop]
            x, y = block(x), block(y)
            losses.append(F.mse_loss(x, y))
        return torch.stack(losses).mean()


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor] | None:
    """torchvision's ImageNet weights ``name`` (a key of :data:`IMAGENET_WEIGHTS`), or ``None`` if they cannot be had.

    Downloaded once into torch's hub cache and checked by their hash prefix. ``None`` means no
    network and no cached copy; the caller then trains from scratch and must say so.
    """
    if name not in IMAGENET_WEIGHTS:
        raise LatentcfError(f"unknown ImageNet weights '{name}'; known: {', '.join(IMAGENET_WEIGHTS)}")
    return published_state_dict(IMAGENET_WEIGHTS[name], check_hash=True)
