"""Reward backpropagation (DRaFT-1 style) for the GEM-3D window model: the critics' gradient taken through the decoder
and every window's last denoising step into the trainable weights.

PPO estimates the reward's gradient from which rollouts scored better than others: with 16 rollouts an iteration on
two CPU threads that estimate was noise (BENCHMARKS, "Reward fine-tuning"). The critics and the decoder are
differentiable, so the gradient of a rollout's reward can be taken directly instead: the drawn last step
x = mean(weights) + std * noise moves with its mean for its fixed noise (the reparameterisation), the decoder carries
that to the image, and the critics score it. Every rollout then gives a gradient of its own, not one comparison. The
truncation to the last step (DRaFT's K = 1) keeps memory to one network call per wave; earlier steps and the slices a
window takes from earlier windows are constants.

What the image carries is exactly what the rollout delivered (scanner noise, clipping, background): the gradient
passes where the decoded voxel reached the output unclipped inside the anatomy.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..errors import Gem3dInputError
from .ppo import RewardTuning


class DirectRewardTuner(RewardTuning):
    """One iteration as an ignite process function: ``samples_per_mask`` rollouts per mask, each one's reward
    backpropagated (averaged over the iteration's rollouts), the anchor's pull added, one clipped optimiser step.
    The reward's consistency term (gradient anisotropy, computed in NumPy) has no gradient here and is refused."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.reward.consistency_weight:
            raise Gem3dInputError("reward backpropagation needs a differentiable reward: set consistency_weight 0")

    def pathwise_image(self, image: np.ndarray) -> torch.Tensor:
        """The last rollout's delivered (S, S, Z) ``image`` as a tensor equal to it, differentiable in the trainable
        weights (``RolloutSampler.pathwise_latents`` decoded)."""
        decoded = self.synth.model.decode_tensor(self.sampler.pathwise_latents(), self.synth.decoder).float().cpu()
        value = torch.from_numpy(np.asarray(image, np.float32))
        passes = (value > 0) & (value < 1)  # clipping and the zeroed background have no gradient
        return value + torch.where(passes, decoded - decoded.detach(), torch.zeros_like(decoded))

    def __call__(self, engine, batch: list[dict]) -> dict:
        start = time.time()
        jobs = list(self.jobs(int(engine.state.iteration), batch))
        self.optimizer.zero_grad(set_to_none=True)
        scores, volumes = [], []
        for _, item, informed, seed in jobs:
            _, score, image = self.rollout(item, seed, informed)
            total, _ = self.reward.critics_reward(self.pathwise_image(image))
            # inputs=: only the policy's weights take the gradient (the critics may be learning, adversarial.py)
            torch.autograd.backward(-total / len(jobs), inputs=self.params)
            scores.append(score)
            volumes.append(image)
        norm = self.anchored_step()
        parts = [k for k in scores[0] if k != "reward"]
        return {
            "loss": -float(np.mean([s["reward"] for s in scores])),
            "reward": float(np.mean([s["reward"] for s in scores])),
            **{f"reward_{k}": float(np.mean([s[k] for s in scores])) for k in parts},
            "grad_norm": norm,
            "drift": float(self.drift().detach()) ** 0.5,
            "seconds": time.time() - start,
            "volumes": volumes,  # for critics that learn from them (adversarial.AdversarialCritics)
        }
