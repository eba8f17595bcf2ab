"""Batch preparation for the diffusion trainers (MONAI's v-prediction batches plus the conditioning mode)."""

from __future__ import annotations

import torch
from monai.engines.utils import VPredictionPrepareBatch

from ..sampling.sampler import correlated_noise


class ConditionedVPredictionBatch(VPredictionPrepareBatch):
    """MONAI's ``VPredictionPrepareBatch`` that also tells ``DiffusionInferer`` how to use the condition
    ('concat' for the window model's per-slice channels, 'crossattn' for the informed model's position).

    ``noise_correlation`` > 0 draws the training noise of a window (B, C, n, H, W) as the sampler draws its starting
    noise: an AR(1) chain along the slice axis, every slice still N(0, I) (PYoCo trains with the noise it samples
    with). 0 is MONAI's independent noise.
    """

    def __init__(
        self,
        scheduler,
        num_train_timesteps: int,
        condition_name: str,
        mode: str = "concat",
        noise_correlation: float = 0.0,
    ):
        super().__init__(scheduler=scheduler, num_train_timesteps=num_train_timesteps, condition_name=condition_name)
        self.mode = mode
        self.noise_correlation = float(noise_correlation)

    def get_noise(self, images: torch.Tensor) -> torch.Tensor:
        if self.noise_correlation == 0.0:
            return super().get_noise(images)
        if images.ndim != 5:
            raise ValueError(f"slice-correlated noise needs windows (B, C, n, H, W), got shape {tuple(images.shape)}")
        shape = images.movedim(2, 0).shape
        return correlated_noise(shape, self.noise_correlation, None).movedim(0, 2).to(images)

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        infer_kwargs["mode"] = self.mode
        return images, target, args, infer_kwargs
