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


def without_lesions(cond: torch.Tensor, lesion_labels: tuple, anatomy_label: int) -> torch.Tensor:
    """A copy of window conditions (B, L + C + 1, n, h, w) (``window_condition``'s layout, batched) whose mask
    channels have every lesion label's occupancy moved to ``anatomy_label``: the same patient without the lesions,
    the reference that lesion guidance pushes away from."""
    out = cond.clone()
    lesions = list(lesion_labels)
    out[:, anatomy_label] += out[:, lesions].sum(dim=1)
    out[:, lesions] = 0.0
    return out


def lesion_region(cond: torch.Tensor, lesion_labels: tuple) -> torch.Tensor:
    """(B, 1, n, h, w) weights in [0, 1] of window conditions' lesions and a margin around them: 1 on latent pixels
    within 2 (in-plane) and 1 (across slices) of any lesion occupancy, falling to 0 over one more pixel in-plane."""
    lesion = (cond[:, list(lesion_labels)].sum(dim=1, keepdim=True) > 0).float()
    grown = F.max_pool3d(lesion, (3, 5, 5), stride=1, padding=(1, 2, 2))
    return F.avg_pool3d(grown, (1, 3, 3), stride=1, padding=(0, 1, 1), count_include_pad=False)
