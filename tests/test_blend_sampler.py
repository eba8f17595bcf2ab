"""The co-denoising scheme (sampler_scheme 'blend'): window coverage and shifting, the composite prediction, the
informed slices of the outer windows."""

import pytest
import torch
from scripts.sampling.blend import blend_waves
from scripts.sampling.dpm_solver import DPMSolverMultistepScheduler, data_prediction
from scripts.sampling.sampler import PropagationSampler, SamplerSettings, correlated_noise
from scripts.sampling.window_plan import plan_windows, start_slice
from test_sampler import FullInputDenoiser, RecordingDenoiser, _scheduler


@pytest.mark.parametrize("z_total", [5, 16, 17, 40, 64, 100])
def test_every_step_covers_every_slice_and_the_boundaries_shift(z_total):
    n, p, steps = 16, 0.4, 16
    centre = start_slice(z_total, p)
    layouts, shared = [], []
    for step_waves in blend_waves(z_total, n, 1, p, steps):
        covered = torch.zeros(z_total, dtype=torch.int64)
        first = step_waves[0][0]
        assert len(step_waves[0]) == 1 and first.external_informed and first.start <= centre < first.stop
        for k, wave in enumerate(step_waves):
            for w in wave:
                assert w.stop - w.start == min(n, z_total) and w.start <= w.informed < w.stop
                if k:  # its informed slice was predicted by an earlier wave of this step
                    assert not w.external_informed and covered[w.informed] > 0
            for w in wave:
                covered[w.start : w.stop] += 1
        assert (covered > 0).all()
        layouts.append(tuple((w.start, w.informed) for wave in step_waves for w in wave))
        shared.append({w.informed for wave in step_waves[1:] for w in wave})
    if z_total >= 2 * n:  # room to shift: no slice joins two windows at every step (as it would in propagation)
        assert len(set(layouts)) > 4 and not set.intersection(*shared)


def _sampler(net, scheduler, steps=6, scheme="blend", eta=0.0):
    return PropagationSampler(net, scheduler, SamplerSettings(16, 1, steps, eta, scheme=scheme), progress=False)


@pytest.mark.parametrize("scheduler", [_scheduler(), DPMSolverMultistepScheduler(prediction_type="v_prediction")])
def test_a_slicewise_network_gives_the_whole_volume_solver(scheduler):
    """When the network's prediction for a slice does not depend on its window, co-denoising by windows must be
    exactly the solver run on the whole volume at once: the composite and the averaging are then invisible."""
    z_total, hw, steps = 40, 8, 6
    g = torch.Generator().manual_seed(3)
    mask, informed = torch.rand((z_total, 5, hw, hw), generator=g), torch.randn((4, hw, hw), generator=g)
    net = RecordingDenoiser()
    out = _sampler(net, scheduler, steps).sample(mask, informed, 0.4, torch.Generator().manual_seed(7))
    start = correlated_noise((z_total, 4, hw, hw), SamplerSettings.noise_correlation, torch.Generator().manual_seed(7))
    x = start.permute(1, 0, 2, 3)[None]
    first_mask_channel = mask[:, 0][None, None]  # (1, 1, Z, h, w): the denoiser adds 0.1 x its own slice's
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(0.3 * x + 0.1 * first_mask_channel, int(t), x, eta=0.0)[0]
    torch.testing.assert_close(out, x[0].permute(1, 0, 2, 3), rtol=1e-5, atol=1e-5)
    assert len(net.calls) == sum(len(w) for w in blend_waves(z_total, 16, 1, 0.4, steps))


def test_outer_windows_take_the_shared_slices_clean_estimate_and_mask_only_none():
    z_total, hw, steps = 40, 8, 3
    g = torch.Generator().manual_seed(5)
    mask, informed = torch.rand((z_total, 5, hw, hw), generator=g), torch.randn((4, hw, hw), generator=g) + 3.0
    net = FullInputDenoiser()
    sampler = _sampler(net, _scheduler(), steps)
    sampler.sample(mask, informed, 0.4, torch.Generator().manual_seed(0))
    calls = iter(net.calls)
    checked = 0
    for step_waves in blend_waves(z_total, 16, 1, 0.4, steps):
        predicted = {}  # slice -> (noisy latent, prediction) of the earlier waves of this step
        for wave in step_waves:
            x, t = next(calls)
            pred = 0.3 * x[:, :4] + 0.1 * x[:, -5:-1]
            for b, w in enumerate(wave):
                inf = x[b, -5:-1, 0]  # the informed channels (the same on every slice of the window)
                if w.external_informed:
                    torch.testing.assert_close(inf, informed)
                else:
                    noisy, shared = predicted[w.informed]
                    torch.testing.assert_close(inf, data_prediction(sampler.scheduler, shared, int(t[0]), noisy))
                    checked += 1
                offsets = x[b, -1, :, 0, 0] * 16.0
                torch.testing.assert_close(offsets, torch.arange(w.start, w.stop).float() - w.informed)
            for b, w in enumerate(wave):
                for z in range(w.start, w.stop):
                    predicted.setdefault(z, (x[b, :4, z - w.start], pred[b, :, z - w.start]))
    assert checked > 0 and next(calls, None) is None
    net = FullInputDenoiser()
    _sampler(net, _scheduler(), steps).sample(mask, informed, 0.4, torch.Generator().manual_seed(0), mask_only=True)
    assert all(torch.count_nonzero(x[:, 4 + 5 :]) == 0 for x, _ in net.calls)


def test_data_prediction_inverts_forward_diffusion():
    scheduler = _scheduler()
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for t in (10, 500, 990):
        xt = scheduler.add_noise(x0, noise, torch.tensor([t, t]))
        a = scheduler.alphas_cumprod[t]
        v = a.sqrt() * noise - (1 - a).sqrt() * x0
        torch.testing.assert_close(data_prediction(scheduler, v, t, xt), x0, rtol=1e-4, atol=1e-4)


def test_shift_zero_is_the_propagation_plan_and_a_bad_scheme_is_refused():
    assert plan_windows(64, 16, 1, 0.5) == plan_windows(64, 16, 1, 0.5, shift=0)
    sampler = _sampler(RecordingDenoiser(), _scheduler(), 2, scheme="zigzag")
    with pytest.raises(ValueError, match="zigzag"):
        sampler.sample(torch.rand(20, 5, 8, 8), torch.randn(4, 8, 8), 0.5, torch.Generator().manual_seed(0))
