"""The propagation sampler: executes a window plan with DDIM and RePaint-style inpainting of the known slices.

At every DDIM step the known (overlap) slices are replaced by a fresh forward-diffusion sample of their clean
latents at exactly the timestep the network is called with, so they sit at the same noise level as the rest of
the window; after the last step they are set back to their clean values. Windows of one wave (the up and the down
window) are denoised as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..data.conditioning import lesion_region, window_condition, without_lesions
from .blend import blend_sample
from .window_plan import Window, plan_windows, waves


@dataclass
class SamplerSettings:
    """The sampler's settings and their defaults (the one place they are set; the configs read them from here)."""

    window: int = 16
    overlap: int = 1
    steps: int = 15
    eta: float = 0.0
    batch_waves: bool = True  # denoise the up and down windows of a wave together
    inpaint: bool = True  # False: the ablation without overlap inpainting (known slices are not enforced)
    # "auto" picks bf16 where the device runs it natively, else fp32 (scripts.precision); "bf16": the UNet runs
    # under bf16 autocast on any device; the solver stays fp32
    precision: str = "auto"
    # correlation of the starting noise between neighbouring slices (AR(1) along z, PYoCo's progressive noise);
    # 0 draws every slice independently (the paper), which leaves slice-to-slice flicker (BENCHMARKS.md)
    noise_correlation: float = 0.5
    # "propagate": the paper's window-by-window propagation; "blend": every slice co-denoised at every step by
    # shifting windows (sampling/blend.py)
    scheme: str = "propagate"


SCHEMES = ("propagate", "blend")


class PropagationSampler:
    """``network`` is the window model, or a function that returns it (loaded on first use).

    ``lesion_guidance`` is the guidance scale g on the mask's lesions (set per volume by the synthesizer,
    ``lesion_guidance.py``): around them the prediction is u + g (c - u), with c the prediction for the mask and u for
    the same mask with its lesions relabelled as anatomy. 1 is the plain model (no extra network call); it needs
    ``lesions``, the label set's (lesion labels, anatomy label)."""

    def __init__(
        self,
        network,
        scheduler,
        settings: SamplerSettings | None = None,
        progress: bool = True,
        lesions: tuple | None = None,
    ):
        self._network, self.scheduler = network, scheduler
        self.settings = settings or SamplerSettings()
        self.progress = progress
        self.lesions = lesions
        self.lesion_guidance = 1.0

    @property
    def network(self):
        if not isinstance(self._network, torch.nn.Module) and callable(self._network):
            self._network = self._network()
        return self._network

    @network.setter
    def network(self, value) -> None:
        self._network = value

    def inpaint(self, x: torch.Tensor, clean: torch.Tensor, known: torch.Tensor, t: torch.Tensor, generator):
        """Replace the known slices of ``x`` (B, C, n, h, w) by q(x_t | clean) at timestep ``t``."""
        if not known.any():
            return x
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
        noisy = self.scheduler.add_noise(original_samples=clean, noise=noise, timesteps=t.expand(clean.shape[0]))
        k = known.view(known.shape[0], 1, -1, 1, 1)
        return torch.where(k, noisy, x)

    def predict(self, x: torch.Tensor, t: int, cond: torch.Tensor, guidance: float | None = None) -> torch.Tensor:
        """The window model's output for (B, C, n, h, w) latents ``x`` at timestep ``t`` (bf16 autocast when the
        settings say so), lesion-guided by ``guidance`` (default: ``lesion_guidance``)."""
        scale = float(self.lesion_guidance if guidance is None else guidance)
        inputs = torch.cat([x, cond], dim=1)
        guided = None
        if scale != 1.0:
            if not self.lesions or not self.lesions[0]:
                raise ValueError("lesion_guidance needs a label set with lesion labels")
            region = lesion_region(cond, self.lesions[0])
            guided = region.flatten(1).amax(dim=1) > 0
            # the lesion-free reference rides in the same batch, for the windows that hold a lesion only
            reference = torch.cat([x[guided], without_lesions(cond[guided], *self.lesions)], dim=1)
            inputs = torch.cat([inputs, reference])
        pred = network_output(self.network, inputs, t, precision=self.settings.precision)
        if guided is None or not guided.any():
            return pred[: x.shape[0]]
        out, reference = pred[: x.shape[0]].clone(), pred[x.shape[0] :]
        # guided around the lesions only, so the rest of a window with a lesion keeps the plain prediction of its
        # neighbours without one (the model still dims those slices a little through its own context: BENCHMARKS)
        out[guided] += (scale - 1.0) * region[guided] * (out[guided] - reference)
        return out

    def step(self, x: torch.Tensor, t: int, cond: torch.Tensor, known: torch.Tensor, generator) -> torch.Tensor:
        """One solver step of a wave; ``known`` (B, n) marks the slices held by inpainting (unused here; the
        rollout sampler records which slices were the model's own)."""
        return self.scheduler.step(self.predict(x, t, cond), t, x, eta=self.settings.eta, generator=generator)[0]

    def groups(self, num_slices: int, position: float) -> list[list[Window]]:
        """The windows of a volume in the order they are denoised: one group per wave (or per window without
        ``batch_waves``), each group one batch."""
        plan = plan_windows(num_slices, self.settings.window, self.settings.overlap, position)
        return waves(plan) if self.settings.batch_waves else [[w] for w in plan]

    @torch.inference_mode()
    def sample(
        self,
        mask_lat: torch.Tensor,
        informed: torch.Tensor,
        position: float,
        generator: torch.Generator,
        mask_only: bool = False,
    ):
        """Generate (Z, C, h, w) latents for (Z, L, h, w) mask occupancy and a (C, h, w) informed latent.

        ``mask_only``: a model trained without informed slices (the baseline); windows still join by overlap
        inpainting, but no window is conditioned on a slice."""
        s = self.settings
        z_total, _, hh, ww = mask_lat.shape
        channels = informed.shape[0]
        self.scheduler.set_timesteps(s.steps)
        start_noise = None
        if s.noise_correlation > 0:  # one noise volume for all windows, so neighbours agree across windows too
            start_noise = correlated_noise((z_total, channels, hh, ww), s.noise_correlation, generator)
        if s.scheme == "blend":
            if start_noise is None:
                start_noise = torch.randn((z_total, channels, hh, ww), generator=generator)
            return blend_sample(self, mask_lat, informed, position, generator, mask_only, start_noise)
        if s.scheme != "propagate":
            raise ValueError(f"sampler scheme must be one of {SCHEMES}, not {s.scheme!r}")
        device = next(self.network.parameters()).device
        out = torch.zeros((z_total, channels, hh, ww), dtype=torch.float32)
        written = torch.zeros(z_total, dtype=torch.bool)
        groups = self.groups(z_total, position)
        bar = tqdm(total=len(groups) * s.steps, desc="denoising windows", unit="step", disable=not self.progress)
        for group in groups:
            cond, clean, known = [], [], []
            for w in group:
                idx = torch.arange(w.start, w.stop)
                inf = informed if w.external_informed else out[w.informed]
                cond.append(window_condition(mask_lat[idx], inf, idx - w.informed, mask_only))
                clean.append(out[idx].permute(1, 0, 2, 3))
                known.append(torch.tensor([z in w.known for z in range(w.start, w.stop)]))
            cond = torch.stack(cond).to(device)
            clean = torch.stack(clean).to(device)
            known = torch.stack(known).to(device)
            if start_noise is None:
                x = torch.randn(clean.shape, generator=generator).to(device)
            else:
                x = torch.stack([start_noise[w.start : w.stop].permute(1, 0, 2, 3) for w in group]).to(device)
            for t in self.scheduler.timesteps:
                if s.inpaint:
                    x = self.inpaint(x, clean, known, t.to(device), generator)
                x = self.step(x, int(t), cond, known if s.inpaint else torch.zeros_like(known), generator)
                bar.update(1)
            if s.inpaint:
                x = torch.where(known.view(known.shape[0], 1, -1, 1, 1), clean, x)
            x = x.float().cpu()
            for b, w in enumerate(group):
                for z in w.new:
                    if written[z]:
                        raise RuntimeError(f"window plan wrote slice {z} twice")  # the plan's invariant, checked
                    out[z] = x[b, :, z - w.start]
                    written[z] = True
        bar.close()
        if not written.all():
            raise RuntimeError(f"window plan left slices {torch.nonzero(~written).flatten().tolist()} unwritten")
        return out


def correlated_noise(shape, rho: float, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``shape`` (Z, ...) whose slices follow an AR(1) chain along Z: slice z and z + k
    correlate by rho^k, and every slice is still N(0, I)."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"noise correlation must lie in [0, 1), got {rho}")
    fresh = torch.randn(shape, generator=generator)
    out = torch.empty_like(fresh)
    out[0] = fresh[0]
    for z in range(1, shape[0]):
        out[z] = rho * out[z - 1] + (1.0 - rho**2) ** 0.5 * fresh[z]
    return out


@torch.inference_mode()
def denoise(network, scheduler, x, steps: int, eta: float, generator, *args, precision="fp32", progress=False):
    """The plain solver loop: ``x`` (noise) denoised in ``steps`` steps of ``scheduler``; the network is called as
    ``network(x, t, *args)`` (bf16 autocast when ``precision`` is "bf16"; the solver stays fp32)."""
    device = next(network.parameters()).device
    scheduler.set_timesteps(steps)
    x = x.to(device)
    for t in tqdm(scheduler.timesteps, desc="denoising", unit="step", disable=not progress):
        pred = network_output(network, x, t, *args, precision=precision)
        x, _ = scheduler.step(pred, t.item(), x, eta=eta, generator=generator)
    return x.float().cpu()


def network_output(network, x: torch.Tensor, t, *args, precision: str = "fp32") -> torch.Tensor:
    """``network(x, t, *args)`` with timestep ``t`` for every batch element, on ``x``'s device, in fp32 (bf16
    autocast inside when ``precision`` is "bf16"): how every sampler calls its denoiser."""
    device = x.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        pred = network(x, torch.as_tensor(t, device=device).expand(x.shape[0]), *args)
    return pred.float()


def sample_slices(network, scheduler, positions: torch.Tensor, shape, steps: int, eta: float, generator):
    """DDIM sampling of single slice latents at normalised positions (the informed-slice model, mode 'ig')."""
    device = next(network.parameters()).device
    x = torch.randn((len(positions), *shape), generator=generator)
    return denoise(network, scheduler, x, steps, eta, generator, positions.float().to(device))


__all__ = ["PropagationSampler", "SamplerSettings", "denoise", "sample_slices", "Window"]
