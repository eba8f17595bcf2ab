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

The reward's gradient reaches the network at the last step's timestep only, yet the weights serve every timestep: what
the update does to the early, structure-setting steps is unseen by the reward and unbounded by it. The functional
bound (``function_weight``) penalises the change of the network's prediction from stage 2's on the rollout's own
recorded states at randomly chosen steps of every timestep, so the policy moves where the reward looks and keeps
stage 2's predictions elsewhere. (For DDIM's Gaussian steps this is the KL between the tuned and the stage-2 step up
to a per-timestep weight; the plain squared change weights all timesteps alike, where the KL would be ruled by the
last steps' tiny variances.)
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
    The reward's consistency term (gradient anisotropy, computed in NumPy) has no gradient here and is refused.
    ``function_weight`` x the prediction drift on ``function_steps`` recorded steps of every rollout is added to the
    loss (module docstring); 0 leaves the weight anchor as the only bound."""

    def __init__(self, *args, function_weight: float = 0.0, function_steps: int = 8, **kwargs):
        """``args`` and ``kwargs``: ``RewardTuning``'s."""
        super().__init__(*args, **kwargs)
        if self.reward.consistency_weight:
            raise Gem3dInputError("reward backpropagation needs a differentiable reward: set consistency_weight 0")
        if float(function_weight) < 0 or int(function_steps) < 1:
            raise Gem3dInputError(
                f"function_weight must be >= 0 and function_steps >= 1, got {function_weight} and {function_steps}"
            )
        self.function_weight, self.function_steps = float(function_weight), int(function_steps)

    def prediction_change(self, step) -> torch.Tensor:
        """Mean squared difference between the network's prediction and the starting weights' at a recorded step,
        over the elements the policy drew there (differentiable in the trainable weights)."""
        with self.anchor_weights():
            reference = self.sampler.predict_step(step)
        squared = (self.sampler.predict_step(step) - reference).pow(2)
        weight = self.sampler.policy_weight(step)
        if weight is None:
            return squared.mean()
        weight = torch.broadcast_to(weight.to(squared.device, squared.dtype), squared.shape)
        return (squared * weight).sum() / weight.sum()

    def function_drift(self, rng: np.random.Generator, scale: float) -> float:
        """The prediction change on ``function_steps`` random steps of the last rollout, its gradient times ``scale``
        accumulated into the trainable weights; returns its value."""
        trajectory = self.sampler.trajectory
        chosen = rng.choice(len(trajectory), min(self.function_steps, len(trajectory)), replace=False)
        values = []
        for j in chosen:
            with torch.set_grad_enabled(bool(scale)):
                change = self.prediction_change(trajectory[j])
            if scale:
                torch.autograd.backward(scale * change / len(chosen), inputs=self.params)
            values.append(float(change.detach()))
        return float(np.mean(values))

    def pathwise_image(self, image: np.ndarray) -> torch.Tensor:
        """The last rollout's delivered (S, S, Z) ``image`` as a tensor equal to it, differentiable in the trainable
        weights (``RolloutSampler.pathwise_latents`` decoded)."""
        decoded = self.synth.decode_tensor(self.sampler.pathwise_latents()).float().cpu()
        decoded = decoded[tuple(slice(0, n) for n in image.shape)]  # the 3D backend decodes its padding too
        value = torch.from_numpy(np.asarray(image, np.float32))
        passes = (value > 0) & (value < 1)  # clipping and the zeroed background have no gradient
        return value + torch.where(passes, decoded - decoded.detach(), torch.zeros_like(decoded))

    def __call__(self, engine, batch: list[dict]) -> dict:
        start = time.time()
        jobs = list(self.jobs(int(engine.state.iteration), batch))
        self.optimizer.zero_grad(set_to_none=True)
        scores, volumes, changes = [], [], []
        for _, item, informed, seed in jobs:
            _, score, image = self.rollout(item, seed, informed)
            total, _ = self.reward.critics_reward(self.pathwise_image(image))
            # inputs=: only the policy's weights take the gradient (the critics may be learning, adversarial.py)
            torch.autograd.backward(-total / len(jobs), inputs=self.params)
            # measured even when not penalised (weight 0), so every run's curves show how far the function moved
            changes.append(self.function_drift(np.random.default_rng(seed), self.function_weight / len(jobs)))
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
            "function_drift": float(np.mean(changes)),  # before this iteration's step
            "seconds": time.time() - start,
            "volumes": volumes,  # for critics that learn from them (adversarial.AdversarialCritics)
        }
