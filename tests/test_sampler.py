"""The propagation sampler with a recording fake denoiser: schedule, inpainting noise level, determinism."""

import numpy as np
import torch
from monai.networks.schedulers import DDIMScheduler
from scripts.sampling.sampler import PropagationSampler, SamplerSettings
from scripts.sampling.window_plan import plan_windows, waves


def _scheduler():
    return DDIMScheduler(
        1000,
        schedule="scaled_linear_beta",
        beta_start=0.0015,
        beta_end=0.0205,
        prediction_type="v_prediction",
        clip_sample=False,
    )


class RecordingDenoiser(torch.nn.Module):
    """Records every input; predicts a fixed function of it so that outputs depend on inputs."""

    def __init__(self, channels=4):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.channels = channels
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x[:, : self.channels].clone(), t.clone()))
        return 0.3 * x[:, : self.channels] + 0.1 * x[:, self.channels : self.channels + 1]


def _run(z_total=40, n=16, h=2, steps=6, seed=0, p=0.4, batch_waves=True, hw=12):
    net = RecordingDenoiser()
    sampler = PropagationSampler(net, _scheduler(), SamplerSettings(n, h, steps, 1.0, batch_waves), progress=False)
    g = torch.Generator().manual_seed(123)
    mask = torch.rand((z_total, 5, hw, hw), generator=g)
    informed = torch.randn((4, hw, hw), generator=g)
    out = sampler.sample(mask, informed, p, torch.Generator().manual_seed(seed))
    return out, net, sampler


def test_known_slices_are_renoised_to_the_steps_noise_level():
    out, net, sampler = _run(hw=16)
    alphas = sampler.scheduler.alphas_cumprod
    checked = 0
    groups = waves(plan_windows(40, 16, 2, 0.4))
    calls = iter(net.calls)
    for group in groups:
        for t in sampler.scheduler.timesteps:
            x, t_seen = next(calls)
            assert torch.all(t_seen == t)  # the network sees real timesteps (not step indices)
            a = alphas[int(t)]
            for b, w in enumerate(group):
                for z in w.known:
                    x_t = x[b, :, z - w.start]
                    eps = (x_t - a.sqrt() * out[z]) / (1 - a).sqrt()
                    # q(x_t | x_0) at exactly this timestep: standardised residual is N(0, 1)
                    assert abs(eps.mean().item()) < 0.25 and 0.75 < eps.std().item() < 1.25, (int(t), z)
                    checked += 1
    assert checked > 0 and next(calls, None) is None


def test_each_slice_written_once_any_depth_and_determinism():
    for z_total in (1, 5, 16, 17, 33):
        out, net, sampler = _run(z_total=z_total, n=16, h=1, steps=3)
        assert out.shape == (z_total, 4, 12, 12) and torch.isfinite(out).all()
        assert len(net.calls) == 3 * len(waves(plan_windows(z_total, 16, 1, 0.4)))
    a, _, _ = _run(seed=5)
    b, _, _ = _run(seed=5)
    c, _, _ = _run(seed=6)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_batched_waves_match_one_window_at_a_time_in_schedule():
    _, batched, _ = _run(z_total=64, batch_waves=True)
    _, single, _ = _run(z_total=64, batch_waves=False)
    assert len(batched.calls) < len(single.calls)
    assert sum(x.shape[0] for x, _ in batched.calls) == sum(x.shape[0] for x, _ in single.calls)


def test_inpaint_matches_forward_diffusion():
    sampler = PropagationSampler(RecordingDenoiser(), _scheduler(), progress=False)
    clean = torch.full((1, 4, 3, 32, 32), 5.0)
    known = torch.tensor([[True, False, True]])
    x = torch.zeros_like(clean)
    for t in (999, 500, 20):
        out = sampler.inpaint(x, clean, known, torch.tensor(t), torch.Generator().manual_seed(t))
        a = sampler.scheduler.alphas_cumprod[t]
        assert torch.all(out[:, :, 1] == 0)  # unknown slices untouched
        np.testing.assert_allclose(out[:, :, 0].mean().item(), 5.0 * a.sqrt().item(), atol=0.1)
        np.testing.assert_allclose(out[:, :, 0].std().item(), (1 - a).sqrt().item(), rtol=0.1)


class FullInputDenoiser(RecordingDenoiser):
    def forward(self, x, t):
        self.calls.append((x.clone(), t.clone()))
        return 0.3 * x[:, : self.channels] + 0.1 * x[:, -self.channels - 1 : -1]  # depends on the informed latent


def test_mask_only_windows_carry_no_informed_slice_but_still_join():
    """The mask-only baseline: no window sees an informed latent or offset, every overlap slice is still inpainted."""
    g = torch.Generator().manual_seed(5)
    mask, informed = torch.rand((40, 5, 16, 16), generator=g), torch.randn((4, 16, 16), generator=g) + 3.0
    groups = waves(plan_windows(40, 16, 2, 0.4))
    results = {}
    for mask_only in (False, True):
        net = FullInputDenoiser()
        sampler = PropagationSampler(net, _scheduler(), SamplerSettings(16, 2, 3, 1.0), progress=False)
        out = sampler.sample(mask, informed, 0.4, torch.Generator().manual_seed(0), mask_only=mask_only)
        assert len(net.calls) == len(groups) * 3
        results[mask_only] = (out, torch.cat([x[:, 4 + 5 :] for x, _ in net.calls]))  # informed latent + offset
        x, t = net.calls[-1]  # last step of the last wave: its known slices are q(x_t | generated slice)
        a = sampler.scheduler.alphas_cumprod[int(t[0])]
        for b, w in enumerate(groups[-1]):
            for z in w.known:
                eps = (x[b, :4, z - w.start] - a.sqrt() * out[z]) / (1 - a).sqrt()
                assert abs(eps.mean().item()) < 0.25 and 0.75 < eps.std().item() < 1.25
    assert torch.count_nonzero(results[True][1]) == 0
    assert torch.count_nonzero(results[False][1]) > 0
    assert not torch.allclose(results[True][0], results[False][0])
