"""Rollouts for reward fine-tuning: whole volumes sampled by the real propagation sampler with stochastic DDIM steps,
every step's window latents and log-probability recorded, and re-scoring of a recorded step under new weights.

The policy's action at a step is the drawn x_(t-1) of the slices the window generates; slices held by inpainting
(the overlap with earlier windows) are the environment's and do not count in the log-probability.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from ..errors import Gem3dInputError
from .logprob_ddim import LogProbDDIMScheduler
from .sampler import PropagationSampler, SamplerSettings


@dataclass
class RolloutStep:
    """One stochastic DDIM step of one wave of windows (B windows of one volume)."""

    x: torch.Tensor  # (B, C, n, h, w) window latents the network saw (after inpainting)
    cond: torch.Tensor  # (B, K, n, h, w) their conditions
    t: int
    prev: torch.Tensor  # (B, C, n, h, w) the drawn x_(t-1)
    free: torch.Tensor  # (B, n) the slices the policy generated
    logprob: torch.Tensor  # (B,) mean log-density of the drawn free slices
    guidance: float = 1.0  # the lesion guidance the step was drawn with, which re-scoring must use too


class RolloutSampler(PropagationSampler):
    """The propagation sampler with recorded stochastic DDIM steps (``trajectory``, one entry per step and wave)."""

    def __init__(
        self,
        network,
        scheduler: LogProbDDIMScheduler,
        settings: SamplerSettings,
        progress: bool = False,
        lesions: tuple | None = None,
    ):
        if not isinstance(scheduler, LogProbDDIMScheduler):
            raise Gem3dInputError(f"rollouts need a LogProbDDIMScheduler, got {type(scheduler).__name__}")
        if settings.eta <= 0:
            raise Gem3dInputError(f"rollouts need stochastic steps (eta > 0), got eta={settings.eta}")
        if settings.scheme != "propagate":  # the recorded steps are per window of the propagation plan
            raise Gem3dInputError(f"rollouts use the propagation scheme, not {settings.scheme!r}")
        super().__init__(network, scheduler, settings, progress, lesions)
        self.trajectory: list[RolloutStep] = []

    def step(self, x, t, cond, known, generator):
        free = ~known
        prev, logprob = self.scheduler.step_with_logprob(
            self.predict(x, t, cond), t, x, self.settings.eta, generator, where=_slice_weight(free)
        )
        self.trajectory.append(RolloutStep(x, cond, t, prev, free, logprob, self.lesion_guidance))
        return prev

    def sample(self, mask_lat, informed, position, generator, mask_only=False):
        self.trajectory = []
        out = super().sample(mask_lat, informed, position, generator, mask_only)
        # tensors made under inference mode cannot enter autograd; copies made here, outside it, can
        self.trajectory = [
            RolloutStep(**{f.name: _copy(getattr(s, f.name)) for f in fields(RolloutStep)}) for s in self.trajectory
        ]
        self.latents, self.groups_sampled = out.clone(), self.groups(mask_lat.shape[0], position)
        return out

    def pathwise_latents(self) -> torch.Tensor:
        """The last sampled volume's (Z, C, h, w) latents, equal in value and differentiable in the window model's
        weights through every window's last step (the reparameterised draw x = mean + std * noise moves with the
        mean for its fixed noise; DRaFT-1's truncation: earlier steps and the slices a window takes from earlier
        windows are constants)."""
        steps, out = self.settings.steps, self.latents
        self.scheduler.set_timesteps(steps)
        for g, group in enumerate(self.groups_sampled):
            step = self.trajectory[(g + 1) * steps - 1]  # the trajectory holds each wave's steps in turn
            mean, _ = self.scheduler.step_mean(self.predict_step(step), step.t, step.x, self.settings.eta)
            shift = (mean - mean.detach()).float().cpu()  # zero in value, the mean's gradient; beside the latents
            for b, w in enumerate(group):
                new = torch.tensor(sorted(w.new))
                out = out.index_add(0, new, shift[b][:, new - w.start].transpose(0, 1))
        return out

    def predict_step(self, step: RolloutStep) -> torch.Tensor:
        """The window model's output at a recorded step under its current weights (differentiable)."""
        return self.predict(step.x, step.t, step.cond, step.guidance)

    def policy_weight(self, step: RolloutStep) -> torch.Tensor:
        """Which elements of a step the policy drew: (B, 1, n, 1, 1), its generated slices (not the inpainted)."""
        return _slice_weight(step.free)

    def logprob(self, step: RolloutStep) -> torch.Tensor:
        """(B,) log-density of the recorded draw under the network's current weights (differentiable)."""
        self.scheduler.set_timesteps(self.settings.steps)
        _, logprob = self.scheduler.step_with_logprob(
            self.predict_step(step),
            step.t,
            step.x,
            self.settings.eta,
            prev_sample=step.prev,
            where=self.policy_weight(step),
        )
        return logprob


def rollout_sampler(synthesizer, scheduler: LogProbDDIMScheduler, steps: int, eta: float) -> RolloutSampler:
    """A rollout sampler for ``synthesizer``'s window model, with its settings but ``steps`` stochastic steps."""
    settings = replace(synthesizer.settings, steps=int(steps), eta=float(eta))
    return RolloutSampler(
        lambda: synthesizer.model.window_net, scheduler, settings, progress=False, lesions=synthesizer.sampler.lesions
    )


def _slice_weight(free: torch.Tensor) -> torch.Tensor:
    return free.view(free.shape[0], 1, free.shape[1], 1, 1)


def _copy(value):
    return value.clone() if isinstance(value, torch.Tensor) else value
