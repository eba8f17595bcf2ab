"""Losses that MONAI does not ship in the form the trainers need."""

from __future__ import annotations

import torch
from monai.losses import SSIMLoss
from torch import nn


class KLAutoencoderLoss(nn.Module):
    """L1 + ``ssim_weight`` x (1 - SSIM) + ``kl_weight`` x KL(q(z|x) || N(0, I)) for ``AutoencoderKL``'s output.

    MONAI's SupervisedTrainer hands the network's whole output to the loss; AutoencoderKL returns a tuple
    (recon, mu, sigma), which MONAI's own losses do not unpack. The SSIM term (MONAI ``SSIMLoss``) is off by
    default; the decoder fine-tuning turns it on to push structural similarity, which L1 alone raises slowly.
    """

    def __init__(self, kl_weight: float = 1e-6, ssim_weight: float = 0.0, spatial_dims: int = 2):
        super().__init__()
        self.kl_weight, self.ssim_weight = kl_weight, ssim_weight
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=1.0) if ssim_weight > 0 else None

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        recon, mu, sigma = output
        recon, target = recon.float(), target.float()
        loss = torch.abs(recon - target).mean()
        if self.ssim is not None:
            loss = loss + self.ssim_weight * self.ssim(recon, target)
        if self.kl_weight > 0:
            kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-8) - 1).flatten(1).sum(1).mean()
            loss = loss + self.kl_weight * kl
        return loss
