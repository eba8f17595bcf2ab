"""The per-slice conditions of the window model, built the same way for training and for sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.utils import one_hot

OFFSET_SCALE = 16.0  # slice offsets from the informed slice are given in units of the default window length


def mask_to_latent_grid(mask: torch.Tensor, num_labels: int, latent_size: int) -> torch.Tensor:
    """(Z, S, S) integer mask -> (Z, L, h, w) one-hot label occupancy at latent resolution (area pooling)."""
    onehot = F.one_hot(mask.long().clamp(0, num_labels - 1), num_labels).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, latent_size)


def mask_onehot(mask, num_labels: int) -> torch.Tensor:
    """(X, Y, Z) (or (X, Y)) integer mask -> (L, X, Y, Z) float one-hot: the 3D backend's control, in training and
    sampling, and the mask channels of the joint autoencoder."""
    return one_hot(torch.as_tensor(mask).long()[None, None], num_labels, dim=1)[0].float()


def window_condition(
    mask_lat: torch.Tensor, informed: torch.Tensor, offsets: torch.Tensor, mask_only: bool = False
) -> torch.Tensor:
    """Concatenate (n, L, h, w) mask occupancy, the (C, h, w) informed latent and the slices' offsets from it.

    Returns (L + C + 1, n, h, w), the channel layout the window UNet's ``in_channels`` counts after the latents.
    ``mask_only`` zeroes the informed latent and the offsets: the Make-A-Volume-style baseline (mask only, no
    patient prior) keeps the same channel layout, so it is the same network, trainer and sampler.
    """
    n, _, h, w = mask_lat.shape
    inf = informed[None].expand(n, -1, -1, -1)
    off = (offsets.float() / OFFSET_SCALE).view(n, 1, 1, 1).expand(n, 1, h, w)
    if mask_only:
        inf, off = torch.zeros_like(inf), torch.zeros_like(off)
    return torch.cat([mask_lat.float(), inf.float(), off], dim=1).permute(1, 0, 2, 3).contiguous()
