"""A feature-matching reward: how far a volume's feature statistics lie from those of real volumes, under a critic's
fixed convolutional features, instead of the critic's logit.

A critic's logit has no optimum at "real": real test volumes score about +9 under the planes critic and generated ones
about -2, so its gradient keeps pushing past real, into whatever the small discriminator pays for (BENCHMARKS,
"Reward backpropagation": with another patient's informed slice every logit reward raised FID). Feature matching
(Salimans et al., 2016, for GAN generators) asks instead that the statistics of the critic's intermediate features
be those of real data. Here, per volume: the mean and the standard deviation of every channel of every convolutional
stage over all the planes the critic scores, each standardised by the spread of the same statistic over the real
training volumes. The reward is minus their mean square: about -1 for a typical real volume, 0 at the real mean, and
a generated volume gains only by moving its statistics toward real ones, never past them.
"""

from __future__ import annotations

import torch

from ..networks.critics import fit
from .critic_data import critic_inputs
from .rewards import MultiScaleReward


class FeatureMatchingReward(MultiScaleReward):
    """``MultiScaleReward`` (same critics, files and mix weights; each critic's part is its feature-matching score)
    with ``real``: the real volumes that set the reference statistics ([{"image": (1, S, S, Z)}], model space)."""

    fixed_critics = True  # the reference statistics hold for the critics' weights they were computed with

    def __init__(self, critics: dict, files: dict, weights: dict, real: list, device="cpu", min_foreground=0.05):
        super().__init__(critics, files, weights, device=device, min_foreground=min_foreground)
        if not real:
            raise ValueError("a feature-matching reward needs real volumes for its reference statistics")
        self.real, self._reference = real, {}

    def statistics(self, image, kind: str) -> torch.Tensor:
        """(D,) per-channel mean and standard deviation of every convolutional stage of the ``kind`` critic over the
        planes it scores in one (S, S, Z) volume (differentiable in a tensor ``image``); empty without any plane."""
        critic = self.critics[kind]
        h = fit(critic_inputs(image, kind, self.min_foreground).to(self.device), critic.in_shape[1:])
        if not len(h):
            return h.new_zeros(0)
        stats = []
        for stage in critic.net.net:  # monai Regressor: the convolutional stages, then the final linear layer
            h = stage(h)
            per_channel = h.transpose(0, 1).flatten(1)  # (C, planes x positions)
            stats += [per_channel.mean(1), per_channel.std(1)]
        return torch.cat(stats)

    @torch.no_grad()
    def reference(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and the spread of ``statistics`` over the real volumes (computed once per critic)."""
        if kind not in self._reference:
            stats = torch.stack([self.statistics(case["image"][0], kind) for case in self.real])
            # the floor keeps a statistic that hardly varies between real volumes from ruling the sum
            spread = stats.std(0)
            self._reference[kind] = (stats.mean(0), spread + 1e-3 * spread.mean())
        return self._reference[kind]

    def part(self, image, kind: str) -> torch.Tensor:
        """Minus the mean squared standardised distance of the ``kind`` critic's statistics from real (0 where it sees
        nothing)."""
        mean, spread = self.reference(kind)
        stats = self.statistics(image, kind)
        return -((stats - mean) / spread).pow(2).mean() if len(stats) else mean.new_zeros(())
