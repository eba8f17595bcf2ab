"""DPM-Solver++(2M): exact on a known-clean-sample denoiser, multistep state, drop-in for DDIM in the sampler."""

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler
from scripts.sampling.dpm_solver import DPMSolverMultistepScheduler
from scripts.sampling.sampler import PropagationSampler, SamplerSettings

SCHEDULE = dict(schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0205, prediction_type="v_prediction")


class OracleDenoiser(torch.nn.Module):
    """Predicts the exact v for a fixed clean sample x0 (the data distribution is a point)."""

    def __init__(self, x0, scheduler):
        super().__init__()
        self.x0, self.acp = x0, scheduler.alphas_cumprod.double()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        a = self.acp[t].view(-1, *([1] * (x.dim() - 1))).float()
        x = x[:, : self.x0.shape[1]]
        eps = (x - a.sqrt() * self.x0) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * self.x0


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [1, 2, 10])
def test_recovers_the_clean_sample_with_an_exact_denoiser(eta, steps):
    sched = DPMSolverMultistepScheduler(1000, **SCHEDULE)
    sched.set_timesteps(steps)
    assert len(sched.timesteps) == steps and sched.timesteps[0] == 999 and sched.timesteps[-1] > 0
    x0 = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    net = OracleDenoiser(x0, sched)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(x0.shape, generator=g)
    for t in sched.timesteps:
        x, pred_x0 = sched.step(net(x, t.expand(2)), int(t), x, eta=eta, generator=g)
        assert torch.allclose(pred_x0, x0, atol=1e-4)
    assert torch.allclose(x, x0, atol=1e-4)
    assert net.calls == steps


def test_second_order_differs_from_first_order_and_chain_restarts():
    """A denoiser whose clean prediction changes with t makes the 2M correction visible; a new chain resets."""
    sched = DPMSolverMultistepScheduler(1000, **SCHEDULE)
    sched.set_timesteps(4)

    def run(first_order=False):
        x = torch.ones(1, 1, 2, 2)
        for t in sched.timesteps:
            if first_order:
                sched._previous = None
            x, _ = sched.step(torch.full_like(x, float(t) / 1000), int(t), x)
        return x

    second, again = run(), run()
    assert torch.equal(second, again)  # the history of the first chain does not leak into the second
    assert not torch.allclose(second, run(first_order=True), atol=1e-3)
    with pytest.raises(ValueError, match="not one of this scheduler's timesteps"):
        sched.step(torch.zeros(1), 501, torch.zeros(1))


def test_drop_in_for_ddim_in_the_propagation_sampler():
    """Through the window sampler (batched waves, inpainting) an exact denoiser gives the clean latents back."""
    z_total, hw = 40, 8
    x0_slices = torch.randn((z_total, 4, hw, hw), generator=torch.Generator().manual_seed(2))
    outs = {}
    for name, cls in (("ddim", DDIMScheduler), ("dpm", DPMSolverMultistepScheduler)):
        sched = cls(1000, clip_sample=False, **SCHEDULE)

        class WindowOracle(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.dummy = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x, t):
                # the window's clean latents are encoded in the condition's first mask channel (its slice index)
                idx = x[:, 4].mean(dim=(-2, -1)).round().long().clamp(0, z_total - 1)  # (B, n)
                clean = x0_slices[idx].permute(0, 2, 1, 3, 4)  # (B, C, n, h, w)
                a = sched.alphas_cumprod.double()[t].view(-1, 1, 1, 1, 1).float()
                eps = (x[:, :4] - a.sqrt() * clean) / (1 - a).sqrt()
                return a.sqrt() * eps - (1 - a).sqrt() * clean

        sampler = PropagationSampler(WindowOracle(), sched, SamplerSettings(16, 1, 8, 1.0), progress=False)
        mask = torch.arange(z_total, dtype=torch.float32).view(-1, 1, 1, 1).expand(z_total, 5, hw, hw).clone()
        outs[name] = sampler.sample(mask, x0_slices[20], 0.5, torch.Generator().manual_seed(3))
    assert torch.allclose(outs["dpm"], x0_slices, atol=1e-3)
    assert torch.allclose(outs["ddim"], outs["dpm"], atol=1e-2)
