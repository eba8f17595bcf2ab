"""Real-vs-generated critics for the rewards: MONAI's ``Discriminator`` (2D for axial slices, 3D for whole volumes)
returning a logit, on inputs resized to the fixed shape it was built for."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import Discriminator
from torch import nn


class Critic(nn.Module):
    def __init__(self, in_shape, channels, strides, num_res_units: int = 1, dropout: float = 0.2):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.net = Discriminator(
            self.in_shape, channels, strides, num_res_units=num_res_units, dropout=dropout, last_act=None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, *spatial) -> (B, 1) logit of "real"."""
        return self.net(fit(x, self.in_shape[1:]))


def fit(x: torch.Tensor, shape) -> torch.Tensor:
    """Resize (B, C, *spatial) to ``shape`` (linear interpolation) unless it already has it."""
    if tuple(x.shape[2:]) == tuple(shape):
        return x
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(x, size=tuple(shape), mode=mode, align_corners=False)
