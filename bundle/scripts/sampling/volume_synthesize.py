"""The 3D backend behind the same contract as GEM-3D: one mask in, one image volume out on the mask's grid.

``VolumeSynthesizer`` shares everything with GEM-3D's ``Synthesizer`` (mask checks, model space, augmentation,
record, variants, writing) and replaces only the generation: the whole model-space volume is denoised at once in
the 3D autoencoder's latent space by the UNet under ControlNet mask control, then decoded patch by patch.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.conditioning import mask_onehot
from ..data.volume_latents import pad_volume
from .sampler import SamplerSettings, denoise
from .scanner_noise import DEFAULT_FRACTION as DEFAULT_NOISE_FRACTION
from .scanner_noise import DEFAULT_KIND as DEFAULT_NOISE_KIND
from .scanner_noise import DEFAULT_SETTING as DEFAULT_NOISE
from .synthesize import Synthesizer


class VolumeSampler:
    """What ``Synthesizer.variant`` swaps (network, scheduler, settings) for the 3D backend."""

    def __init__(self, model, scheduler, settings: SamplerSettings, progress: bool = True):
        self.model, self.scheduler, self.settings, self.progress = model, scheduler, settings, progress
        self.network = None  # None: the model's ControlNet-controlled UNet, loaded on first use

    def controlled(self, conditioning_scale: float):
        """The denoiser in use (the model's ControlNet-controlled UNet unless ``network`` swaps it) at
        ``conditioning_scale``."""
        net = self.network or self.model.denoiser
        net.conditioning_scale = float(conditioning_scale)
        return net

    def sample(self, condition: torch.Tensor, latent_shape, generator, conditioning_scale: float) -> torch.Tensor:
        """A (C, x, y, z) latent for a (L, X, Y, Z) one-hot mask."""
        net = self.controlled(conditioning_scale)
        x = torch.randn((1, *latent_shape), generator=generator)
        device = next(net.parameters()).device
        s = self.settings
        cond = condition[None].to(device)
        return denoise(
            net, self.scheduler, x, s.steps, s.eta, generator, cond, precision=s.precision, progress=self.progress
        )[0]


class VolumeSynthesizer(Synthesizer):
    variant_attributes = ("conditioning_scale", "scanner_noise", "scanner_noise_fraction", "scanner_noise_kind")

    def __init__(
        self,
        model,
        grid,
        labels,
        modality: str = "mri",
        steps: int = SamplerSettings.steps,
        eta: float = SamplerSettings.eta,
        augment: str = "none",
        zero_background: bool | None = None,
        progress: bool = True,
        precision: str = SamplerSettings.precision,
        solvers: dict | None = None,
        conditioning_scale: float = 1.0,
        scanner_noise: str | float = DEFAULT_NOISE,
        scanner_noise_fallback: float = 0.0,
        scanner_noise_fraction: float = DEFAULT_NOISE_FRACTION,
        scanner_noise_kind: str = DEFAULT_NOISE_KIND,
        controlnet_weights: str = "default",
    ):
        self.conditioning_scale = float(conditioning_scale)
        self.controlnet_weights = str(controlnet_weights)  # the model's ControlNet file (``--medlord_weights``)
        super().__init__(
            model,
            grid,
            labels,
            modality,
            steps=steps,
            eta=eta,
            informed={"mode": "none"},
            augment=augment,
            zero_background=zero_background,
            progress=progress,
            precision=precision,
            solvers=solvers,
            scanner_noise=scanner_noise,
            scanner_noise_fallback=scanner_noise_fallback,
            scanner_noise_fraction=scanner_noise_fraction,
            scanner_noise_kind=scanner_noise_kind,
        )

    @property
    def weights_name(self) -> str:
        return self.controlnet_weights

    def decode_tensor(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode_tensor(latents)

    def _make_sampler(self, progress: bool) -> VolumeSampler:
        return VolumeSampler(self.model, self.model.scheduler, self.settings, progress)

    def _check_mask(self, mask: np.ndarray, position: float) -> None:
        """No window plan: any mask that reaches model space (checked there) is generated as one volume."""

    def _generate(self, mask_ms, rng, generator, informed: dict, position: float, image_path, case_id) -> tuple:
        padded = pad_volume(mask_ms, self.model.multiple)
        cond = mask_onehot(padded.astype(np.int64), self.cfg["num_labels"])
        latent = self.sampler.sample(cond, self.model.latent_shape(padded.shape), generator, self.conditioning_scale)
        x, y, z = mask_ms.shape
        # no informed slice: "informed" noise is the training scans' level
        image, added = self._add_scanner_noise(self.model.decode(latent)[:x, :y, :z], rng, None, "none")
        record = {
            "scanner_noise": added,
            "backend": "medlord",
            "medlord_weights": self.controlnet_weights,
            "informed": {"mode": "none", "note": "the 3D backend takes no informed slice"},
            "conditioning_scale": self.conditioning_scale,
            "latent_shape": list(latent.shape),
        }
        return image, record
