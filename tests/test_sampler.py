"""The propagation sampler with a recording fake denoiser: schedule, inpainting noise level, determinism."""

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDIMScheduler
from scripts.data.conditioning import lesion_region, without_lesions
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


class MaskReadingDenoiser(torch.nn.Module):
    """Predicts a fixed nonlinear function of the latents and of the mask channels, so that moving lesion occupancy
    to the anatomy channel changes the prediction; records the batch size of every call."""

    def __init__(self, channels=4, labels=5):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.channels, self.labels, self.batches = channels, labels, []

    def forward(self, x, t):
        self.batches.append(x.shape[0])
        c, m = x[:, : self.channels], x[:, self.channels : self.channels + self.labels]
        weights = torch.arange(1, self.labels + 1, dtype=x.dtype).view(1, -1, 1, 1, 1)
        return torch.tanh(c) + (m * weights).sum(dim=1, keepdim=True) ** 2


def _lesion_windows(hw=8, n=4):
    """Two windows' latents and conditions (labels 0-4, lesions 2-4 in the first window only, anatomy 1)."""
    g = torch.Generator().manual_seed(5)
    mask = torch.zeros((2, 5, n, hw, hw))
    mask[:, 0] = 0.5
    mask[:, 1] = 0.5
    mask[0, 1, 1, 2:4, 2:4], mask[0, 3, 1, 2:4, 2:4] = 0.0, 0.5  # a lesion in window 0, slice 1
    cond = torch.cat([mask, torch.randn((2, 4, n, hw, hw), generator=g), torch.zeros((2, 1, n, hw, hw))], dim=1)
    return torch.randn((2, 4, n, hw, hw), generator=g), cond


def test_lesion_guidance_pushes_from_the_lesion_free_prediction_around_the_lesions_only():
    x, cond = _lesion_windows()
    lesions = ((2, 3, 4), 1)
    reference = without_lesions(cond, *lesions)
    assert torch.equal(reference[:, 2:5], torch.zeros_like(reference[:, 2:5]))
    torch.testing.assert_close(reference[:, :5].sum(dim=1), cond[:, :5].sum(dim=1))  # occupancy still sums to 1
    assert torch.equal(reference[:, 5:], cond[:, 5:]) and torch.equal(reference[1], cond[1])
    region = lesion_region(cond, lesions[0])
    assert region[0, 0, 1, 2, 2] == 1 and region[0, 0, 1, 7, 7] == 0 and region[1].max() == 0
    assert region[0, 0, 0].max() == 1 and region[0, 0, 3].max() == 0  # one slice of margin across slices
    assert 0 <= region.min() and region.max() <= 1

    net = MaskReadingDenoiser()
    plain = PropagationSampler(net, _scheduler(), SamplerSettings(4, 1, 2), progress=False, lesions=lesions)
    c = plain.predict(x, 500, cond)
    assert net.batches == [2]  # scale 1: one call, no reference rows
    guided = PropagationSampler(net, _scheduler(), SamplerSettings(4, 1, 2), progress=False, lesions=lesions)
    guided.lesion_guidance = 3.0
    out = guided.predict(x, 500, cond)
    assert net.batches[-1] == 3  # the reference for the one window that holds a lesion
    u = plain.predict(x[:1], 500, reference[:1])
    torch.testing.assert_close(out[0], c[0] + 2.0 * region[0] * (c[0] - u[0]))
    assert not torch.equal(out[0], c[0])
    assert torch.equal(out[1], c[1])  # a window without a lesion is the plain model's
    assert torch.equal(out[0, :, 3], c[0, :, 3]) and torch.equal(out[0, :, 1, :, 7], c[0, :, 1, :, 7])
    torch.testing.assert_close(guided.predict(x, 500, cond, 1.0), c)  # an explicit scale wins (re-scoring rollouts)
    # scale 0 is the lesion-free prediction around the lesion
    torch.testing.assert_close(guided.predict(x, 500, cond, 0.0)[0, :, 1, 2:4, 2:4], u[0, :, 1, 2:4, 2:4])
    with pytest.raises(ValueError, match="lesion labels"):
        PropagationSampler(net, _scheduler(), SamplerSettings(4, 1, 2)).predict(x, 500, cond, 2.0)
