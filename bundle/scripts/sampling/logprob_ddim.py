"""DDIM steps with their log-probability, for reward fine-tuning of the denoising chain (DDPO-style PPO).

Build it with ``set_alpha_to_one=False, steps_offset=1`` so that the last step is stochastic too.

A DDIM step with eta > 0 is a Gaussian policy: x_(t-1) ~ N(mu, sigma_t^2 I) with
mu = sqrt(ab_(t-1)) x0_hat + sqrt(1 - ab_(t-1) - sigma_t^2) eps_hat and sigma_t = eta sqrt(var(t, t-1)) (DDIM paper,
eq. 12 and 16). MONAI's ``DDIMScheduler.step`` draws from it but returns neither mu, sigma nor the density, so this
subclass computes them with the same formulas and draws the same noise (a sample for a given generator is
bit-identical to MONAI's), and scores a given x_(t-1): a stored rollout step re-scored under new weights gives the
PPO importance ratio.
"""

from __future__ import annotations

import math

import torch
from monai.networks.schedulers import DDIMScheduler
from monai.networks.schedulers.ddim import DDIMPredictionType


class LogProbDDIMScheduler(DDIMScheduler):
    def step_with_logprob(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        eta: float,
        generator: torch.Generator | None = None,
        prev_sample: torch.Tensor | None = None,
        where: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (x_(t-1), log-density of it per batch element, averaged over the non-batch dimensions).

        ``prev_sample`` None draws x_(t-1) (as MONAI's ``step`` does); given, it is scored. ``where`` (boolean,
        broadcastable to the sample) restricts the average to the elements the policy chose (not the inpainted ones).
        eta must be > 0 (a deterministic step has no density)."""
        mean, std = self.step_mean(model_output, timestep, sample, eta)
        if prev_sample is None:
            device = model_output.device
            noise = torch.randn(model_output.shape, dtype=model_output.dtype, generator=generator, device=device)
            prev_sample = mean + std * noise
        std = torch.as_tensor(std, dtype=torch.float32)
        log_prob = (
            -((prev_sample.detach().float() - mean.float()) ** 2) / (2 * std**2)
            - torch.log(std)
            - 0.5 * math.log(2 * math.pi)
        )
        if where is None:
            return prev_sample, log_prob.flatten(1).mean(1)
        weight = torch.broadcast_to(where, log_prob.shape).to(log_prob.dtype).flatten(1)
        return prev_sample, (log_prob.flatten(1) * weight).sum(1) / weight.sum(1).clamp_min(1.0)

    def step_mean(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, eta: float):
        """(mean, std) of the Gaussian the step draws x_(t-1) from; the mean is differentiable in ``model_output``
        (the pathwise gradient of a drawn x_(t-1) = mean + std * noise, for reward backpropagation)."""
        if eta <= 0:
            raise ValueError("a DDIM step has a log-probability only with eta > 0")
        prev_timestep = timestep - self.num_train_timesteps // self.num_inference_steps
        alpha_t = self.alphas_cumprod[timestep]
        alpha_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        x0, eps = self._x0_and_eps(model_output, sample, alpha_t)
        std = eta * self._get_variance(timestep, prev_timestep) ** 0.5
        if float(std) == 0.0:
            raise ValueError(
                f"the DDIM step from timestep {timestep} is deterministic (variance 0); for a density at every step "
                "build the scheduler with set_alpha_to_one=False and steps_offset=1"
            )
        return alpha_prev**0.5 * x0 + (1 - alpha_prev - std**2) ** 0.5 * eps, std

    def _x0_and_eps(self, model_output: torch.Tensor, sample: torch.Tensor, alpha_t: torch.Tensor):
        beta_t = 1 - alpha_t
        if self.prediction_type == DDIMPredictionType.EPSILON:
            x0, eps = (sample - beta_t**0.5 * model_output) / alpha_t**0.5, model_output
        elif self.prediction_type == DDIMPredictionType.SAMPLE:
            x0 = model_output
            eps = (sample - alpha_t**0.5 * x0) / beta_t**0.5
        else:  # v-prediction
            x0 = alpha_t**0.5 * sample - beta_t**0.5 * model_output
            eps = alpha_t**0.5 * model_output + beta_t**0.5 * sample
        if self.clip_sample:
            x0 = torch.clamp(x0, self.clip_sample_values[0], self.clip_sample_values[1])
        return x0, eps
