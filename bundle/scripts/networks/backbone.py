"""A pretrained backbone in the segmenter: every weight of the pretrained SegResNet except its output head.

Pretraining (``pretrain_segmenter.json``) trains the segmenter's own network with another output head (restored
image, + template coordinates); the encoder *and* the decoder carry over, because the frozen-backbone protocol
(the paper's non-linear probing) needs full-resolution features, which only the decoder gives.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from monai.networks.nets import SegResNet
from torch import nn

from ..errors import Gem3dInputError

# the pretext heads that stay behind: MONAI SegResNet's output head (GroupNorm, ReLU, 1x1x1 convolution) and the
# bottleneck coordinate head of ``PretextSegResNet``
HEADS = ("conv_final.", "coordinate_head.")
COORDINATE_HEADS = ("output", "bottleneck")


def backbone_state(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(HEADS)}


class PretextSegResNet(SegResNet):
    """The segmenter's SegResNet with the pretext's output channels. ``coordinate_head="output"``: all of them from the
    network's own output head (the restored image and the template coordinates share the last full-resolution
    features). ``"bottleneck"``: the last 3 channels (coordinates) come from a 1x1x1 head on the encoder's deepest
    features, upsampled, so that anatomical guidance shapes the coarse features where a body-part coordinate lives
    and leaves the full-resolution features to the restoration. Either way the output is (B, out_channels, ...) and
    the backbone (every weight but the heads) has exactly the segmenter's keys. MONAI's SegResNet has no auxiliary
    head, hence this subclass."""

    def __init__(self, out_channels: int, coordinate_head: str = "output", **kwargs):
        if coordinate_head not in COORDINATE_HEADS:
            raise Gem3dInputError(f"coordinate_head must be one of {COORDINATE_HEADS}, not {coordinate_head!r}")
        deep = coordinate_head == "bottleneck"
        if deep and out_channels < 4:
            raise Gem3dInputError("a bottleneck coordinate head needs a pretext with coordinates (4 output channels)")
        super().__init__(out_channels=out_channels - 3 * int(deep), **kwargs)
        self.coordinate_head = None
        if deep:
            channels = self.init_filters * 2 ** (len(self.blocks_down) - 1)
            self.coordinate_head = nn.Sequential(
                nn.GroupNorm(min(8, channels), channels), nn.ReLU(), nn.Conv3d(channels, 3, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coordinate_head is None:
            return super().forward(x)
        deep, skips = self.encode(x)
        skips.reverse()
        coords = F.interpolate(self.coordinate_head(deep), size=x.shape[2:], mode="trilinear", align_corners=False)
        return torch.cat([self.decode(deep, skips), coords], dim=1)


def segmenter_from_backbone(segmenter: nn.Module, backbone_file: str | None, freeze: bool = False, device="cpu"):
    """``segmenter`` (SegResNet) with the backbone of ``backbone_file`` (None: its own random initialisation, the
    "scratch" row). ``freeze``: the backbone stops training and the head becomes a small non-linear probe
    (norm, ReLU, 1x1x1 conv to 32, ReLU, 1x1x1 conv to the labels), the only part that trains."""
    if backbone_file:
        if not os.path.isfile(backbone_file):
            raise Gem3dInputError(f"pretrained backbone not found: {backbone_file} (run pretrain_segmenter.json)")
        source = backbone_state(torch.load(backbone_file, map_location="cpu", weights_only=True))
        own = backbone_state(segmenter.state_dict())
        bad = sorted(set(own) ^ set(source)) + [k for k in own if k in source and own[k].shape != source[k].shape]
        if bad:
            raise Gem3dInputError(f"backbone {backbone_file} does not fit the segmenter: {bad[:6]}")
        segmenter.load_state_dict(source, strict=False)
    if freeze:
        for param in segmenter.parameters():
            param.requires_grad_(False)
        conv = [m for m in segmenter.conv_final.modules() if isinstance(m, nn.Conv3d)][-1]
        channels, labels = conv.in_channels, conv.out_channels
        segmenter.conv_final = nn.Sequential(
            nn.GroupNorm(min(8, channels), channels),
            nn.ReLU(),
            nn.Conv3d(channels, 32, 1),
            nn.ReLU(),
            nn.Conv3d(32, labels, 1),
        )
    return segmenter.to(device)
