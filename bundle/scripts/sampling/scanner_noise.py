"""Scanner noise: the part of a real scan that no autoencoder decodes.

Real MR magnitude images carry Rician noise, independent from voxel to voxel. The KL autoencoder removes it (an L1
decoder predicts the mean), so generated volumes are smoother from slice to slice than the scans they imitate: the
decoder's own round trip of real volumes is already +0.063 adjacent-slice SSIM above real (BENCHMARKS). The informed
slice carries the patient's scanner (contrast and noise); ``scanner_noise="informed"`` measures the noise of that
slice and gives the generated volume noise of that level (times ``fraction``), as it gives it the same contrast.
``"auto"`` (the default) does the same except where the informed slice is the true volume's own: that volume is
re-made to be compared with its own scan, whose noise no added noise can match voxel for voxel (it costs fidelity),
so it gets none. The default fraction, 0.7, was measured on the demo (BENCHMARKS, "The default since 0.16.0"): the
whole level costs FID on real anatomy too (+12%), about two thirds of it brings adjacent-slice SSIM to real's. The
noise is zero-mean Gaussian (``scanner_noise_kind``): what the decoder returns is already the noisy magnitude's mean.

Neither MONAI nor nibabel estimates noise; ``estimate_noise_sigma`` is Immerkaer's operator (1996), made robust to
anatomy edges by a median instead of a mean.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import Gem3dInputError, number_in

MODES = ("none", "informed", "auto")
DEFAULT_SETTING = "auto"
DEFAULT_FRACTION = 0.7
# the noise's distribution. Zero-mean Gaussian for MRI too (the default since 0.17.0): the decoder, trained with L1 on
# Rician-noisy magnitude scans, already returns their biased magnitude, and Rician noise on top counts the bias twice
# (IC FID -2% on every plane in every seed, nothing else moved: BENCHMARKS, "Gaussian scanner noise"); "rician" is
# the magnitude noise of 0.16.0
KINDS = ("gaussian", "rician")
DEFAULT_KIND = "gaussian"
# informed modes whose slice is the volume's own scan: "auto" adds no noise there
OWN_SCAN_MODES = ("true",)
# the 3x3 operator is the difference of two Laplacians: zero on any locally linear image; on white noise of standard
# deviation sigma its response has standard deviation 6 sigma (sqrt of the sum of the squared weights, 36)
_OPERATOR = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
_GAIN = 6.0
_MAD_TO_SIGMA = 1.4826  # a normal variable's standard deviation over its median absolute deviation


def estimate_noise_sigma(image: np.ndarray, foreground: np.ndarray | None = None) -> float:
    """Standard deviation of the white noise in a 2D slice (or each slice of a stack, pooled), from the operator's
    response at pixels whose whole 3x3 neighbourhood is foreground (default: intensity > 0, the anatomy of a
    skull-stripped scan). The median keeps anatomy edges (few pixels) from inflating it. 0 when too few pixels."""
    image = np.asarray(image, np.float64)
    stack = image[..., None] if image.ndim == 2 else image
    fg = (stack > 0) if foreground is None else np.asarray(foreground, bool).reshape(stack.shape)
    responses = []
    for z in range(stack.shape[2]):
        inner = ndimage.binary_erosion(fg[:, :, z], np.ones((3, 3)), border_value=0)
        if inner.sum() < 16:
            continue
        responses.append(ndimage.convolve(stack[:, :, z], _OPERATOR, mode="nearest")[inner])
    if not responses:
        return 0.0
    r = np.concatenate(responses)
    return float(_MAD_TO_SIGMA * np.median(np.abs(r - np.median(r))) / _GAIN)


def add_scanner_noise(
    image: np.ndarray, sigma: float, rng: np.random.Generator, kind: str = DEFAULT_KIND
) -> np.ndarray:
    """``image`` with noise of level ``sigma``: "gaussian" (image + n1, zero mean) or "rician" (the magnitude
    |image + n1 + i n2|, whose mean exceeds the image's where the image is dark)."""
    image = np.asarray(image, np.float32)
    kind = check_kind(kind)
    if sigma <= 0:
        return image
    n1 = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    if kind == "gaussian":
        return image + n1
    n2 = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.sqrt((np.clip(image, 0.0, None) + n1) ** 2 + n2**2)


def check_kind(value) -> str:
    """``scanner_noise_kind``: "gaussian" or "rician"."""
    if value not in KINDS:
        raise Gem3dInputError(f"scanner_noise_kind must be {' or '.join(map(repr, KINDS))}, not {value!r}")
    return str(value)


def check_setting(value) -> str | float:
    """``"none"``, ``"informed"`` or a noise level >= 0 (intensities are normalised to [0, 1])."""
    if isinstance(value, str) and value in MODES:
        return value
    sigma = number_in(value, 0.0, 0.5)
    if sigma is None:
        raise Gem3dInputError(
            f"scanner_noise must be {' or '.join(map(repr, MODES))} or a noise level in [0, 0.5], not {value!r}"
        )
    return sigma


def noise_level(
    setting, informed_sigma: float | None, fallback: float, informed_mode: str | None = None, fraction: float = 1.0
) -> tuple[float, str]:
    """The level to add and where it came from: a number as given; ``"informed"`` ``fraction`` times the informed
    slice's own noise, or times ``fallback`` (the training scans' median) when the informed slice is generated or
    absent; ``"auto"`` as ``"informed"``, but nothing when ``informed_mode`` is the volume's own scan ("true")."""
    setting = check_setting(setting)
    fraction = check_fraction(fraction)
    if setting == "none":
        return 0.0, "none"
    if setting == "auto" and informed_mode in OWN_SCAN_MODES:
        return 0.0, "none (auto: the informed slice is this volume's own scan)"
    if setting in ("informed", "auto"):
        share = "" if fraction == 1.0 else f"{fraction:g} x "
        if informed_sigma is None:
            return fraction * float(fallback), share + "training median (the informed slice is not a scan)"
        return fraction * float(informed_sigma), share + "informed slice"
    return float(setting), "given"


def check_fraction(value) -> float:
    """The share of the informed level that ``"informed"`` and ``"auto"`` add: a number in [0, 2]."""
    fraction = number_in(value, 0.0, 2.0)
    if fraction is None:
        raise Gem3dInputError(f"scanner_noise_fraction must be a number in [0, 2], not {value!r}")
    return fraction
