"""Rollouts of the 3D backend for reward fine-tuning: whole-volume latents sampled with stochastic DDIM steps under
ControlNet mask control, every step's latent and log-probability recorded, and re-scoring of a recorded step under
new weights. The same contract as the window model's ``rollout.RolloutSampler`` (``trajectory``, ``logprob``,
``predict_step``, ``policy_weight``, ``pathwise_latents``), so the PPO and the reward-backpropagation tuners run on
either backend.

The policy is the ControlNet (the mask adapter); the UNet and the autoencoder stay frozen, as in the ControlNet's own
training. Every latent voxel is the policy's action: there is no inpainting here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import Gem3dInputError
from .logprob_ddim import LogProbDDIMScheduler
from .sampler import SamplerSettings, network_output
from .volume_synthesize import VolumeSampler


@dataclass
class VolumeStep:
    """One stochastic DDIM step of one whole-volume latent."""

    x: torch.Tensor  # (1, C, x, y, z) the latent the network saw
    cond: torch.Tensor  # (1, L, X, Y, Z) the one-hot mask
    t: int
    prev: torch.Tensor  # (1, C, x, y, z) the drawn x_(t-1)
    logprob: torch.Tensor  # (1,) mean log-density of the draw
    conditioning_scale: float  # the ControlNet's scale at the draw, which re-scoring must use too


class VolumeRolloutSampler(VolumeSampler):
    """The 3D backend's sampler with recorded stochastic DDIM steps (``trajectory``, one entry per step)."""

    def __init__(self, model, scheduler: LogProbDDIMScheduler, settings: SamplerSettings):
        if not isinstance(scheduler, LogProbDDIMScheduler):
            raise Gem3dInputError(f"rollouts need a LogProbDDIMScheduler, got {type(scheduler).__name__}")
        if settings.eta <= 0:
            raise Gem3dInputError(f"rollouts need stochastic steps (eta > 0), got eta={settings.eta}")
        super().__init__(model, scheduler, settings, progress=False)
        self.trajectory: list[VolumeStep] = []
        self.latent: torch.Tensor | None = None

    def predict(self, x: torch.Tensor, t: int, cond: torch.Tensor, conditioning_scale: float) -> torch.Tensor:
        """The controlled UNet's output for a (1, C, x, y, z) latent (bf16 autocast when the settings say so)."""
        net = self.controlled(conditioning_scale)
        device = next(net.parameters()).device
        return network_output(net, x.to(device), t, cond.to(device), precision=self.settings.precision)

    def sample(self, condition: torch.Tensor, latent_shape, generator, conditioning_scale: float) -> torch.Tensor:
        """A (C, x, y, z) latent for a (L, X, Y, Z) one-hot mask, every step recorded."""
        s = self.settings
        self.scheduler.set_timesteps(s.steps)
        device = next(self.controlled(conditioning_scale).parameters()).device
        x = torch.randn((1, *latent_shape), generator=generator).to(device)
        cond = torch.as_tensor(condition, dtype=torch.float32)[None].to(device)
        self.trajectory = []
        with torch.no_grad():  # not inference mode: recorded tensors are re-scored with gradient later
            for t in self.scheduler.timesteps:
                t = int(t)
                pred = self.predict(x, t, cond, conditioning_scale)
                prev, logprob = self.scheduler.step_with_logprob(pred, t, x, s.eta, generator)
                self.trajectory.append(VolumeStep(x, cond, t, prev, logprob, float(conditioning_scale)))
                x = prev
        self.latent = x[0].float().cpu()
        return self.latent

    def predict_step(self, step: VolumeStep) -> torch.Tensor:
        """The network's output at a recorded step under its current weights (differentiable)."""
        return self.predict(step.x, step.t, step.cond, step.conditioning_scale)

    def policy_weight(self, step: VolumeStep) -> None:
        """Which elements of a step the policy drew: all of them (None)."""
        return None

    def logprob(self, step: VolumeStep) -> torch.Tensor:
        """(1,) log-density of the recorded draw under the network's current weights (differentiable)."""
        self.scheduler.set_timesteps(self.settings.steps)
        _, logprob = self.scheduler.step_with_logprob(
            self.predict_step(step), step.t, step.x, self.settings.eta, prev_sample=step.prev
        )
        return logprob

    def pathwise_latents(self) -> torch.Tensor:
        """The last sampled (C, x, y, z) latent, equal in value and differentiable in the ControlNet's weights through
        the last step (its draw = mean + std * noise moves with the mean for its fixed noise; earlier steps are
        constants, DRaFT-1's truncation)."""
        step = self.trajectory[-1]
        self.scheduler.set_timesteps(self.settings.steps)
        mean, _ = self.scheduler.step_mean(self.predict_step(step), step.t, step.x, self.settings.eta)
        return self.latent + (mean - mean.detach())[0].float().cpu()


def volume_rollout_sampler(synthesizer, scheduler: LogProbDDIMScheduler, steps: int, eta: float):
    """A rollout sampler for the 3D backend's ``synthesizer``, with its settings but ``steps`` stochastic steps."""
    settings = replace(synthesizer.settings, steps=int(steps), eta=float(eta))
    return VolumeRolloutSampler(synthesizer.model, scheduler, settings)


def controlnet_parameters(model) -> list[torch.nn.Parameter]:
    """What reward fine-tuning of the 3D backend trains: the ControlNet. The UNet and the autoencoder are frozen
    (requires_grad False); the gradient still flows through them to the ControlNet."""
    model.denoiser  # built on first use, freezing its UNet
    model.autoencoder.requires_grad_(False)
    return list(model.networks["controlnet"].requires_grad_(True).parameters())
