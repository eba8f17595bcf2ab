"""Co-denoising with shifting windows (``--sampler_scheme blend``), beside the paper's propagation.

Propagation finishes each window before the next starts, so a window sees its neighbour only through one clean
boundary slice. Here every slice of the volume is denoised at every step (DiffusionBlend, Song et al. 2024): at each
solver step the volume is covered by windows that overlap by the sampler's overlap (default one slice), the window
model predicts every window, the predictions of slices covered twice are averaged, and one solver step moves the
whole volume. The windows' boundaries shift from step to step (the first window's start moves by ``BLEND_SHIFT``
slices modulo n, always holding the start slice), so no slice sits on a boundary at every step.

GEM-3D's window model needs an informed slice inside each window (training draws it from the window itself). The
first window keeps the external informed slice (true, IC, IG, file); every further window takes as its informed
slice the current clean estimate (the data prediction at this step) of the slice it shares with the window before
it, which was predicted earlier in the same step; that is propagation's choice of informed slice, applied at
every step instead of once. MONAI's samplers have no such scheme, hence this module.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from ..data.conditioning import window_condition
from .dpm_solver import data_prediction
from .window_plan import plan_windows, waves

BLEND_SHIFT = 5  # coprime with the default n = 16: the first window's start visits every offset in 16 steps


def blend_waves(num_slices: int, window: int, overlap: int, position: float, steps: int) -> list[list]:
    """The waves of windows of every step (step i shifts the first window by i * ``BLEND_SHIFT``)."""
    return [waves(plan_windows(num_slices, window, overlap, position, shift=i * BLEND_SHIFT)) for i in range(steps)]


def blend_sample(sampler, mask_lat, informed, position, generator, mask_only, start_noise) -> torch.Tensor:
    """(Z, C, h, w) latents: every slice co-denoised at every step by shifting, overlapping windows (no slice is
    known in advance, so the inpainting setting has nothing to hold here).

    ``sampler`` is the ``PropagationSampler`` (its network, scheduler, settings, ``predict`` and ``progress``);
    ``start_noise`` the (Z, C, h, w) starting noise."""
    s = sampler.settings
    z_total = mask_lat.shape[0]
    device = next(sampler.network.parameters()).device
    x = start_noise.permute(1, 0, 2, 3)[None].to(device)  # (1, C, Z, h, w): the solver moves the whole volume
    informed = informed.to(device)
    timesteps = sampler.scheduler.timesteps
    plan = blend_waves(z_total, s.window, s.overlap, position, len(timesteps))
    bar = tqdm(total=sum(map(len, plan)), desc="co-denoising", unit="wave", disable=not sampler.progress)
    for t, step_waves in zip(timesteps, plan):
        t = int(t)
        total = torch.zeros_like(x)
        count = torch.zeros(z_total, device=device)
        for group in step_waves:
            cond, latents = [], []
            for w in group:
                idx = torch.arange(w.start, w.stop)
                if w.external_informed:
                    inf = informed
                else:  # the shared slice's clean estimate, predicted by the window before it in this step
                    shared = total[0, :, w.informed] / count[w.informed]
                    inf = data_prediction(sampler.scheduler, shared, t, x[0, :, w.informed])
                cond.append(window_condition(mask_lat[idx], inf.cpu(), idx - w.informed, mask_only))
                latents.append(x[0, :, w.start : w.stop])
            pred = sampler.predict(torch.stack(latents), t, torch.stack(cond).to(device))
            for b, w in enumerate(group):
                total[0, :, w.start : w.stop] += pred[b]
                count[w.start : w.stop] += 1
            bar.update(1)
        output = total / count.view(1, 1, -1, 1, 1)
        x = sampler.scheduler.step(output, t, x, eta=s.eta, generator=generator)[0]
    bar.close()
    return x[0].permute(1, 0, 2, 3).float().cpu()
