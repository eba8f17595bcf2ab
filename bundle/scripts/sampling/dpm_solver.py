"""DPM-Solver++(2M) on MONAI's discrete noise schedules (Lu et al. 2022, "DPM-Solver++").

MONAI ships DDPM, DDIM, PNDM and rectified-flow schedulers but no DPM-Solver; this is the second-order multistep
data-prediction solver, written on MONAI's ``Scheduler`` base so that the schedule (betas, ``alphas_cumprod``) and
``add_noise`` are MONAI's own and the sampler can swap it for ``DDIMScheduler`` in a config. ``eta > 0`` selects the
stochastic (SDE) variant, which re-injects noise like DDIM with eta 1; ``eta == 0`` the deterministic ODE variant.
"""

from __future__ import annotations

import torch
from monai.networks.schedulers import Scheduler


def data_prediction(scheduler, output: torch.Tensor, t: int, x: torch.Tensor) -> torch.Tensor:
    """The clean sample x0 that the network's ``output`` at timestep ``t`` predicts for the noisy ``x``, on any MONAI
    scheduler with ``alphas_cumprod`` and ``prediction_type`` (the schedule's alpha and sigma taken in float64)."""
    a = scheduler.alphas_cumprod[int(t)].double()
    alpha, sigma = float(a.sqrt()), float((1 - a).sqrt())
    if scheduler.prediction_type == "v_prediction":
        return alpha * x - sigma * output
    if scheduler.prediction_type == "epsilon":
        return (x - sigma * output) / alpha
    return output


class DPMSolverMultistepScheduler(Scheduler):
    """Second-order multistep DPM-Solver++ (midpoint form) with a first-order last step.

    ``step`` keeps the previous data prediction; it starts a new chain whenever it is called with the first
    timestep, so one scheduler serves many windows in turn. ``timesteps`` are ``steps`` evenly spaced training
    timesteps from ``T - 1`` down; the last step lands on the clean sample (sigma 0).
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        schedule: str = "linear_beta",
        prediction_type: str = "epsilon",
        clip_sample: bool = False,
        clip_sample_min: float = -1.0,
        clip_sample_max: float = 1.0,
        **schedule_args,
    ) -> None:
        super().__init__(num_train_timesteps, schedule, **schedule_args)
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be epsilon, v_prediction or sample, not {prediction_type!r}")
        self.prediction_type = prediction_type
        self.clip = (clip_sample_min, clip_sample_max) if clip_sample else None
        acp = self.alphas_cumprod.double()
        # float64 copies: add_noise casts alphas_cumprod to the sample's dtype, and log-SNR steps need precision
        self._alpha, self._sigma = acp.sqrt(), (1 - acp).sqrt()
        self._lambda = self._alpha.log() - self._sigma.log()
        self.set_timesteps(num_train_timesteps)

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        if not 1 <= num_inference_steps <= self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be in [1, {self.num_train_timesteps}], not {num_inference_steps}"
            )
        self.num_inference_steps = num_inference_steps
        grid = torch.linspace(self.num_train_timesteps - 1, 0, num_inference_steps + 1).round().long()
        self.timesteps = grid[:-1].to(device) if device is not None else grid[:-1]
        self._index = {int(t): i for i, t in enumerate(self.timesteps)}
        self._previous = None  # (data prediction, log-SNR) of the step before

    def _data_prediction(self, model_output: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        x0 = data_prediction(self, model_output, t, sample)
        return x0.clamp(*self.clip) if self.clip else x0

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One solver step from ``timestep`` to the next; returns (next sample, predicted clean sample)."""
        t = int(timestep)
        if t not in self._index:
            raise ValueError(f"timestep {t} is not one of this scheduler's timesteps (call set_timesteps first)")
        i = self._index[t]
        if i == 0:
            self._previous = None
        x0 = self._data_prediction(model_output.float(), t, sample.float())
        last = i == len(self.timesteps) - 1
        if last:  # sigma 0: the solution is the data prediction (first order, as DPM-Solver++ ends)
            self._previous = None
            return x0.to(sample.dtype), x0.to(sample.dtype)
        s_next = int(self.timesteps[i + 1])
        lam_s, lam_t = float(self._lambda[t]), float(self._lambda[s_next])
        alpha_t, sigma_t, sigma_s = float(self._alpha[s_next]), float(self._sigma[s_next]), float(self._sigma[t])
        h = lam_t - lam_s
        d = x0
        if self._previous is not None:  # second order: extrapolate the data prediction with the previous one
            x0_prev, lam_prev = self._previous
            r = (lam_s - lam_prev) / h
            d = x0 + (x0 - x0_prev) / (2.0 * r)
        self._previous = (x0, lam_s)
        if eta > 0:
            e = torch.exp(torch.tensor(-h, dtype=torch.float64))
            noise = torch.randn(sample.shape, generator=generator, dtype=torch.float32).to(sample.device)
            x = (
                (sigma_t / sigma_s * float(e)) * sample.float()
                + alpha_t * float(1 - e * e) * d
                + sigma_t * float((1 - e * e).sqrt()) * noise
            )
        else:
            x = (sigma_t / sigma_s) * sample.float() - alpha_t * float(torch.expm1(torch.tensor(-h))) * d
        return x.to(sample.dtype), x0.to(sample.dtype)
