"""The multi-scale reward: critics' realism scores of a volume, mixed. A 2D critic scores every axial slice (local
texture), a 2D critic every coronal and sagittal plane (through-plane coherence: flicker shows there as streaks), a
3D critic the whole volume (global structure); each score is the mean logit over what the critic sees. Optionally
minus the distance of the volume's gradient anisotropy from real (the through-plane measure of
``metrics.consistency``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..metrics.consistency import gradient_anisotropy
from ..networks.weights import LazyWeights
from .critic_data import CRITIC_KINDS, critic_inputs


class MultiScaleReward:
    """``critics``: {kind: network} and ``files``: {kind: weights}; ``weights``: {kind: mix weight} (a critic with
    weight 0 is not loaded)."""

    def __init__(
        self,
        critics: dict,
        files: dict,
        weights: dict,
        consistency_weight: float = 0.0,
        real_anisotropy: float | None = None,
        device="cpu",
        min_foreground: float = 0.05,
    ):
        unknown = sorted(set(weights) - set(CRITIC_KINDS))
        if unknown or any(float(w) < 0 for w in weights.values()) or not any(float(w) for w in weights.values()):
            raise ValueError(f"reward weights must be >= 0 over {CRITIC_KINDS}, not all 0; got {weights}")
        if consistency_weight and not real_anisotropy:
            raise ValueError("consistency_weight > 0 needs real_anisotropy (the real volumes' gradient anisotropy)")
        self.weights = {k: float(w) for k, w in weights.items() if float(w) > 0}
        self.critics = LazyWeights(device, **{k: (critics[k], files[k], f"{k} critic") for k in self.weights})
        self.device = torch.device(device)
        self.consistency_weight, self.real_anisotropy = float(consistency_weight), real_anisotropy
        self.min_foreground = float(min_foreground)

    def part(self, image, kind: str) -> torch.Tensor:
        """The ``kind`` critic's score of one volume: its mean logit over what it sees (0 where it sees nothing)."""
        x = critic_inputs(image, kind, self.min_foreground).to(self.device)
        return self.critics[kind](x).mean() if len(x) else x.new_zeros(())

    def critics_reward(self, image) -> tuple[torch.Tensor, dict]:
        """The critics' mix for one (S, S, Z) model-space volume (array, or tensor to differentiate through) and
        each critic's score."""
        parts = {kind: self.part(image, kind) for kind in self.weights}
        total = sum(weight * parts[kind] for kind, weight in self.weights.items())
        return total / sum(self.weights.values()), parts

    @torch.no_grad()
    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict:
        """Score one (S, S, Z) model-space volume (as ``synthesize.delivered`` gives it)."""
        total, parts = self.critics_reward(image)
        out = {kind: float(value) for kind, value in parts.items()}
        out["reward"] = float(total)
        if self.consistency_weight:
            out["anisotropy_x_real"] = gradient_anisotropy(image, mask) / self.real_anisotropy
            out["reward"] -= self.consistency_weight * abs(math.log(max(out["anisotropy_x_real"], 1e-6)))
        return out
