"""The multi-scale reward: a 2D critic's realism score of every axial slice (local texture) averaged, mixed with a
3D critic's score of the whole volume (global structure, through-plane coherence), optionally minus the distance of
the volume's gradient anisotropy from real (the through-plane measure of ``metrics.consistency``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..metrics.consistency import gradient_anisotropy
from ..networks.weights import LazyWeights
from .critic_data import axial_slices


class MultiScaleReward:
    def __init__(
        self,
        slice_critic,
        slice_file: str,
        volume_critic,
        volume_file: str,
        volume_weight: float = 0.5,
        consistency_weight: float = 0.0,
        real_anisotropy: float | None = None,
        device="cpu",
        min_foreground: float = 0.05,
    ):
        if not 0.0 <= float(volume_weight) <= 1.0:
            raise ValueError(f"volume_weight must lie in [0, 1], got {volume_weight}")
        if consistency_weight and not real_anisotropy:
            raise ValueError("consistency_weight > 0 needs real_anisotropy (the real volumes' gradient anisotropy)")
        self.critics = LazyWeights(
            device,
            slice=(slice_critic, slice_file, "2D slice critic"),
            volume=(volume_critic, volume_file, "3D volume critic"),
        )
        self.device = torch.device(device)
        self.volume_weight, self.consistency_weight = float(volume_weight), float(consistency_weight)
        self.real_anisotropy, self.min_foreground = real_anisotropy, float(min_foreground)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict:
        """Score one (S, S, Z) model-space volume (as ``critic_data.scored_image`` delivers it)."""
        vol = torch.from_numpy(np.ascontiguousarray(image, np.float32))
        slices = torch.from_numpy(np.ascontiguousarray(axial_slices(image, self.min_foreground)))[:, None]
        s = float(self.critics["slice"](slices.to(self.device)).mean()) if len(slices) else 0.0
        v = float(self.critics["volume"](vol[None, None].to(self.device))[0, 0])
        out = {"slice": s, "volume": v, "reward": (1.0 - self.volume_weight) * s + self.volume_weight * v}
        if self.consistency_weight:
            aniso = gradient_anisotropy(image, mask)
            out["anisotropy_x_real"] = aniso / self.real_anisotropy
            out["reward"] -= self.consistency_weight * abs(math.log(max(out["anisotropy_x_real"], 1e-6)))
        return out
