"""Inferers for validation of networks whose forward is not what should be compared with the target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.inferers import Inferer


class ReconstructionInferer(Inferer):
    """Validation of an autoencoder: the deterministic reconstruction (decode of the posterior mean)."""

    def __call__(self, inputs, network, *args, **kwargs):
        return network.reconstruct(inputs)


class JointReconstructionInferer(Inferer):
    """Validation of the joint image + mask autoencoder: the reconstruction with its mask logits replaced by the
    one-hot of their argmax (how a generated mask is decoded), so Dice can score it beside the image's PSNR."""

    def __init__(self, image_channels: int = 1):
        self.image_channels = int(image_channels)

    def __call__(self, inputs, network, *args, **kwargs):
        out = network.reconstruct(inputs)
        c = self.image_channels
        onehot = F.one_hot(out[:, c:].argmax(1), out.shape[1] - c).movedim(-1, 1).to(out.dtype)
        return torch.cat([out[:, :c], onehot], 1)
