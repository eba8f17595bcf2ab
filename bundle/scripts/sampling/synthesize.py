"""The synthesizer: one mask in, one new image volume out on the mask's grid, with the mask used and a
reproducible record (``results.write_result`` writes them; ``enhance.run_datalist`` runs whole datalists).

Used by the main job, enhancement and evaluation (through ``enhance``), the benchmark and the MONAI Label app.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, replace

import numpy as np
import torch

from ..data.conditioning import mask_to_latent_grid
from ..data.datalist import read_mask
from ..data.label_set import LabelSet
from ..data.mask_augment import AugmentSettings, augment_mask
from ..data.model_space import ModelGrid, from_model_space, to_model_space
from ..errors import Gem3dInputError
from ..precision import resolve_precision
from .informed import informed_latent
from .lesion_guidance import DEFAULT_SETTING as DEFAULT_GUIDANCE
from .lesion_guidance import check_guidance, guidance_scale
from .model import DECODERS
from .sampler import SCHEMES, PropagationSampler, SamplerSettings
from .scanner_noise import DEFAULT_FRACTION as DEFAULT_NOISE_FRACTION
from .scanner_noise import DEFAULT_KIND as DEFAULT_NOISE_KIND
from .scanner_noise import DEFAULT_SETTING as DEFAULT_NOISE
from .scanner_noise import add_scanner_noise, check_fraction, check_kind
from .scanner_noise import check_setting as check_noise_setting
from .scanner_noise import noise_level
from .window_plan import check_parameters

logger = logging.getLogger(__name__)


class Synthesizer:
    """Turns one mask into one synthetic volume; every parameter that shaped the result goes into its record."""

    # a backend's own settings that ``variant`` may override too; ``window_weights`` names the window model in use
    variant_attributes: tuple = (
        "decoder",
        "window_weights",
        "scanner_noise",
        "scanner_noise_fraction",
        "scanner_noise_kind",
        "lesion_guidance",
    )

    def __init__(
        self,
        model,
        grid: ModelGrid,
        labels: LabelSet,
        modality: str = "mri",
        latent_channels: int = 4,
        window: int = SamplerSettings.window,
        overlap: int = SamplerSettings.overlap,
        steps: int = SamplerSettings.steps,
        eta: float = SamplerSettings.eta,
        position: float = 0.5,
        informed: dict | None = None,
        augment: str = "none",
        zero_background: bool | None = None,
        progress: bool = True,
        inpaint: bool = True,
        precision: str = SamplerSettings.precision,
        solvers: dict | None = None,
        noise_correlation: float = SamplerSettings.noise_correlation,
        decoder: str = "slice",
        window_weights: str = "stage2",
        scanner_noise: str | float = DEFAULT_NOISE,
        scanner_noise_fallback: float = 0.0,
        scheme: str = SamplerSettings.scheme,
        scanner_noise_fraction: float = DEFAULT_NOISE_FRACTION,
        scanner_noise_kind: str = DEFAULT_NOISE_KIND,
        lesion_guidance: str | float = DEFAULT_GUIDANCE,
    ):
        self.model = model
        self.decoder = decoder
        self.window_weights = str(window_weights)
        self.scanner_noise = scanner_noise
        self.scanner_noise_fallback = float(scanner_noise_fallback)
        self.scanner_noise_fraction = scanner_noise_fraction
        self.scanner_noise_kind = scanner_noise_kind
        self.cfg = {
            "grid": grid,
            "labels": labels,
            "num_labels": labels.num_labels,
            "modality": modality,
            "latent_channels": int(latent_channels),
        }
        self.lesion_guidance = lesion_guidance  # checked against the label set, so after cfg
        self.settings = SamplerSettings(
            window=int(window),
            overlap=int(overlap),
            steps=int(steps),
            eta=float(eta),
            inpaint=as_flag(inpaint, "inpaint"),
            precision=str(precision),
            noise_correlation=float(noise_correlation),
            scheme=str(scheme),
        )
        check_parameters(1, self.settings.window, self.settings.overlap, position)
        self.settings, self.precision_reason = _check_settings(self.settings, model.device)
        logger.info(f"precision: {self.settings.precision} ({self.precision_reason})")
        # named solvers (e.g. {"ddim": DDIMScheduler, "dpm++2m": DPMSolverMultistepScheduler}) that ``variant`` can
        # switch to; the name in use is derived from the sampler's scheduler (see ``solver``)
        self.solvers = dict(solvers or {})
        self.position = float(position)
        self.informed = dict(informed or {"mode": "ic"})
        self.augment = AugmentSettings.preset(augment) if isinstance(augment, str) else augment
        # zeroing outside the mask is right only where the mask's foreground is the whole anatomy (a brain mask)
        self.zero_background = (
            labels.covers_anatomy if zero_background is None else as_flag(zero_background, "zero_background")
        )
        self.sampler = self._make_sampler(progress)

    @property
    def weights_name(self) -> str:
        """The name of the trained weights this backend generates with (``--window_weights`` for GEM-3D)."""
        return self.window_weights

    def decode_tensor(self, latents: torch.Tensor) -> torch.Tensor:
        """What the sampler returned as the model-space image before scanner noise, differentiable in ``latents``
        (reward backpropagation's path to the critics)."""
        return self.model.decode_tensor(latents, self.decoder)

    @property
    def decoder(self) -> str:
        """Either "slice" (the 2D decoder, slice by slice) or "volume" (the decoder with cross-slice layers)."""
        return self._decoder

    @decoder.setter
    def decoder(self, value: str) -> None:
        if value not in DECODERS:  # refused when set (a variant too), not after sampling
            raise Gem3dInputError(f"decoder must be {' or '.join(map(repr, DECODERS))}, not {value!r}")
        self._decoder = str(value)

    @property
    def scanner_noise(self) -> str:
        """ "none", "informed" (the informed slice's noise level) or a level, as a string so that a variant's override
        of either kind goes through this check (see ``scanner_noise.check_setting``)."""
        return self._scanner_noise

    @scanner_noise.setter
    def scanner_noise(self, value) -> None:
        self._scanner_noise = str(check_noise_setting(value))

    @property
    def scanner_noise_fraction(self) -> float:
        """The share of the informed slice's noise level that "informed" and "auto" add."""
        return self._scanner_noise_fraction

    @scanner_noise_fraction.setter
    def scanner_noise_fraction(self, value) -> None:
        self._scanner_noise_fraction = check_fraction(value)

    @property
    def scanner_noise_kind(self) -> str:
        """The noise's distribution: "gaussian" (zero mean, the default) or "rician" (magnitude noise)."""
        return self._scanner_noise_kind

    @scanner_noise_kind.setter
    def scanner_noise_kind(self, value) -> None:
        self._scanner_noise_kind = check_kind(value)  # refused when set (a variant too), not after sampling

    @property
    def lesion_guidance(self) -> str:
        """ "auto" or a scale (as a string, like ``scanner_noise``; see ``lesion_guidance.py``)."""
        return self._lesion_guidance

    @lesion_guidance.setter
    def lesion_guidance(self, value) -> None:
        guidance_scale(value, None, self.cfg["labels"].lesion_labels)  # refused when set, not after sampling
        self._lesion_guidance = str(check_guidance(value))

    def _make_sampler(self, progress: bool):
        labels = self.cfg["labels"]
        # lesion guidance's reference relabels the lesions as the anatomy they sit in (background without one)
        lesions = (labels.lesion_labels, labels.anatomy_labels[0] if labels.anatomy_labels else 0)
        return PropagationSampler(
            lambda: self.model.window_net, self.model.scheduler, self.settings, progress=progress, lesions=lesions
        )

    @property
    def solver(self) -> str:
        """Name of the scheduler the sampler uses: its key in ``solvers``, else its class name."""
        for name, scheduler in self.solvers.items():
            if scheduler is self.sampler.scheduler:
                return name
        return type(self.sampler.scheduler).__name__

    @contextmanager
    def variant(self, overrides: dict | None = None, network=None):
        """Temporarily run with other sampler settings (steps, eta, batch_waves, inpaint, precision), another
        ``solver`` (a name from ``solvers``), ``informed`` source, ``augment`` preset or window network; restored on
        exit.

        The evaluation rows and the benchmark settings are such overrides."""
        overrides = dict(overrides or {})
        swapped = [(self, "settings"), (self, "precision_reason"), (self, "informed"), (self, "augment")]
        swapped += [(self.sampler, "network"), (self.sampler, "scheduler")]
        swapped += [(self, name) for name in self.variant_attributes]
        saved = [getattr(obj, name) for obj, name in swapped]
        solver = overrides.pop("solver", None)
        informed = overrides.pop("informed", None)
        augment = overrides.pop("augment", None)
        try:
            for name in self.variant_attributes:
                if name in overrides:
                    setattr(self, name, type(getattr(self, name))(overrides.pop(name)))
            fields = {k: overrides.pop(k) for k in list(overrides) if k in SamplerSettings.__dataclass_fields__}
            if overrides:
                raise Gem3dInputError(f"unknown synthesis overrides {sorted(overrides)}")
            flags = {k: as_flag(v, k) for k, v in fields.items() if isinstance(getattr(self.settings, k), bool)}
            settings = replace(self.settings, **{**fields, **flags})
            if "precision" in fields:
                settings, self.precision_reason = _check_settings(settings, self.model.device)
            else:
                _check_settings(settings, self.model.device)
            self.settings = self.sampler.settings = settings
            if solver is not None:
                self.sampler.scheduler = pick_solver(self.solvers, solver)
            if informed is not None:
                self.informed = {**self.informed, **informed}
            if augment is not None:
                self.augment = AugmentSettings.preset(augment)
            if network is not None:
                self.sampler.network = network
            yield self
        finally:
            for (obj, name), value in zip(swapped, saved):
                setattr(obj, name, value)
            self.sampler.settings = self.settings

    def synthesize(
        self,
        mask_path: str,
        seed: int,
        case_id: str,
        image_path: str | None = None,
        informed: dict | None = None,
        position: float | None = None,
    ) -> dict:
        """Return {"image": array on the mask's grid, "mask": mask used, "affine", "record"}."""
        start = time.time()
        ms = self.generate_model_space(mask_path, seed, case_id, image_path, informed, position)
        geom = ms["geometry"]
        image = delivered(from_model_space(ms["image"], geom, "image"), ms["native_mask"], self.zero_background)
        record = {
            "case": case_id,
            "mask_source": os.path.abspath(mask_path),
            "image_source": image_path,
            "seed": int(seed),
            **ms["generation"],
            "augmentation": ms["augmentation"],
            "sampler": {**asdict(self.settings), "solver": self.solver, "precision_reason": self.precision_reason},
            "zero_background": self.zero_background,
            "model_space": {
                "spacing_mm": geom.spacing,
                "shape": [self.cfg["grid"].size, self.cfg["grid"].size, geom.resized[2]],
                "zoom": geom.zoom,
                "note": ms["note"],
            },
            "seconds": round(time.time() - start, 2),
        }
        focus = self.cfg["labels"].focus  # what the preview centres on
        return {"image": image, "mask": ms["native_mask"], "affine": ms["affine"], "record": record, "focus": focus}

    def generate_model_space(
        self,
        mask_path: str,
        seed: int,
        case_id: str,
        image_path: str | None = None,
        informed: dict | None = None,
        position: float | None = None,
    ) -> dict:
        """The model-space half of ``synthesize`` (reward fine-tuning scores this): {"image": (S, S, Z) as generated,
        "mask": the model-space mask used, "native_mask", "affine", "geometry", "augmentation", "generation",
        "note"}."""
        position = self.position if position is None else float(position)
        informed = {**self.informed, **(informed or {})}  # a partial spec ({"mode": "ic"}) takes the rest (pool etc.)
        mask, affine = read_mask(mask_path, self.cfg["num_labels"])
        self._check_mask(mask, position)
        rng = np.random.default_rng(int(seed))
        generator = torch.Generator().manual_seed(int(seed))
        mask_ms, geom = to_model_space(mask, affine, self.cfg["grid"], "label")
        grid_note = _check_extent(mask_path, geom, self.cfg["grid"], self.settings.window)
        aug_params = {"settings": asdict(self.augment)}
        if self.augment.flip or self.augment.max_rotation_deg > 0 or self.augment.max_shift_fraction > 0:
            mask_ms, aug_params = augment_mask(mask_ms, self.augment, rng, self.cfg["labels"])
            mask_used = from_model_space(mask_ms, geom, "label").astype(np.int16)
        else:
            mask_used = mask
        image_ms, generation = self._generate(mask_ms, rng, generator, informed, position, image_path, case_id)
        return {
            "image": image_ms,
            "mask": mask_ms,
            "native_mask": mask_used,
            "affine": affine,
            "geometry": geom,
            "augmentation": aug_params,
            "generation": generation,
            "note": grid_note,
        }

    @contextmanager
    def using_sampler(self, sampler):
        """Temporarily sample with another sampler (the rollout sampler of reward fine-tuning)."""
        saved, self.sampler = self.sampler, sampler
        try:
            yield self
        finally:
            self.sampler = saved

    def _check_mask(self, mask: np.ndarray, position: float) -> None:
        check_parameters(mask.shape[2], self.settings.window, self.settings.overlap, position)

    def _generate(self, mask_ms, rng, generator, informed: dict, position: float, image_path, case_id) -> tuple:
        """GEM-3D: the informed slice, then windows propagated from ``position``. Returns the (S, S, Z) model-space
        image and what the record says about how it was made."""
        # the slice model (mode "ig") samples with the window sampler's solver, steps and eta, variants included
        sampling = {"steps": self.settings.steps, "eta": self.settings.eta, "scheduler": self.sampler.scheduler}
        inf_lat, inf_record = informed_latent(
            self.model,
            informed,
            position,
            {"image": image_path, "id": case_id},
            rng,
            generator,
            {**self.cfg, **sampling},
        )
        m = torch.from_numpy(np.moveaxis(mask_ms, 2, 0).copy())
        mask_lat = mask_to_latent_grid(m, self.cfg["num_labels"], inf_lat.shape[-1])
        scale, source = guidance_scale(self.lesion_guidance, inf_record["mode"], self.cfg["labels"].lesion_labels)
        self.sampler.lesion_guidance = scale
        latents = self.sampler.sample(mask_lat, inf_lat, position, generator, mask_only=inf_record["mode"] == "none")
        image, added = self._add_scanner_noise(
            self.model.decode(latents, self.decoder), rng, inf_record.get("noise_sigma"), inf_record["mode"]
        )
        generation = {"backend": "gem3d", "position": position, "informed": inf_record, "decoder": self.decoder}
        guidance = {"setting": self.lesion_guidance, "scale": scale, "source": source}
        return image, {
            **generation,
            "window_weights": self.window_weights,
            "scanner_noise": added,
            "lesion_guidance": guidance,
        }

    def _add_scanner_noise(
        self, image: np.ndarray, rng, informed_sigma: float | None, informed_mode: str
    ) -> tuple[np.ndarray, dict]:
        """The decoded model-space image with the scanner noise ``scanner_noise`` asks for, and its record."""
        sigma, source = noise_level(
            self.scanner_noise, informed_sigma, self.scanner_noise_fallback, informed_mode, self.scanner_noise_fraction
        )
        kind = self.scanner_noise_kind
        record = {"setting": self.scanner_noise, "sigma": round(sigma, 5), "source": source, "kind": kind}
        return add_scanner_noise(image, sigma, rng, kind), record


def delivered(image: np.ndarray, mask: np.ndarray, zero_background: bool) -> np.ndarray:
    """A generated image as gem3d delivers it: float32 in [0, 1], the model intensities that real scans are mapped to
    (clipped there too; the decoder and the scanner noise overshoot 1 at a few bright voxels), zero outside ``mask``
    where the mask is the whole anatomy (``zero_background``). On the mask's grid for the user; in model space for the
    reward critics."""
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    return np.where(np.asarray(mask) > 0, image, 0.0).astype(np.float32) if zero_background else image


def _check_extent(path: str, geom, grid: ModelGrid, window: int) -> str | None:
    """Refuse a mask too thin for the model; say so (printed and recorded) when its z extent lies far outside the
    training range. Returns that note, or None."""
    z, (lo, hi) = geom.resized[2], grid.slices
    z_mm = z * geom.spacing[2]
    if geom.ras_shape[2] > 1 and z < 2:
        raise Gem3dInputError(
            f"mask {path} covers {z_mm:.1f} mm along z: at the model's slice spacing of {geom.spacing[2]:.2f} mm that "
            "is fewer than 2 slices; give a mask with more slices"
        )
    note = None
    if z < lo / 2 or z > 2 * hi:
        note = (
            f"the mask spans {z} model slices ({z_mm:.0f} mm) while training volumes spanned {lo}-{hi}: windows of "
            f"{window} slices are propagated over it, but anatomy far outside the training range is extrapolated"
        )
    if geom.zoom > 1.0:
        note = (note + "; " if note else "") + (
            f"even cropped to the mask's foreground, the field of view is wider than the model's {grid.size} voxels "
            f"at {grid.spacing[0]:.2f} x {grid.spacing[1]:.2f} mm, so the model space zooms out by {geom.zoom:.2f}: "
            "anatomy is generated with less detail"
        )
    if note:
        logger.warning(f"{path}: {note}")
    return note


def pick_solver(options: dict, name: str, what: str = "solver"):
    """The option called ``name`` (a solver; with ``what="backend"`` a synthesizer); an unknown name gets an error
    listing the known ones."""
    if name not in options:
        raise Gem3dInputError(f"unknown {what} {name!r}; known {what}s: {sorted(options)}")
    return options[name]


def as_flag(value, name: str) -> bool:
    """A switch given as a bool, 0 / 1, or the words true / false (a command line's ``{"inpaint": false}`` arrives
    as the string "false", which ``bool`` would read as True); anything else is refused."""
    if isinstance(value, (bool, np.bool_)) or value in (0, 1):
        return bool(value)
    words = {"true": True, "false": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise Gem3dInputError(f"{name} must be true or false, not {value!r}")


def _check_settings(settings: SamplerSettings, device) -> tuple[SamplerSettings, str]:
    """Validate the settings; return them with ``auto`` precision resolved for ``device``, and the reason."""
    if settings.steps < 1:
        raise Gem3dInputError(f"steps must be >= 1, got {settings.steps}")
    if settings.eta < 0:
        raise Gem3dInputError(f"eta must be >= 0, got {settings.eta}")
    if not 0 <= settings.noise_correlation < 1:
        raise Gem3dInputError(f"noise_correlation must lie in [0, 1), got {settings.noise_correlation}")
    if settings.scheme not in SCHEMES:
        raise Gem3dInputError(f"sampler_scheme must be one of {', '.join(SCHEMES)}, not {settings.scheme!r}")
    precision, reason = resolve_precision(settings.precision, device)
    return replace(settings, precision=precision), reason
