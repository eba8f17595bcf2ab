"""Losses that MONAI does not ship in the form the trainers need."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from torch import nn


class KLAutoencoderLoss(nn.Module):
    """L1 + ``ssim_weight`` x (1 - SSIM) + ``kl_weight`` x KL(q(z|x) || N(0, I)) for ``AutoencoderKL``'s output.

    MONAI's SupervisedTrainer hands the network's whole output to the loss; AutoencoderKL returns a tuple
    (recon, mu, sigma), which MONAI's own losses do not unpack. The SSIM term (MONAI ``SSIMLoss``) is off by
    default; the decoder fine-tuning turns it on to push structural similarity, which L1 alone raises slowly.

    Channels after the first ``image_channels`` are a one-hot mask (the joint image + mask autoencoder): the output's
    mask channels are logits, scored by cross-entropy against the label (weight ``mask_weight``); the image terms
    see only the image channels.
    """

    def __init__(
        self,
        kl_weight: float = 1e-6,
        ssim_weight: float = 0.0,
        spatial_dims: int = 2,
        image_channels: int = 1,
        mask_weight: float = 1.0,
    ):
        super().__init__()
        self.kl_weight, self.ssim_weight = kl_weight, ssim_weight
        self.image_channels, self.mask_weight = int(image_channels), float(mask_weight)
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=1.0) if ssim_weight > 0 else None

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        recon, mu, sigma = output
        recon, target = recon.float(), target.float()
        c = self.image_channels
        mask_loss = 0.0
        if target.shape[1] > c:
            mask_loss = self.mask_weight * F.cross_entropy(recon[:, c:], target[:, c:].argmax(1))
            recon, target = recon[:, :c], target[:, :c]
        loss = torch.abs(recon - target).mean() + mask_loss
        if self.ssim is not None:
            loss = loss + self.ssim_weight * self.ssim(recon, target)
        if self.kl_weight > 0:
            kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-8) - 1).flatten(1).sum(1).mean()
            loss = loss + self.kl_weight * kl
        return loss


class ThroughPlaneLoss(nn.Module):
    """MSE + ``weight`` x MSE of the differences between neighbouring slices of windows (B, C, n, H, W).

    With independent per-slice errors e, the second term is 2 var(e) - 2 cov(e_z, e_z+1): it costs errors that
    change from slice to slice (the flicker) more than errors shared by neighbours, which plain MSE cannot tell
    apart. Weight 0 is ``torch.nn.MSELoss``. Works on any prediction target (v here): with one timestep per window,
    the x0 error is a fixed multiple of the v error within a window.
    """

    def __init__(self, weight: float = 1.0):
        super().__init__()
        if weight < 0:
            raise ValueError(f"through-plane loss weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(pred, target)
        if self.weight == 0.0:
            return loss
        if pred.ndim != 5:
            raise ValueError(f"the through-plane loss needs windows (B, C, n, H, W), got shape {tuple(pred.shape)}")
        return loss + self.weight * F.mse_loss(pred.diff(dim=2), target.diff(dim=2))
