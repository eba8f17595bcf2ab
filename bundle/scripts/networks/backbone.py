"""A pretrained backbone in the segmenter: every weight of the pretrained SegResNet except its output head.

Pretraining (``pretrain_segmenter.json``) trains the segmenter's own network with another output head (restored
image, + template coordinates); the encoder *and* the decoder carry over, because the frozen-backbone protocol
(the paper's non-linear probing) needs full-resolution features, which only the decoder gives.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import Gem3dInputError

HEAD = "conv_final."  # MONAI SegResNet's output head: GroupNorm, ReLU, 1x1x1 convolution


def backbone_state(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(HEAD)}


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
