"""Losses that MONAI does not ship in the form the trainers need."""

from __future__ import annotations

import torch
from torch import nn


class KLAutoencoderLoss(nn.Module):
    """L1 reconstruction + ``kl_weight`` x KL(q(z|x) || N(0, I)) for ``AutoencoderKL``'s (recon, mu, sigma) output.

    MONAI's SupervisedTrainer hands the network's whole output to the loss; AutoencoderKL returns a tuple.
    """

    def __init__(self, kl_weight: float = 1e-6):
        super().__init__()
        self.kl_weight = kl_weight

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        recon, mu, sigma = output
        l1 = torch.abs(recon.float() - target.float()).mean()
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-8) - 1).flatten(1).sum(1).mean()
        return l1 + self.kl_weight * kl
